from __future__ import annotations

import base64
import json

import pytest
from cloudevents.http import CloudEvent

from distillery.core.errors import InvalidEventError
from distillery.core.events import parse_message, parse_pubsub_event, parse_storage_event
from distillery.core.models import JobState, LaunchRequest, StatusEvent, split_gcs_uri
from tests.helpers import load_event


def test_parse_storage_event_production_payload() -> None:
    parsed = parse_storage_event(load_event("storage_finalized"))
    assert parsed.id == "8947231985463221"
    assert parsed.object.bucket == "distillery-datasets"
    assert parsed.object.name == "datasets/news.jsonl"
    assert parsed.object.generation == 1764411302412000
    assert parsed.object.size == 48213
    assert parsed.object.uri == "gs://distillery-datasets/datasets/news.jsonl"


def test_parse_storage_event_rejects_wrong_type() -> None:
    event = load_event("storage_finalized")
    event["type"] = "google.cloud.storage.object.v1.deleted"
    with pytest.raises(InvalidEventError, match=r"expected a google\.cloud\.storage"):
        parse_storage_event(event)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"bucket": "b-1", "generation": "1"}, "name"),
        ({"bucket": "b-1", "name": "datasets/a.jsonl", "generation": "zero"}, "generation"),
        ({"bucket": "b-1", "name": "datasets/a.jsonl"}, "generation"),
    ],
)
def test_parse_storage_event_names_the_bad_field(data: dict[str, str], message: str) -> None:
    event = CloudEvent(
        {
            "id": "1",
            "type": "google.cloud.storage.object.v1.finalized",
            "source": "//storage.googleapis.com/projects/_/buckets/b-1",
        },
        data,
    )
    with pytest.raises(InvalidEventError, match=message):
        parse_storage_event(event)


def test_parse_storage_event_rejects_non_object_data() -> None:
    event = CloudEvent(
        {"id": "1", "type": "google.cloud.storage.object.v1.finalized", "source": "s"},
        b"[1, 2]",
    )
    with pytest.raises(InvalidEventError, match="must be a JSON object"):
        parse_storage_event(event)


def test_parse_pubsub_event_decodes_message() -> None:
    parsed = parse_pubsub_event(load_event("launch_request_published"))
    assert parsed.message.message_id == "11842298765432"
    assert parsed.message.attributes == {"request_id": "news-1"}
    request = parse_message(parsed.message.data, LaunchRequest)
    assert request.overrides == {"train_steps": 500}
    assert request.dataset_uri.startswith("gs://distillery-datasets/validated/")


def test_parse_pubsub_event_rejects_bad_base64() -> None:
    event = load_event("launch_request_published")
    event.data["message"]["data"] = "not base64!!"
    with pytest.raises(InvalidEventError, match="base64"):
        parse_pubsub_event(event)


def test_parse_message_rejects_unknown_fields_by_name() -> None:
    payload = json.dumps({"dataset_uri": "gs://bkt/x.jsonl", "request_id": "r", "colour": "red"})
    with pytest.raises(InvalidEventError, match="colour"):
        parse_message(payload.encode(), LaunchRequest)


def test_parse_message_rejects_non_gcs_uri() -> None:
    payload = json.dumps({"dataset_uri": "/tmp/x.jsonl", "request_id": "r"})
    with pytest.raises(InvalidEventError, match="dataset_uri"):
        parse_message(payload.encode(), LaunchRequest)


def test_parse_message_rejects_non_json() -> None:
    with pytest.raises(InvalidEventError, match="not JSON"):
        parse_message(b"{oops", LaunchRequest)


def test_launch_request_round_trip_omits_unset_fields() -> None:
    request = LaunchRequest(dataset_uri="gs://bkt/validated/a/x.jsonl", request_id="r-1")
    wire = json.loads(request.to_bytes())
    assert wire == {
        "dataset_uri": "gs://bkt/validated/a/x.jsonl",
        "overrides": {},
        "request_id": "r-1",
    }
    assert parse_message(request.to_bytes(), LaunchRequest) == request


def test_status_event_attributes_carry_job_and_state() -> None:
    event = StatusEvent(job_id="j-1", state=JobState.SUBMITTED, at="2026-11-29T10:00:00Z")
    assert event.attributes() == {"job_id": "j-1", "state": "SUBMITTED"}
    assert base64.b64encode(event.to_bytes())


def test_split_gcs_uri_rejects_other_schemes() -> None:
    assert split_gcs_uri("gs://my-bucket/a/b.jsonl") == ("my-bucket", "a/b.jsonl")
    with pytest.raises(ValueError, match="gs://"):
        split_gcs_uri("s3://my-bucket/a")
