"""Test helpers shared by unit and integration tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cloudevents.http import CloudEvent

EVENTS = Path(__file__).parent / "events"


def load_event(file_stem: str, /, **data_changes: Any) -> CloudEvent:
    """A CloudEvent from ``tests/events/<file_stem>.json``, with ``data`` fields replaced."""
    raw = json.loads((EVENTS / f"{file_stem}.json").read_text())
    data = raw.pop("data")
    data.update(data_changes)
    raw.pop("specversion", None)
    return CloudEvent(raw, data)


def storage_event(bucket: str, name: str, generation: int, event_id: str = "evt-1") -> CloudEvent:
    """A storage finalized CloudEvent for ``gs://bucket/name#generation``."""
    event = load_event(
        "storage_finalized",
        bucket=bucket,
        name=name,
        generation=str(generation),
        id=f"{bucket}/{name}/{generation}",
    )
    event["id"] = event_id
    event["source"] = f"//storage.googleapis.com/projects/_/buckets/{bucket}"
    event["subject"] = f"objects/{name}"
    return event
