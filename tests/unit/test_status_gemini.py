"""Status of ``gemini`` jobs: tuning jobs polled, their JOB_STATE_* applied forward only."""

from __future__ import annotations

from typing import Any

import pytest

from distillery.core.jobs import new_record
from distillery.core.models import JobState, StatusEvent
from distillery.core.ports import TuningJobInfo
from distillery.core.runtime import Dependencies
from distillery.fakes import InMemoryPublisher, InMemoryTuningJobs
from distillery.services.status import (
    TUNING_CURSOR_DOCUMENT,
    TUNING_TO_JOB_STATE,
    apply_tuning_state,
    poll_tuning_jobs,
    reconcile,
)

JOB = "news-tuned-0123abcd"
BODY = {
    "baseModel": "gemini-2.5-flash",
    "supervisedTuningSpec": {"trainingDatasetUri": "gs://bkt-test/validated/abc/news.jsonl"},
    "labels": {"distillery-job": JOB},
}


def _tuning(deps: Dependencies, *, polls_per_state: int = 1) -> InMemoryTuningJobs:
    """Give ``deps`` a fake tuning service (``Dependencies.tuning``)."""
    tuning = InMemoryTuningJobs("p", polls_per_state=polls_per_state)
    deps.tuning = tuning  # type: ignore[attr-defined]
    return tuning


def _record_job(
    deps: Dependencies, tuning_job: str, *, job_id: str = JOB, state: JobState = JobState.SUBMITTED
) -> None:
    """Job ``job_id`` in ``state`` (every state on the way announced), tracking ``tuning_job``."""
    fields = {"tuning_job": tuning_job, "backend": "gemini", "location": "us-central1"}
    record = new_record(job_id, state, deps.clock(), fields)
    if state is JobState.SUBMITTED:
        record["history"] = [
            {"state": "REQUESTED", "at": record["created_at"]},
            {"state": "SUBMITTED", "at": record["created_at"]},
        ]
        record["announced"] = ["REQUESTED", "SUBMITTED"]
    else:
        record["announced"] = [state.value]
    deps.records.set("jobs", job_id, record)


def _job(deps: Dependencies, job_id: str = JOB) -> dict[str, Any]:
    record = deps.records.get("jobs", job_id)
    assert record is not None
    return record


def _statuses(deps: Dependencies) -> list[tuple[str, str | None]]:
    assert isinstance(deps.publisher, InMemoryPublisher)
    events = [
        StatusEvent.model_validate_json(m.data) for m in deps.publisher.on("distill-job-status")
    ]
    return [(e.state.value, e.previous_state.value if e.previous_state else None) for e in events]


def _info(state: str, **fields: Any) -> TuningJobInfo:
    return TuningJobInfo(
        name="projects/p/locations/us-central1/tuningJobs/7", state=state, **fields
    )


@pytest.mark.parametrize(
    ("tuning_state", "expected"),
    [
        ("JOB_STATE_QUEUED", "SUBMITTED"),
        ("JOB_STATE_PENDING", "SUBMITTED"),
        ("JOB_STATE_RUNNING", "RUNNING"),
        ("JOB_STATE_SUCCEEDED", "SUCCEEDED"),
        ("JOB_STATE_FAILED", "FAILED"),
        ("JOB_STATE_EXPIRED", "FAILED"),
        ("JOB_STATE_CANCELLING", "CANCELLED"),
        ("JOB_STATE_CANCELLED", "CANCELLED"),
        ("JOB_STATE_PAUSED", "REQUESTED"),
        ("JOB_STATE_UPDATING", "REQUESTED"),
        ("JOB_STATE_UNSPECIFIED", "REQUESTED"),
    ],
)
def test_every_tuning_state_maps_onto_a_job_state(
    deps: Dependencies, tuning_state: str, expected: str
) -> None:
    _record_job(deps, _info(tuning_state).name, state=JobState.REQUESTED)
    applied = apply_tuning_state(JOB, _info(tuning_state, error="boom"), deps)
    assert _job(deps)["state"] == expected
    assert applied.moved is (expected != "REQUESTED")
    if applied.moved:
        assert _job(deps)["tuning_state"] == tuning_state
        assert _statuses(deps) == [(expected, "REQUESTED")]
    else:
        assert applied.target is None and _statuses(deps) == []


