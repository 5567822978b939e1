"""Strict at the user's edge, tolerant inside: messages between our functions ignore new fields."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from distillery.core.errors import InvalidEventError
from distillery.core.events import parse_message
from distillery.core.jobs import new_record
from distillery.core.models import JobEvent, JobState, LaunchRequest, StatusEvent
from distillery.core.runtime import Dependencies, run_handler
from distillery.services.promoter import handle_status_event
from distillery.services.status import handle_job_event
from tests.unit.test_promoter import GOOD, _job, _succeeded

JOB = "job-7"


def _status_bytes(**extra: Any) -> bytes:
    status = StatusEvent(job_id="job-1", state=JobState.SUCCEEDED, at="2026-11-29T10:00:00Z")
    return json.dumps({**json.loads(status.to_bytes()), **extra}).encode()


def _pubsub_event(data: bytes, topic: str, attributes: dict[str, str]) -> CloudEvent:
    return CloudEvent(
        {
            "id": "evt-1",
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": f"//pubsub.googleapis.com/projects/p/topics/{topic}",
        },
        {
            "message": {
                "data": base64.b64encode(data).decode(),
                "attributes": attributes,
                "messageId": "1",
            }
        },
    )


def test_a_status_event_from_a_newer_version_is_understood_and_its_new_fields_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="distillery.core.models"):
        status = parse_message(_status_bytes(champion_margin=0.1, zone="b"), StatusEvent)
    assert status.job_id == "job-1" and status.state is JobState.SUCCEEDED
    assert "StatusEvent" in caplog.text and "champion_margin, zone" in caplog.text
    (record,) = [r for r in caplog.records if r.name == "distillery.core.models"]
    assert record.unknown_fields == ["champion_margin", "zone"]  # type: ignore[attr-defined]


def test_a_known_status_event_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="distillery.core.models"):
        parse_message(_status_bytes(), StatusEvent)
    assert not [r for r in caplog.records if r.name == "distillery.core.models"]


def test_a_status_event_still_needs_its_own_fields() -> None:
    with pytest.raises(InvalidEventError, match="job_id"):
        parse_message(json.dumps({"state": "SUCCEEDED", "at": "2026-11-29"}).encode(), StatusEvent)


def test_the_launch_request_stays_strict() -> None:
    payload = {"dataset_uri": "gs://bkt/x.jsonl", "request_id": "r", "priority": "high"}
    with pytest.raises(InvalidEventError, match="priority"):
        parse_message(json.dumps(payload).encode(), LaunchRequest)


def test_a_log_entry_logs_only_fields_outside_the_log_entry_format(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entry = {
        "insertId": "a",
        "logName": "projects/p/logs/x",
        "severity": "INFO",
        "receiveTimestamp": "2026-11-29T10:00:00Z",
        "resource": {"type": "t", "labels": {}, "newLabelSet": {}},
        "jsonPayload": {"state": "PIPELINE_STATE_RUNNING"},
        "futureField": 1,
    }
    with caplog.at_level(logging.INFO, logger="distillery.core.models"):
        parsed = JobEvent.model_validate(entry)
    assert parsed.pipeline_state == "PIPELINE_STATE_RUNNING"
    messages = [r.getMessage() for r in caplog.records if r.name == "distillery.core.models"]
    assert messages == [
        "ignoring fields a JobEvent of this version does not know: futureField",
        "ignoring fields a LogResource of this version does not know: newLabelSet",
    ]


def test_a_succeeded_event_with_a_new_field_is_promoted_not_failed(deps: Dependencies) -> None:
    _succeeded(deps, "job-1", GOOD)
    event = _pubsub_event(
        _status_bytes(new_field={"x": 1}),
        "distill-job-status",
        {"job_id": "job-1", "state": "SUCCEEDED"},
    )
    outcome = run_handler("promote_model", event, handle_status_event, deps)
    assert outcome is not None and outcome.state is JobState.PROMOTED
    assert _job(deps, "job-1")["state"] == "PROMOTED"
    assert deps.records.list("failed_events") == []


def test_a_pipeline_event_with_a_new_field_moves_the_job(deps: Dependencies) -> None:
    record = new_record(JOB, JobState.SUBMITTED, deps.clock(), {})
    record["announced"] = ["SUBMITTED"]
    deps.records.set("jobs", JOB, record)
    entry = {
        "insertId": "abc",
        "resource": {
            "type": "aiplatform.googleapis.com/PipelineJob",
            "labels": {"pipeline_job_id": JOB},
        },
        "jsonPayload": {"state": "PIPELINE_STATE_RUNNING", "pipelineJobId": JOB},
        "newTopLevel": True,
    }
    event = _pubsub_event(json.dumps(entry).encode(), "distill-job-events", {})
    applied = run_handler("track_status", event, handle_job_event, deps)
    assert applied is not None and applied.moved
    assert deps.records.list("failed_events") == []
