"""Status tracking on the in-memory ports: forward-only transitions, announcements, reconcile."""

from __future__ import annotations

import base64
import json
import logging
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from distillery.core.errors import InvalidEventError, ServiceUnavailableError
from distillery.core.jobs import new_record
from distillery.core.models import JobState, StatusEvent
from distillery.core.runtime import Dependencies
from distillery.fakes import (
    InMemoryPublisher,
    InMemoryVertexPipelines,
)
from distillery.services.status import handle_job_event, reconcile
from tests.unit.test_training_metrics import tensorboard_files

JOB = "news-distilled-0123abcd"
NAME = f"projects/p/locations/us-central1/pipelineJobs/{JOB}"


@pytest.fixture(autouse=True)
def _submitted_job(deps: Dependencies) -> None:
    """Job JOB, SUBMITTED (both states announced), and its pipeline job on the fake Vertex AI."""
    record = new_record(JOB, JobState.SUBMITTED, deps.clock(), {"pipeline_job": NAME})
    record["history"] = [
        {"state": "REQUESTED", "at": record["created_at"]},
        {"state": "SUBMITTED", "at": record["created_at"]},
    ]
    record["announced"] = ["REQUESTED", "SUBMITTED"]
    deps.records.set("jobs", JOB, record)
    assert isinstance(deps.vertex, InMemoryVertexPipelines)
    deps.vertex.create("us-central1", JOB, {"displayName": "news-distilled"})


def _event(
    state: str,
    job_id: str = JOB,
    resource_type: str = "aiplatform.googleapis.com/PipelineJob",
    error: str | None = None,
) -> CloudEvent:
    payload: dict[str, Any] = {"state": state, "pipelineJobId": job_id}
    if error:
        payload["error"] = {"code": 9, "message": error}
    entry = {
        "insertId": "abc",
        "logName": "projects/p/logs/aiplatform.googleapis.com%2Fpipeline_job_events",
        "resource": {"type": resource_type, "labels": {"pipeline_job_id": job_id}},
        "jsonPayload": payload,
        "timestamp": "2026-11-29T10:00:00Z",
    }
    return CloudEvent(
        {
            "id": f"{state}-{random.random()}",
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/p/topics/distill-job-events",
        },
        {
            "message": {
                "data": base64.b64encode(json.dumps(entry).encode()).decode(),
                "messageId": "1",
            }
        },
    )


def _statuses(deps: Dependencies) -> list[tuple[str, str | None]]:
    assert isinstance(deps.publisher, InMemoryPublisher)
    events = [
        StatusEvent.model_validate_json(m.data) for m in deps.publisher.on("distill-job-status")
    ]
    return [(e.state.value, e.previous_state.value if e.previous_state else None) for e in events]


def _job(deps: Dependencies) -> dict[str, Any]:
    record = deps.records.get("jobs", JOB)
    assert record is not None
    return record


def test_handle_job_event_moves_forward_and_announces(deps: Dependencies) -> None:
    handle_job_event(_event("PIPELINE_STATE_RUNNING"), deps)
    assert _job(deps)["state"] == "RUNNING"
    assert _statuses(deps) == [("RUNNING", "SUBMITTED")]


def test_handle_job_event_duplicates_and_shuffled_events_end_in_the_right_state(
    deps: Dependencies,
) -> None:
    events = ["PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING", "PIPELINE_STATE_SUCCEEDED"] * 3
    random.Random(4).shuffle(events)
    for state in events:
        handle_job_event(_event(state), deps)
    record = _job(deps)
    assert record["state"] == "SUCCEEDED"
    states = [h["state"] for h in record["history"]]
    assert states[-1] == "SUCCEEDED" and len(states) == len(set(states))
    assert [s for s, _ in _statuses(deps)] == states[2:]


def test_handle_job_event_terminal_state_is_final(deps: Dependencies) -> None:
    handle_job_event(_event("PIPELINE_STATE_FAILED", error="out of memory"), deps)
    handle_job_event(_event("PIPELINE_STATE_SUCCEEDED"), deps)
    handle_job_event(_event("PIPELINE_STATE_RUNNING"), deps)
    record = _job(deps)
    assert record["state"] == "FAILED"
    assert record["reason"] == "out of memory"
    assert _statuses(deps) == [("FAILED", "SUBMITTED")]


