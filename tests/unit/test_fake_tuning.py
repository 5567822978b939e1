"""The in-memory TuningJobs fake is as unkind as the service: ids it picks, lost answers, polls."""

from __future__ import annotations

from typing import Any

import pytest

from distillery.core.errors import (
    ObjectNotFoundError,
    QuotaExceededError,
    RequestRejectedError,
    ServiceUnavailableError,
)
from distillery.fakes import InMemoryTuningJobs

REGION = "us-central1"


def body(job_id: str = "job-1") -> dict[str, Any]:
    return {
        "baseModel": "gemini-2.5-flash",
        "supervisedTuningSpec": {"trainingDatasetUri": "gs://b/train.jsonl"},
        "labels": {"distillery-job-id": job_id},
    }


def test_every_create_is_a_new_job_with_an_id_the_service_chose() -> None:
    tuning = InMemoryTuningJobs("p")
    first, second = tuning.create(REGION, body()), tuning.create(REGION, body())
    assert first.name == "projects/p/locations/us-central1/tuningJobs/1"
    assert second.job_id == "2"
    assert first.state == "JOB_STATE_PENDING"
    assert first.labels == {"distillery-job-id": "job-1"}
    assert tuning.create_calls == 2


def test_a_lost_answer_leaves_the_job_created_and_findable_by_label() -> None:
    tuning = InMemoryTuningJobs()
    tuning.lose_answers = 1
    with pytest.raises(ServiceUnavailableError):
        tuning.create(REGION, body("job-9"))
    assert len(tuning.jobs) == 1
    found = tuning.find_by_label(REGION, "distillery-job-id", "job-9")
    assert found is not None and found.job_id == "1"
    assert tuning.find_by_label(REGION, "distillery-job-id", "other") is None
    assert tuning.find_by_label("europe-west4", "distillery-job-id", "job-9") is None
    tuning.create(REGION, body("job-9"))
    newest = tuning.find_by_label(REGION, "distillery-job-id", "job-9")
    assert newest is not None and newest.job_id == "2"


def test_a_queued_error_creates_nothing() -> None:
    tuning = InMemoryTuningJobs()
    tuning.fail_next.append(QuotaExceededError("later"))
    with pytest.raises(QuotaExceededError):
        tuning.create(REGION, body())
    assert not tuning.jobs
    with pytest.raises(RequestRejectedError, match="baseModel"):
        tuning.create(REGION, {"labels": {}})


def test_state_changes_take_polls_and_success_brings_a_model_and_endpoint() -> None:
    tuning = InMemoryTuningJobs(polls_per_state=2)
    name = tuning.create(REGION, body()).name
    states = [tuning.get(name).state for _ in range(5)]
    assert states == [
        "JOB_STATE_PENDING",
        "JOB_STATE_RUNNING",
        "JOB_STATE_RUNNING",
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_SUCCEEDED",
    ]
    job = tuning.get(name)
    assert job.tuned_model == "projects/p/locations/us-central1/models/tuned-1@1"
    assert job.endpoint == "projects/p/locations/us-central1/endpoints/tuned-1"
    with pytest.raises(RequestRejectedError, match="taught no answers"):
        tuning.generate(job.endpoint, "q")
    tuning.teach(job.endpoint, {"q": "a"}, "other")
    assert tuning.generate(job.endpoint, "q") == "a"
    assert tuning.generate(job.endpoint, "z") == "other"
    with pytest.raises(ObjectNotFoundError):
        tuning.generate("projects/p/locations/us-central1/endpoints/nope", "q")
    with pytest.raises(ObjectNotFoundError):
        tuning.get("projects/p/locations/us-central1/tuningJobs/99")


def test_a_failing_job_ends_failed_with_its_reason() -> None:
    tuning = InMemoryTuningJobs(polls_per_state=1)
    name = tuning.create(REGION, body()).name
    tuning.fail(name, "the dataset is too small")
    assert [tuning.get(name).state for _ in range(2)] == ["JOB_STATE_RUNNING", "JOB_STATE_FAILED"]
    job = tuning.get(name)
    assert job.error == "the dataset is too small"
    assert job.tuned_model is None


def test_cancel_is_immediate_when_pending_and_takes_polls_when_running() -> None:
    tuning = InMemoryTuningJobs(polls_per_state=2)
    pending = tuning.create(REGION, body()).name
    tuning.cancel(pending)
    assert tuning.get(pending).state == "JOB_STATE_CANCELLED"
    with pytest.raises(RequestRejectedError, match="already ended"):
        tuning.cancel(pending)
    running = tuning.create(REGION, body()).name
    tuning.get(running)
    assert tuning.get(running).state == "JOB_STATE_RUNNING"
    tuning.cancel(running)
    assert tuning.get(running).state == "JOB_STATE_CANCELLING"
    job = tuning.get(running)
    assert job.state == "JOB_STATE_CANCELLED"
    assert job.error is not None and "cancelled" in job.error
    with pytest.raises(ObjectNotFoundError):
        tuning.cancel("projects/p/locations/us-central1/tuningJobs/99")
