"""The in-memory BatchPredictions fake is as unkind as the service: ids it picks, lost answers,
polls, output lines in no order, lines that fail."""

from __future__ import annotations

import json
from typing import Any

import pytest

from distillery.core.errors import (
    ObjectNotFoundError,
    QuotaExceededError,
    RequestRejectedError,
    ServiceUnavailableError,
)
from distillery.core.ports import BatchPredictionJobInfo
from distillery.facts import GEMINI_BATCH_PREDICTIONS_FILE
from distillery.fakes import InMemoryBatchPredictions, InMemoryObjectStore

REGION = "us-central1"
BUCKET = "b"
PROMPTS = ["the match ended 3-1", "stocks fell sharply", "a new comet was seen", "rain today"]


def request_line(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"request": {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}, **extra}


def store_with_input() -> InMemoryObjectStore:
    store = InMemoryObjectStore()
    data = "".join(json.dumps(request_line(p, line=i)) + "\n" for i, p in enumerate(PROMPTS))
    store.put(BUCKET, "labeling/in.jsonl", data.encode())
    return store


def body(request_id: str = "job-1") -> dict[str, Any]:
    return {
        "displayName": f"label-{request_id}",
        "model": "publishers/google/models/gemini-2.5-pro",
        "inputConfig": {
            "instancesFormat": "jsonl",
            "gcsSource": {"uris": [f"gs://{BUCKET}/labeling/in.jsonl"]},
        },
        "outputConfig": {
            "predictionsFormat": "jsonl",
            "gcsDestination": {"outputUriPrefix": f"gs://{BUCKET}/labeling/out"},
        },
        "labels": {"distillery-job-id": request_id},
    }


def poll_to_end(
    batch: InMemoryBatchPredictions, name: str
) -> tuple[list[str], BatchPredictionJobInfo]:
    states: list[str] = []
    for _ in range(50):
        info = batch.get(name)
        if not states or states[-1] != info.state:
            states.append(info.state)
        if info.state in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
            return states, info
    raise AssertionError(f"{name} never ended: {states}")


def output_lines(store: InMemoryObjectStore, info: BatchPredictionJobInfo) -> list[dict[str, Any]]:
    assert info.output_directory is not None
    bucket, _, path = info.output_directory.removeprefix("gs://").partition("/")
    data = store.read_bytes(bucket, f"{path}/{GEMINI_BATCH_PREDICTIONS_FILE}")
    return [json.loads(line) for line in data.splitlines()]


def test_every_create_is_a_new_queued_job_with_an_id_the_service_chose() -> None:
    batch = InMemoryBatchPredictions(store_with_input())
    first, second = batch.create(REGION, body()), batch.create(REGION, body())
    assert first.name == "projects/p/locations/us-central1/batchPredictionJobs/1"
    assert second.job_id == "2"
    assert first.state == "JOB_STATE_QUEUED"
    assert first.labels == {"distillery-job-id": "job-1"}
    assert first.output_directory is None and first.successful_count is None
    assert batch.create_calls == 2


def test_a_job_takes_polls_through_each_state_and_answers_every_line() -> None:
    store = store_with_input()
    batch = InMemoryBatchPredictions(store, polls_per_state=2)
    batch.teach({"the match ended 3-1": "sports"}, default="other")
    created = batch.create(REGION, body())
    states, info = poll_to_end(batch, created.name)
    assert states == [
        "JOB_STATE_QUEUED",
        "JOB_STATE_PENDING",
        "JOB_STATE_RUNNING",
        "JOB_STATE_SUCCEEDED",
    ]
    assert (info.successful_count, info.failed_count, info.incomplete_count) == (4, 0, 0)
    assert info.output_directory is not None
    assert info.output_directory.startswith(f"gs://{BUCKET}/labeling/out/prediction-model-")
    lines = output_lines(store, info)
    by_line = {line["line"]: line for line in lines}
    assert sorted(by_line) == [0, 1, 2, 3]
    assert all(line["status"] == "" for line in lines)
    answers = {
        line["request"]["contents"][0]["parts"][0]["text"]: line["response"]["candidates"][0][
            "content"
        ]["parts"][0]["text"]
        for line in lines
    }
    assert answers == {
        "the match ended 3-1": "sports",
        "stocks fell sharply": "other",
        "a new comet was seen": "other",
        "rain today": "other",
    }