def test_handle_job_event_unknown_job_is_recorded_and_acknowledged(deps: Dependencies) -> None:
    applied = handle_job_event(_event("PIPELINE_STATE_RUNNING", job_id="someone-else"), deps)
    assert applied is not None and not applied.known
    [failure] = deps.records.list("failed_events")
    assert failure["function"] == "track_status"
    assert "someone-else" in failure["reason"]
    assert _statuses(deps) == []


def test_handle_job_event_ignores_other_resources_and_stateless_entries(deps: Dependencies) -> None:
    assert (
        handle_job_event(_event("PIPELINE_STATE_RUNNING", resource_type="gce_instance"), deps)
        is None
    )
    assert handle_job_event(_event("PIPELINE_STATE_CANCELLING"), deps).target is None  # type: ignore[union-attr]
    assert _job(deps)["state"] == "SUBMITTED"


def test_handle_job_event_rejects_malformed_entries(deps: Dependencies) -> None:
    event = _event("PIPELINE_STATE_RUNNING")
    event.data["message"]["data"] = base64.b64encode(b'{"jsonPayload": {}}').decode()
    with pytest.raises(InvalidEventError, match="resource"):
        handle_job_event(event, deps)


def test_reconcile_applies_missed_transitions(deps: Dependencies) -> None:
    assert isinstance(deps.vertex, InMemoryVertexPipelines)
    deps.vertex.set_state(NAME, "PIPELINE_STATE_RUNNING")
    summary = reconcile(deps)
    assert (summary.checked, summary.moved) == (1, [JOB])
    deps.vertex.set_state(NAME, "PIPELINE_STATE_FAILED", error="quota")
    assert reconcile(deps).moved == [JOB]
    assert _job(deps)["reason"] == "quota"
    assert reconcile(deps).checked == 0  # terminal jobs are not polled
    assert _statuses(deps) == [("RUNNING", "SUBMITTED"), ("FAILED", "RUNNING")]


REQUESTED_JOB = "news-distilled-fedcba9876"
REQUESTED_NAME = f"projects/p/locations/us-central1/pipelineJobs/{REQUESTED_JOB}"
BODY = {"displayName": "news-distilled", "runtimeConfig": {"parameterValues": {"a": 1}}}


def _requested(deps: Dependencies, at: datetime) -> None:
    """Job REQUESTED_JOB, left REQUESTED at ``at`` with its frozen plan (nothing submitted)."""
    record = new_record(
        REQUESTED_JOB,
        JobState.REQUESTED,
        at,
        {"request_body": BODY, "location": "us-central1", "pipeline_job": None},
    )
    deps.records.set("jobs", REQUESTED_JOB, record)


def _at(deps: Dependencies, moment: datetime) -> None:
    deps.clock = lambda: moment


def test_reconcile_leaves_a_requested_job_alone_within_its_lease(deps: Dependencies) -> None:
    start = deps.clock()
    _requested(deps, start)
    _at(deps, start + timedelta(seconds=deps.settings.requested_lease_seconds - 1))
    summary = reconcile(deps)
    assert REQUESTED_JOB not in summary.moved
    assert deps.records.get("jobs", REQUESTED_JOB)["state"] == "REQUESTED"  # type: ignore[index]
    assert isinstance(deps.vertex, InMemoryVertexPipelines)
    assert REQUESTED_NAME not in deps.vertex.jobs


def test_reconcile_submits_a_requested_job_past_its_lease_with_the_frozen_plan(
    deps: Dependencies,
) -> None:
    start = deps.clock()
    _requested(deps, start)
    _at(deps, start + timedelta(seconds=deps.settings.requested_lease_seconds))
    summary = reconcile(deps)
    assert summary.moved == [REQUESTED_JOB]
    record = deps.records.get("jobs", REQUESTED_JOB)
    assert record is not None and record["state"] == "SUBMITTED"
    assert record["pipeline_job"] == REQUESTED_NAME
    assert isinstance(deps.vertex, InMemoryVertexPipelines)
    assert deps.vertex.jobs[REQUESTED_NAME]["runtimeConfig"] == BODY["runtimeConfig"]
    assert _statuses(deps) == [("REQUESTED", None), ("SUBMITTED", "REQUESTED")]
    assert reconcile(deps).moved == []  # nothing left to resume