def test_the_mapping_covers_the_states_the_brief_lists() -> None:
    assert set(TUNING_TO_JOB_STATE) >= {
        "JOB_STATE_QUEUED",
        "JOB_STATE_PENDING",
        "JOB_STATE_RUNNING",
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_FAILED",
        "JOB_STATE_CANCELLING",
        "JOB_STATE_CANCELLED",
    }


def test_reconcile_polls_a_tuning_job_to_success_and_records_model_and_endpoint(
    deps: Dependencies,
) -> None:
    tuning = _tuning(deps)
    created = tuning.create("us-central1", BODY)
    _record_job(deps, created.name)

    for _ in range(5):
        reconcile(deps)
    record = _job(deps)
    assert record["state"] == "SUCCEEDED"
    assert record["tuning_state"] == "JOB_STATE_SUCCEEDED"
    assert record["model"] == f"projects/p/locations/us-central1/models/tuned-{created.job_id}@1"
    assert "@" in record["model"]
    assert record["candidate_endpoint"] == (
        f"projects/p/locations/us-central1/endpoints/tuned-{created.job_id}"
    )
    assert "endpoint" not in record  # the serving endpoint is the promoter's to set
    assert _statuses(deps) == [("RUNNING", "SUBMITTED"), ("SUCCEEDED", "RUNNING")]
    assert [entry["state"] for entry in record["history"]] == [
        "REQUESTED",
        "SUBMITTED",
        "RUNNING",
        "SUCCEEDED",
    ]


def test_a_failed_tuning_job_carries_its_error_as_the_reason(deps: Dependencies) -> None:
    tuning = _tuning(deps)
    created = tuning.create("us-central1", BODY)
    tuning.fail(created.name, "the training data has no model turn on line 7")
    _record_job(deps, created.name)

    for _ in range(4):
        poll_tuning_jobs(deps, 60)
    record = _job(deps)
    assert record["state"] == "FAILED"
    assert record["history"][-1]["reason"] == "the training data has no model turn on line 7"
    assert "model" not in record
    assert _statuses(deps)[-1] == ("FAILED", "RUNNING")


def test_a_failure_without_an_error_still_says_why(deps: Dependencies) -> None:
    _record_job(deps, _info("JOB_STATE_FAILED").name)
    apply_tuning_state(JOB, _info("JOB_STATE_FAILED"), deps)
    reason = _job(deps)["history"][-1]["reason"]
    assert "tuningJobs/7" in reason and "JOB_STATE_FAILED" in reason


def test_a_cancelled_tuning_job_is_cancelled(deps: Dependencies) -> None:
    tuning = _tuning(deps, polls_per_state=3)
    created = tuning.create("us-central1", BODY)
    _record_job(deps, created.name)
    for _ in range(3):
        poll_tuning_jobs(deps, 60)
    assert _job(deps)["state"] == "RUNNING"
    tuning.cancel(created.name)  # RUNNING → CANCELLING: the outcome is decided
    poll_tuning_jobs(deps, 60)
    record = _job(deps)
    assert record["state"] == "CANCELLED"
    assert record["tuning_state"] == "JOB_STATE_CANCELLING"
    for _ in range(4):  # then CANCELLED: nothing more to do
        poll_tuning_jobs(deps, 60)
    assert _job(deps)["history"] == record["history"]


def test_out_of_order_and_repeated_polls_never_move_a_job_back(deps: Dependencies) -> None:
    _record_job(deps, _info("JOB_STATE_RUNNING").name)
    succeeded = _info(
        "JOB_STATE_SUCCEEDED",
        tuned_model="projects/p/locations/us-central1/models/9@2",
        endpoint="projects/p/locations/us-central1/endpoints/5",
    )
    assert apply_tuning_state(JOB, succeeded, deps).moved
    history = _job(deps)["history"]
    for state in ("JOB_STATE_RUNNING", "JOB_STATE_PENDING", "JOB_STATE_QUEUED", "JOB_STATE_FAILED"):
        assert not apply_tuning_state(JOB, _info(state, error="late"), deps).moved
    assert not apply_tuning_state(JOB, succeeded, deps).moved
    record = _job(deps)
    assert record["state"] == "SUCCEEDED"
    assert record["history"] == history
    assert record["model"] == "projects/p/locations/us-central1/models/9@2"
    assert _statuses(deps) == [("SUCCEEDED", "SUBMITTED")]