def test_the_output_comes_in_no_promised_order() -> None:
    store = store_with_input()
    batch = InMemoryBatchPredictions(store, polls_per_state=1)
    _, info = poll_to_end(batch, batch.create(REGION, body()).name)
    assert [line["line"] for line in output_lines(store, info)] != [0, 1, 2, 3]


def test_scripted_lines_fail_with_a_status_and_no_response() -> None:
    store = store_with_input()
    batch = InMemoryBatchPredictions(store, polls_per_state=1)
    batch.fail_lines({1: "Request contains an invalid argument.", 3: "blocked"})
    _, info = poll_to_end(batch, batch.create(REGION, body()).name)
    assert (info.successful_count, info.failed_count) == (2, 2)
    by_line = {line["line"]: line for line in output_lines(store, info)}
    assert by_line[1]["status"] == "Request contains an invalid argument."
    assert "response" not in by_line[1] and "response" not in by_line[3]
    assert "response" in by_line[0] and by_line[0]["status"] == ""


def test_missing_input_fails_the_job() -> None:
    batch = InMemoryBatchPredictions(InMemoryObjectStore(), polls_per_state=1)
    _, info = poll_to_end(batch, batch.create(REGION, body()).name)
    assert info.state == "JOB_STATE_FAILED"
    assert info.error is not None and "input could not be read" in info.error


def test_a_lost_answer_leaves_the_job_created_and_findable_by_label() -> None:
    batch = InMemoryBatchPredictions(store_with_input())
    batch.lose_answers = 1
    with pytest.raises(ServiceUnavailableError):
        batch.create(REGION, body("job-9"))
    found = batch.find_by_label(REGION, "distillery-job-id", "job-9")
    assert found is not None and found.job_id == "1"
    assert batch.find_by_label(REGION, "distillery-job-id", "other") is None
    assert batch.find_by_label("europe-west4", "distillery-job-id", "job-9") is None


def test_find_by_label_answers_the_newest() -> None:
    batch = InMemoryBatchPredictions(store_with_input())
    batch.create(REGION, body("same"))
    newest = batch.create(REGION, body("same"))
    found = batch.find_by_label(REGION, "distillery-job-id", "same")
    assert found is not None and found.name == newest.name


def test_a_queued_error_creates_nothing() -> None:
    batch = InMemoryBatchPredictions(store_with_input())
    batch.fail_next.append(QuotaExceededError("quota"))
    with pytest.raises(QuotaExceededError):
        batch.create(REGION, body())
    assert batch.jobs == {} and batch.create_calls == 1


def test_a_body_without_model_input_or_output_is_rejected() -> None:
    batch = InMemoryBatchPredictions(store_with_input())
    broken = body()
    del broken["outputConfig"]
    with pytest.raises(RequestRejectedError, match="outputUriPrefix"):
        batch.create(REGION, broken)


def test_fail_makes_the_job_end_failed() -> None:
    batch = InMemoryBatchPredictions(store_with_input(), polls_per_state=1)
    created = batch.create(REGION, body())
    batch.fail(created.name, "the teacher is overloaded")
    _, info = poll_to_end(batch, created.name)
    assert info.state == "JOB_STATE_FAILED" and info.error == "the teacher is overloaded"
    assert info.output_directory is None


def test_cancel_a_queued_job_ends_it_and_a_running_one_goes_cancelling_first() -> None:
    batch = InMemoryBatchPredictions(store_with_input(), polls_per_state=1)
    queued = batch.create(REGION, body())
    batch.cancel(queued.name)
    assert batch.get(queued.name).state == "JOB_STATE_CANCELLED"
    with pytest.raises(RequestRejectedError, match="already ended"):
        batch.cancel(queued.name)

    running = batch.create(REGION, body())
    while batch.get(running.name).state != "JOB_STATE_RUNNING":
        pass
    batch.cancel(running.name)
    assert batch.jobs[running.name]["state"] == "JOB_STATE_CANCELLING"
    _, info = poll_to_end(batch, running.name)
    assert info.state == "JOB_STATE_CANCELLED" and info.error is not None


def test_unknown_jobs_are_not_found() -> None:
    batch = InMemoryBatchPredictions(InMemoryObjectStore())
    missing = "projects/p/locations/us-central1/batchPredictionJobs/404"
    with pytest.raises(ObjectNotFoundError):
        batch.get(missing)
    with pytest.raises(ObjectNotFoundError):
        batch.cancel(missing)