def test_reconcile_adopts_the_pipeline_job_vertex_already_has(deps: Dependencies) -> None:
    start = deps.clock()
    _requested(deps, start)
    assert isinstance(deps.vertex, InMemoryVertexPipelines)
    deps.vertex.create("us-central1", REQUESTED_JOB, BODY)  # accepted, then the process died
    _at(deps, start + timedelta(hours=1))
    assert reconcile(deps).moved == [REQUESTED_JOB]
    assert deps.vertex.create_calls == 3  # the fixture's, the crashed one's, ALREADY_EXISTS
    assert len([n for n in deps.vertex.jobs if REQUESTED_JOB in n]) == 1
    record = deps.records.get("jobs", REQUESTED_JOB)
    assert record is not None and record["state"] == "SUBMITTED"
    assert record["pipeline_job"] == REQUESTED_NAME


def test_reconcile_reports_a_requested_job_it_could_not_resume(deps: Dependencies) -> None:
    start = deps.clock()
    _requested(deps, start)
    assert isinstance(deps.vertex, InMemoryVertexPipelines)
    deps.vertex.fail_next.append(ServiceUnavailableError("Vertex AI unavailable"))
    _at(deps, start + timedelta(hours=1))
    summary = reconcile(deps)
    assert "unavailable" in summary.errors[REQUESTED_JOB]
    assert deps.records.get("jobs", REQUESTED_JOB)["state"] == "REQUESTED"  # type: ignore[index]
    assert reconcile(deps).moved == [REQUESTED_JOB]  # the next pass resumes it


def _many_submitted(deps: Dependencies, count: int) -> list[str]:
    """``count`` more SUBMITTED jobs, each with its (pending) pipeline job; their ids, in order."""
    assert isinstance(deps.vertex, InMemoryVertexPipelines)
    ids = [f"bulk-{index:03d}" for index in range(count)]
    for job_id in ids:
        name = f"projects/p/locations/us-central1/pipelineJobs/{job_id}"
        deps.records.set(
            "jobs",
            job_id,
            new_record(job_id, JobState.SUBMITTED, deps.clock(), {"pipeline_job": name}),
        )
        deps.vertex.create("us-central1", job_id, {"displayName": "bulk"})
    return sorted([*ids, JOB])


class _Ticks:
    """A monotonic clock that moves one second each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_reconcile_stops_at_its_budget_and_the_next_pass_goes_on_from_the_cursor(
    deps: Dependencies,
) -> None:
    assert isinstance(deps.vertex, InMemoryVertexPipelines)
    every = _many_submitted(deps, 120)  # more than two pages
    polled: list[str] = []
    get = deps.vertex.get

    def counting_get(name: str) -> Any:
        polled.append(name.rsplit("/", 1)[-1])
        return get(name)

    deps.vertex.get = counting_get  # type: ignore[method-assign]
    passes = []
    while not passes or not passes[-1].complete:
        passes.append(reconcile(deps, budget_seconds=40, monotonic=_Ticks()))
        assert len(passes) < 20, "reconcile never completed a pass"
    assert len(passes) > 2  # the budget cut the first passes short
    assert all(not p.complete for p in passes[:-1])
    # Every unfinished job was polled exactly once, in job_id order, across the passes.
    assert polled == every
    cursor = deps.records.get(deps.settings.reconcile_collection, "cursor")
    assert cursor is not None and cursor["state"] is None  # the next pass starts over
    polled.clear()
    reconcile(deps, budget_seconds=1000, monotonic=_Ticks())
    assert polled == every


def test_reconcile_with_no_time_polls_nothing_and_keeps_its_place(deps: Dependencies) -> None:
    summary = reconcile(deps, budget_seconds=0)
    assert (summary.checked, summary.complete) == (0, False)
    assert _job(deps)["state"] == "SUBMITTED"
    assert reconcile(deps).checked == 1


# -- what a SUCCEEDED job records: the metrics of its TensorBoard event files -------------------


def _expose_tensorboard(deps: Dependencies, uri: str, **metadata: Any) -> None:
    """The pipeline job's trainer task exposes ``tensorboard_metrics`` at ``uri``."""
    assert isinstance(deps.vertex, InMemoryVertexPipelines)
    deps.vertex.jobs[NAME]["jobDetail"] = {
        "taskDetails": [
            {
                "taskName": "distillation-trainer",
                "execution": {"metadata": metadata},
                "outputs": {
                    "tensorboard_metrics": {
                        "artifacts": [{"schemaTitle": "system.Artifact", "uri": uri}]
                    }
                },
            },
            {
                "taskName": "upload-llm-model",
                "execution": {"metadata": {"output:model_resource_name": "projects/p/m/7"}},
            },
        ]
    }


