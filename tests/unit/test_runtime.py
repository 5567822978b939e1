from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from distillery.core.errors import InvalidEventError, ServiceUnavailableError
from distillery.core.events import CloudEventLike
from distillery.core.logs import CloudLoggingFormatter, log_context
from distillery.core.runtime import Dependencies, failure_id, run_handler
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
