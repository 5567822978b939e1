"""Pub/Sub messages → the CloudEvents production Eventarc delivers (pure functions).

Two shapes (ARCHITECTURE.md): a Cloud Storage notification becomes
``google.cloud.storage.object.v1.finalized`` with the object resource as data; any other message
becomes ``google.cloud.pubsub.topic.v1.messagePublished`` with the ``{"message": ...}`` envelope.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cloudevents.http import CloudEvent

from distillery.core.errors import InvalidEventError
from distillery.local.stack.routes import MESSAGE_PUBLISHED, STORAGE_FINALIZED

#: The notification eventType of a finalized object (others are acknowledged and dropped).
OBJECT_FINALIZE = "OBJECT_FINALIZE"


@dataclass(frozen=True)
class InboundMessage:
    """A pulled Pub/Sub message, reduced to what a CloudEvent needs."""

    message_id: str
    data: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)
    publish_time: datetime = field(default_factory=lambda: datetime.now(UTC))


def rfc3339(moment: datetime) -> str:
    """``moment`` as RFC 3339 in UTC with milliseconds and a ``Z``, as Google APIs write it."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def storage_finalized_event(message: InboundMessage, bucket: str) -> CloudEvent | None:
    """The storage finalized CloudEvent for a GCS notification, or None when it is not one.

    Notifications of other kinds (OBJECT_DELETE, metadata updates) and of other buckets give None:
    the production trigger filters them out.

    Raises:
        InvalidEventError: a finalize notification without the documented attributes or object.
    """
    attributes = message.attributes
    if attributes.get("eventType") != OBJECT_FINALIZE:
        return None
    if attributes.get("bucketId") != bucket:
        return None
    try:
        name = attributes["objectId"]
        generation = attributes["objectGeneration"]
        resource = json.loads(message.data)
    except (KeyError, ValueError) as exc:
        raise InvalidEventError(f"malformed storage notification {message.message_id}") from exc
    if not isinstance(resource, dict):
        raise InvalidEventError(f"storage notification {message.message_id} holds no object")
    data = normalise_object(resource, bucket=bucket, name=name, generation=generation)
    when = str(data.get("updated") or attributes.get("eventTime") or rfc3339(message.publish_time))
    return CloudEvent(
        {
            "id": message.message_id,
            "type": STORAGE_FINALIZED,
            "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "subject": f"objects/{name}",
            "time": when,
            "datacontenttype": "application/json",
        },
        data,
    )


def normalise_object(
    resource: Mapping[str, Any], *, bucket: str, name: str, generation: str
) -> dict[str, Any]:
    """fake-gcs-server's object resource, made to read like real Cloud Storage's.

    Real GCS writes ``id`` as ``bucket/name/generation`` (fake-gcs uses ``#``), always sends
    ``metageneration``, and renders int64 fields as strings.
    """
    data = dict(resource)
    data.setdefault("kind", "storage#object")
    data["bucket"] = bucket
    data["name"] = name
    data["generation"] = str(data.get("generation") or generation)
    data["id"] = f"{bucket}/{name}/{data['generation']}"
    data["metageneration"] = str(data.get("metageneration") or "1")
    if "size" in data:
        data["size"] = str(data["size"])
    return data


def message_published_event(
    message: InboundMessage, *, project: str, topic: str, subscription: str
) -> CloudEvent:
    """The messagePublished CloudEvent Eventarc delivers for ``message`` on ``topic``."""
    published = rfc3339(message.publish_time)
    envelope: dict[str, Any] = {
        "data": base64.b64encode(message.data).decode("ascii"),
        "messageId": message.message_id,
        "message_id": message.message_id,
        "publishTime": published,
        "publish_time": published,
    }
    if message.attributes:
        envelope["attributes"] = dict(message.attributes)
    return CloudEvent(
        {
            "id": message.message_id,
            "type": MESSAGE_PUBLISHED,
            "source": f"//pubsub.googleapis.com/projects/{project}/topics/{topic}",
            "time": published,
            "datacontenttype": "application/json",
        },
        {
            "message": envelope,
            "subscription": f"projects/{project}/subscriptions/{subscription}",
        },
    )
