from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from distillery.core.errors import InvalidEventError, ServiceUnavailableError
from distillery.core.events import CloudEventLike
from distillery.core.logs import CloudLoggingFormatter, log_context
from distillery.core.runtime import (
    MAX_REASON_CHARS,
    Dependencies,
    failure_id,
    record_failure,
    run_handler,
)
from distillery.fakes import InMemoryRecordStore
from tests.helpers import load_event


def test_run_handler_records_and_acknowledges_permanent_errors(deps: Dependencies) -> None:
    def handle(event: CloudEventLike, d: Dependencies) -> Any:
        raise InvalidEventError("the event data is not a Cloud Storage object: name: missing")

    event = load_event("storage_finalized")
    assert run_handler("validate_dataset", event, handle, deps) is None
    failures = deps.records.list("failed_events")
    assert len(failures) == 1
    assert failures[0]["function"] == "validate_dataset"
    assert failures[0]["event"]["id"] == "8947231985463221"
    assert "name: missing" in failures[0]["reason"]
    # A redelivery of the same bad event overwrites its record instead of piling up.
    run_handler("validate_dataset", event, handle, deps)
    assert len(deps.records.list("failed_events")) == 1


def test_run_handler_reraises_transient_errors(deps: Dependencies) -> None:
    def handle(event: CloudEventLike, d: Dependencies) -> Any:
        raise ServiceUnavailableError("firestore is down")

    with pytest.raises(ServiceUnavailableError):
        run_handler("validate_dataset", load_event("storage_finalized"), handle, deps)
    assert deps.records.list("failed_events") == []


class _FailingFailures(InMemoryRecordStore):
    """A record store whose writes to the failures collection fail ``failures`` times."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        if collection == "failed_events" and self.failures > 0:
            self.failures -= 1
            raise ServiceUnavailableError("firestore is down")
        super().set(collection, doc_id, data)


def test_run_handler_redelivers_a_rejected_event_whose_failure_cannot_be_recorded(
    deps: Dependencies, caplog: pytest.LogCaptureFixture
) -> None:
    deps.records = _FailingFailures(failures=1)

    def handle(event: CloudEventLike, d: Dependencies) -> Any:
        raise InvalidEventError("the event data is not a Cloud Storage object: name: missing")

    event = load_event("storage_finalized")
    # Not acknowledged: the framework answers 500 and the event comes again.
    with caplog.at_level(logging.ERROR), pytest.raises(ServiceUnavailableError):
        run_handler("validate_dataset", event, handle, deps)
    assert deps.records.list("failed_events") == []
    assert "could not record the rejected event; it will be delivered again" in caplog.text
    # The redelivery records it, and only then is the event acknowledged.
    assert run_handler("validate_dataset", event, handle, deps) is None
    assert [f["error"] for f in deps.records.list("failed_events")] == ["InvalidEventError"]


def test_record_failure_keeps_a_bounded_reason(deps: Dependencies) -> None:
    record_failure(deps, "validate_dataset", {"id": "e1"}, InvalidEventError("x" * 100_000))
    (failure,) = deps.records.list("failed_events")
    assert len(failure["reason"]) == MAX_REASON_CHARS


def test_failure_id_is_stable_and_firestore_safe() -> None:
    identity = {"id": "a/b/../c", "source": "//x"}
    assert failure_id(identity) == failure_id(dict(identity))
    assert "/" not in failure_id(identity)
    assert failure_id({}) != ""


def test_cloud_logging_formatter_emits_severity_message_and_context() -> None:
    record = logging.LogRecord(
        "distillery.x", logging.WARNING, __file__, 1, "hi %s", ("there",), None
    )
    record.dataset_id = "d-1"
    with log_context(event_id="e-1"):
        line = json.loads(CloudLoggingFormatter().format(record))
    assert line["severity"] == "WARNING"
    assert line["message"] == "hi there"
    assert line["event_id"] == "e-1"
    assert line["dataset_id"] == "d-1"
