"""Parsing CloudEvents at the edge into the typed models of :mod:`distillery.core.models`.

Accepts the CloudEvent objects functions-framework hands to a function (``cloudevents`` v1) or
anything with the same ``__getitem__``/``data`` shape. Every failure is an
:class:`~distillery.core.errors.InvalidEventError` naming what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from distillery.core.errors import InvalidEventError
from distillery.core.models import PubsubEvent, PubsubMessage, StorageObject, StorageObjectEvent

STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"

M = TypeVar("M", bound=BaseModel)


class CloudEventLike(Protocol):
    """What we need of a CloudEvent: attribute lookup and ``data``."""

    data: Any

    def __getitem__(self, key: str) -> Any: ...

    def get(self, key: str, default: Any = None) -> Any: ...


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming every bad field and the rule it broke."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(message)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def event_identity(event: CloudEventLike) -> dict[str, str]:
    """The id, type and source of an event, as far as they can be read (for logs/records)."""
    identity = {}
    for key in ("id", "type", "source", "subject"):
        try:
            value = event.get(key)
        except Exception:
            value = None
        if value is not None:
            identity[key] = str(value)
    return identity


def _attribute(event: CloudEventLike, key: str) -> str:
    value = event.get(key)
    if not value:
        raise InvalidEventError(f"the CloudEvent has no '{key}' attribute")
    return str(value)


def _data_dict(event: CloudEventLike) -> dict[str, Any]:
    data = event.data
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidEventError(f"the CloudEvent data is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidEventError(
            f"the CloudEvent data must be a JSON object, got {type(data).__name__}"
        )
    return data


def parse_storage_event(event: CloudEventLike) -> StorageObjectEvent:
    """A ``storage.object.v1.finalized`` CloudEvent → :class:`StorageObjectEvent`.

    Raises:
        InvalidEventError: wrong type, missing attributes, or data that is not an object resource.
    """
    event_type = _attribute(event, "type")
    if event_type != STORAGE_FINALIZED:
        raise InvalidEventError(f"expected a {STORAGE_FINALIZED} event, got {event_type!r}")
    data = _data_dict(event)
    try:
        obj = StorageObject.model_validate(data)
    except ValidationError as exc:
        raise InvalidEventError(
            f"the event data is not a Cloud Storage object: {describe_validation_error(exc)}"
        ) from None
    return StorageObjectEvent(
        id=_attribute(event, "id"),
        type=event_type,
        source=_attribute(event, "source"),
        subject=event.get("subject"),
        time=event.get("time"),
        object=obj,
    )


def parse_pubsub_event(event: CloudEventLike) -> PubsubEvent:
    """A ``pubsub.topic.v1.messagePublished`` CloudEvent → :class:`PubsubEvent`.

    Raises:
        InvalidEventError: wrong type, no message, or data that is not base64.
    """
    event_type = _attribute(event, "type")
    if event_type != PUBSUB_PUBLISHED:
        raise InvalidEventError(f"expected a {PUBSUB_PUBLISHED} event, got {event_type!r}")
    data = _data_dict(event)
    raw = data.get("message")
    if not isinstance(raw, dict):
        raise InvalidEventError("the messagePublished event has no 'message' object")
    try:
        payload = base64.b64decode(raw.get("data") or "", validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise InvalidEventError("message.data is not valid base64") from None
    try:
        message = PubsubMessage.model_validate({**raw, "data": payload})
    except ValidationError as exc:
        raise InvalidEventError(
            f"the Pub/Sub message is malformed: {describe_validation_error(exc)}"
        ) from None
    return PubsubEvent(
        id=_attribute(event, "id"),
        type=event_type,
        source=_attribute(event, "source"),
        time=event.get("time"),
        message=message,
        subscription=data.get("subscription"),
    )


def parse_message(payload: bytes, model: type[M]) -> M:
    """JSON message bytes → ``model``, naming every bad field.

    Raises:
        InvalidEventError: not UTF-8 JSON, or fields that break the model (unknown ones included).
    """
    try:
        decoded = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidEventError(f"the {model.__name__} message is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidEventError(f"the {model.__name__} message is not JSON: {exc}") from None
    try:
        return model.model_validate(decoded)
    except ValidationError as exc:
        raise InvalidEventError(
            f"invalid {model.__name__}: {describe_validation_error(exc)}"
        ) from None
