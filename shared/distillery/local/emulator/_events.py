"""State-change events in the shape the Cloud Logging sink delivers to Pub/Sub.

In production a log sink on ``resource.type="aiplatform.googleapis.com/PipelineJob"`` publishes
each pipeline job event log entry (log ``aiplatform.googleapis.com/pipeline_job_events``) to the
job-events topic as JSON. The emulator publishes the same LogEntry for every state change, in
order, from one dispatcher thread, so a slow or failing Pub/Sub never blocks the API.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from distillery.core.ports import Publisher
from distillery.local.emulator._model import FAILED, now, rfc3339

logger = logging.getLogger(__name__)

RESOURCE_TYPE = "aiplatform.googleapis.com/PipelineJob"
#: The log id of pipeline job events; URL-encoded inside ``logName`` as Cloud Logging writes it.
LOG_ID = "aiplatform.googleapis.com/pipeline_job_events"


@dataclass(frozen=True)
class StateChange:
    """One transition of one job."""

    name: str
    job_id: str
    project: str
    location: str
    display_name: str
    state: str
    previous_state: str | None
    at: datetime
    error: Mapping[str, Any] | None = None


def log_entry(change: StateChange) -> dict[str, Any]:
    """The Cloud Logging LogEntry of ``change`` (see the package docs for an example)."""
    payload: dict[str, Any] = {
        "pipelineName": change.name,
        "pipelineJobId": change.job_id,
        "displayName": change.display_name,
        "state": change.state,
        "message": f"Pipeline job {change.name} changed state to {change.state}",
    }
    if change.previous_state:
        payload["previousState"] = change.previous_state
    if change.error:
        payload["error"] = dict(change.error)
    return {
        "insertId": uuid.uuid4().hex[:16],
        "logName": f"projects/{change.project}/logs/{LOG_ID.replace('/', '%2F')}",
        "resource": {
            "type": RESOURCE_TYPE,
            "labels": {
                "pipeline_job_id": change.job_id,
                "location": change.location,
                "resource_container": change.project,
            },
        },
        "jsonPayload": payload,
        "timestamp": rfc3339(change.at),
        "receiveTimestamp": rfc3339(now()),
        "severity": "ERROR" if change.state == FAILED else "INFO",
    }


class EventDispatcher:
    """Publishes state changes to ``topic`` in the order they were queued, on its own thread."""

    def __init__(self, publisher: Publisher, topic: str) -> None:
        self._publisher = publisher
        self._topic = topic
        # A StateChange to publish, an Event to set once everything before it is published
        # (flush), or None to stop.
        self._queue: queue.Queue[StateChange | threading.Event | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the publishing thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="emulator-events", daemon=True)
            self._thread.start()

    def submit(self, change: StateChange) -> None:
        """Queue ``change`` for publishing (call it in transition order)."""
        self._queue.put(change)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is published; ``False`` on timeout."""
        if self._thread is None:
            return self._queue.empty()
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Publish what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            self._publish(item)

    def _publish(self, change: StateChange) -> None:
        entry = log_entry(change)
        data = json.dumps(entry, separators=(",", ":")).encode()
        attributes = {"logging.googleapis.com/timestamp": entry["timestamp"]}
        try:
            self._publisher.publish(self._topic, data, attributes)
        except Exception as exc:
            # Whatever Pub/Sub does, the API keeps answering and later events still go out; the
            # consumer's reconcile polls pipelineJobs.get for what was lost.
            logger.error(
                "could not publish a pipeline job event",
                extra={"pipeline_job": change.name, "state": change.state, "error": str(exc)},
            )
