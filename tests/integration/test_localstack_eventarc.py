"""The bridge's conversions from Pub/Sub messages to Eventarc's CloudEvents (pure: no stack)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from distillery.core.errors import InvalidEventError
from distillery.local.stack.eventarc import (
    InboundMessage,
    message_published_event,
    rfc3339,
    storage_finalized_event,
)

PUBLISHED = datetime(2026, 11, 29, 10, 15, 4, 100000, tzinfo=UTC)


def _notification(event_type: str = "OBJECT_FINALIZE", bucket: str = "b-1") -> InboundMessage:
    resource = {
        "kind": "storage#object",
        "id": f"{bucket}/datasets/a.jsonl#17",
        "name": "datasets/a.jsonl",
        "bucket": bucket,
        "generation": "17",
        "size": 9,
        "updated": "2026-11-29T10:15:02.412Z",
    }
    attributes = {
        "eventType": event_type,
        "bucketId": bucket,
        "objectId": "datasets/a.jsonl",
        "objectGeneration": "17",
        "eventTime": "2026-11-29T10:15:02Z",
        "payloadFormat": "JSON_API_V1",
    }
    return InboundMessage("42", json.dumps(resource).encode(), attributes, PUBLISHED)


def test_eventarc_storage_notification_becomes_finalized_event() -> None:
    event = storage_finalized_event(_notification(), "b-1")
    assert event is not None
    assert event["type"] == "google.cloud.storage.object.v1.finalized"
    assert event["source"] == "//storage.googleapis.com/projects/_/buckets/b-1"
    assert event["subject"] == "objects/datasets/a.jsonl"
    assert (event["id"], event["time"]) == ("42", "2026-11-29T10:15:02.412Z")
    assert event.data["id"] == "b-1/datasets/a.jsonl/17"
    assert (event.data["size"], event.data["metageneration"]) == ("9", "1")


@pytest.mark.parametrize("event_type", ["OBJECT_DELETE", "OBJECT_METADATA_UPDATE"])
def test_eventarc_other_storage_notifications_are_ignored(event_type: str) -> None:
    assert storage_finalized_event(_notification(event_type), "b-1") is None


def test_eventarc_other_buckets_are_ignored() -> None:
    assert storage_finalized_event(_notification(bucket="b-2"), "b-1") is None


def test_eventarc_malformed_notification_is_invalid() -> None:
    message = InboundMessage("43", b"not json", _notification().attributes, PUBLISHED)
    with pytest.raises(InvalidEventError):
        storage_finalized_event(message, "b-1")


def test_eventarc_message_becomes_message_published_event() -> None:
    message = InboundMessage("7", b'{"x": 1}', {"k": "v"}, PUBLISHED)
    event = message_published_event(message, project="p-1", topic="t-1", subscription="s-1")
    assert event["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert event["source"] == "//pubsub.googleapis.com/projects/p-1/topics/t-1"
    assert (event["id"], event["time"]) == ("7", "2026-11-29T10:15:04.100Z")
    envelope = event.data["message"]
    assert base64.b64decode(envelope["data"]) == b'{"x": 1}'
    assert envelope["attributes"] == {"k": "v"}
    assert envelope["messageId"] == envelope["message_id"] == "7"
    assert envelope["publishTime"] == "2026-11-29T10:15:04.100Z"
    assert event.data["subscription"] == "projects/p-1/subscriptions/s-1"


def test_eventarc_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, 678901)) == "2026-01-02T03:04:05.678Z"