def test_a_repeated_poll_announces_what_a_crash_left_unannounced(deps: Dependencies) -> None:
    _record_job(deps, _info("JOB_STATE_RUNNING").name)
    record = _job(deps)
    record["state"] = "RUNNING"
    record["history"].append({"state": "RUNNING", "at": record["created_at"]})
    deps.records.set("jobs", JOB, record)  # moved, but the process died before announcing
    assert not apply_tuning_state(JOB, _info("JOB_STATE_RUNNING"), deps).moved
    assert _statuses(deps) == [("RUNNING", "SUBMITTED")]


def test_a_poll_for_an_unknown_job_is_reported_not_applied(deps: Dependencies) -> None:
    applied = apply_tuning_state("nobody", _info("JOB_STATE_RUNNING"), deps)
    assert applied.known is False and not applied.moved
    assert deps.records.get("jobs", "nobody") is None


def test_poll_tuning_jobs_passes_pipeline_jobs_over(deps: Dependencies) -> None:
    tuning = _tuning(deps)
    created = tuning.create("us-central1", BODY)
    _record_job(deps, created.name)
    pipeline = new_record(
        "pipe-job", JobState.SUBMITTED, deps.clock(), {"pipeline_job": "projects/p/x/pipe-job"}
    )
    deps.records.set("jobs", "pipe-job", pipeline)
    deps.vertex = None  # a pipeline poll would need it: poll_tuning_jobs must not make one

    summary = poll_tuning_jobs(deps, 60)
    assert summary.complete and summary.errors == {}
    assert summary.checked == 1 and summary.moved == [JOB]
    assert _job(deps)["state"] == "RUNNING"
    assert _job(deps, "pipe-job")["state"] == "SUBMITTED"


def test_poll_tuning_jobs_goes_on_from_its_cursor_when_out_of_time(deps: Dependencies) -> None:
    tuning = _tuning(deps)
    for job_id in ("a-job", "b-job", "c-job"):
        _record_job(deps, tuning.create("us-central1", BODY).name, job_id=job_id)
    ticks = iter([0.0, 0.0, 0.0, 10.0, 10.0, 10.0])  # the budget runs out after two jobs
    first = poll_tuning_jobs(deps, 5, monotonic=lambda: next(ticks))
    assert not first.complete
    assert first.moved == ["a-job", "b-job"]
    cursor = deps.records.get("reconcile", TUNING_CURSOR_DOCUMENT)
    assert cursor is not None and cursor["after"] == "b-job"
    assert deps.records.get("reconcile", "cursor") is None  # reconcile's own cursor untouched

    second = poll_tuning_jobs(deps, 60)
    assert second.complete
    assert second.moved[0] == "c-job"
    assert _job(deps, "c-job")["state"] == "RUNNING"


def test_a_failed_poll_is_reported_and_the_pass_goes_on(deps: Dependencies) -> None:
    tuning = _tuning(deps)
    _record_job(deps, "projects/p/locations/us-central1/tuningJobs/404", job_id="a-job")
    _record_job(deps, tuning.create("us-central1", BODY).name, job_id="b-job")
    summary = poll_tuning_jobs(deps, 60)
    assert "tuningJobs/404" in summary.errors["a-job"]
    assert summary.moved == ["b-job"]


def test_without_a_tuning_client_each_gemini_job_reports_it(deps: Dependencies) -> None:
    deps.tuning = None  # the fakes have one: this function was built without
    _record_job(deps, _info("JOB_STATE_RUNNING").name)
    summary = poll_tuning_jobs(deps, 60)
    assert "tuning jobs client" in summary.errors[JOB]
    assert _job(deps)["state"] == "SUBMITTED"