def test_a_succeeded_job_records_final_metrics_and_training_curves(
    deps: Dependencies, tmp_path: Path
) -> None:
    tensorboard_files(
        tmp_path,
        {
            "/train_total_loss": [(10, 1.5), (20, 0.75), (30, 0.5)],
            "/eval_fraction_of_correct_next_step_preds": [(10, 0.5), (20, 0.9), (30, 0.8)],
            "/eval_total_loss": [(10, 1.25), (20, 0.25), (30, 0.5)],
        },
    )
    for path in tmp_path.iterdir():
        deps.objects.write_bytes("out", f"root/{JOB}/tensorboard/{path.name}", path.read_bytes())
    _expose_tensorboard(deps, f"gs://out/root/{JOB}/tensorboard/", **{"output:selected_step": 20})

    handle_job_event(_event("PIPELINE_STATE_SUCCEEDED"), deps)

    record = _job(deps)
    assert record["state"] == "SUCCEEDED" and record["model"] == "projects/p/m/7"
    assert record["metrics"] == {
        "train_total_loss": 0.5,  # the last
        "eval_fraction_of_correct_next_step_preds": 0.9,  # the selected checkpoint's
        "eval_total_loss": 0.25,
    }
    assert record["training_curves"]["train_total_loss"] == {
        "steps": [10, 20, 30],
        "values": [1.5, 0.75, 0.5],
    }
    assert set(record["training_curves"]) == set(record["metrics"])
    assert [s for s, _ in _statuses(deps)] == ["SUCCEEDED"]


@pytest.mark.parametrize("uri", [None, "gs://out/nothing-written-here/"])
def test_a_succeeded_job_without_tensorboard_metrics_records_none_and_says_why(
    deps: Dependencies, caplog: pytest.LogCaptureFixture, uri: str | None
) -> None:
    if uri is not None:
        _expose_tensorboard(deps, uri)
    with caplog.at_level(logging.WARNING, logger="distillery.services.status"):
        handle_job_event(_event("PIPELINE_STATE_SUCCEEDED"), deps)

    record = _job(deps)
    assert record["state"] == "SUCCEEDED"
    assert "metrics" not in record and "training_curves" not in record
    expected = "no tensorboard_metrics artifact" if uri is None else "no TensorBoard event file"
    assert any(
        "no training metrics are recorded" in r.getMessage() and expected in r.getMessage()
        for r in caplog.records
    )


def test_a_storage_outage_while_reading_the_metrics_is_retried(
    deps: Dependencies, monkeypatch: pytest.MonkeyPatch
) -> None:
    _expose_tensorboard(deps, f"gs://out/root/{JOB}/tensorboard/")

    def unavailable(bucket: str, prefix: str) -> list[str]:
        raise ServiceUnavailableError("storage is down")

    monkeypatch.setattr(deps.objects, "list_names", unavailable)
    with pytest.raises(ServiceUnavailableError):
        handle_job_event(_event("PIPELINE_STATE_SUCCEEDED"), deps)
    assert _job(deps)["state"] == "SUBMITTED"  # nothing moved: the redelivery does it all
