"""The launcher on the in-memory ports: one job per request, reruns, refusals and faults."""

from __future__ import annotations

from typing import Any

import pytest

from distillery.core.errors import (
    ContentionError,
    QuotaExceededError,
    RequestRejectedError,
)
from distillery.core.models import LaunchRequest, StatusEvent, StorageObject
from distillery.core.ports import Mutation
from distillery.core.runtime import Dependencies
from distillery.fakes import (
    InMemoryObjectStore,
    InMemoryPublisher,
    InMemoryRecordStore,
    InMemoryVertexPipelines,
)
from distillery.local.example_data import generate
from distillery.services.datasets import handle_object
from distillery.services.launcher import UnknownDatasetError, UnknownJobError, launch
from tests.helpers import BUCKET, fake_dependencies, jsonl


def _validated_request(deps: Dependencies, config: bytes | None = None) -> LaunchRequest:
    train, evaluation = generate(240, 20)
    assert isinstance(deps.objects, InMemoryObjectStore)
    deps.objects.put(BUCKET, "datasets/news.eval.jsonl", jsonl(evaluation))
    if config is not None:
        deps.objects.put(BUCKET, "datasets/news.config.json", config)
    info = deps.objects.put(BUCKET, "datasets/news.jsonl", jsonl(train))
    handle_object(StorageObject(bucket=BUCKET, name=info.name, generation=info.generation), deps)
    assert isinstance(deps.publisher, InMemoryPublisher)
    [message] = deps.publisher.on(deps.settings.launch_topic)
    return LaunchRequest.model_validate_json(message.data)


def _statuses(deps: Dependencies) -> list[StatusEvent]:
    assert isinstance(deps.publisher, InMemoryPublisher)
    return [
        StatusEvent.model_validate_json(m.data) for m in deps.publisher.on("distill-job-status")
    ]


def _vertex(deps: Dependencies) -> InMemoryVertexPipelines:
    assert isinstance(deps.vertex, InMemoryVertexPipelines)
    return deps.vertex


def test_launch_submits_one_job_with_the_resolved_request(deps: Dependencies) -> None:
    request = _validated_request(deps)
    job_id = launch(request, deps)

    [(name, body)] = _vertex(deps).jobs.items()
    assert name == f"projects/p/locations/us-central1/pipelineJobs/{job_id}"
    params = body["runtimeConfig"]["parameterValues"]
    assert params["dataset_uri"] == request.dataset_uri
    assert params["evaluation_data_uri"] == request.eval_dataset_uri
    assert params["train_steps"] == 300
    assert body["templateUri"].endswith("/distillation/distillation/v1.0.0")
    record = deps.records.get("jobs", job_id)
    assert record is not None
    assert record["state"] == "SUBMITTED"
    assert record["pipeline_job"] == name
    assert record["spec"]["batch_size"] == 8
    assert [h["state"] for h in record["history"]] == ["REQUESTED", "SUBMITTED"]
    statuses = _statuses(deps)
    assert [(s.state.value, s.previous_state) for s in statuses] == [
        ("REQUESTED", None),
        ("SUBMITTED", "REQUESTED"),
    ]
    assert statuses[-1].pipeline_job == name


def test_launch_redelivered_twenty_times_creates_one_job(deps: Dependencies) -> None:
    request = _validated_request(deps)
    job_ids = {launch(request, deps) for _ in range(20)}
    assert len(job_ids) == 1
    assert len(_vertex(deps).jobs) == 1
    assert len(_statuses(deps)) == 2


class _CrashOnSubmitted(InMemoryRecordStore):
    """Fails the first write that records SUBMITTED: a crash after the Vertex AI call."""

    def __init__(self) -> None:
        super().__init__()
        self.crashed = False

    def transact(self, collection: str, doc_id: str, mutate: Mutation) -> dict[str, Any] | None:
        def guarded(current: dict[str, Any] | None) -> dict[str, Any] | None:
            updated = mutate(current)
            if updated and updated.get("state") == "SUBMITTED" and not self.crashed:
                self.crashed = True
                raise ContentionError("injected crash between Vertex AI and Firestore")
            return updated

        return super().transact(collection, doc_id, guarded)


def test_launch_converges_after_a_crash_between_vertex_and_firestore() -> None:
    deps = fake_dependencies()
    deps.records = _CrashOnSubmitted()
    request = _validated_request(deps)
    with pytest.raises(ContentionError, match="injected"):
        launch(request, deps)
    [job_id] = [r["job_id"] for r in deps.records.list("jobs")]
    assert deps.records.get("jobs", job_id)["state"] == "REQUESTED"  # type: ignore[index]
    assert launch(request, deps) == job_id  # the redelivery
    assert len(_vertex(deps).jobs) == 1
    assert _vertex(deps).create_calls == 2  # the second answered ALREADY_EXISTS
    record = deps.records.get("jobs", job_id)
    assert record is not None and record["state"] == "SUBMITTED"
    assert record["pipeline_job"].endswith(job_id)


def test_launch_rerun_applies_overrides_once(deps: Dependencies) -> None:
    original = launch(_validated_request(deps), deps)
    rerun = LaunchRequest(rerun_of=original, overrides={"train_steps": 500}, request_id="rerun-1")
    first = launch(rerun, deps)
    again = launch(rerun, deps)
    assert first == again != original
    assert len(_vertex(deps).jobs) == 2
    record = deps.records.get("jobs", first)
    assert record is not None
    assert record["rerun_of"] == original
    assert record["request_body"]["runtimeConfig"]["parameterValues"]["train_steps"] == 500
    original_record = deps.records.get("jobs", original)
    assert original_record is not None
    assert record["request"]["dataset_uri"] == original_record["request"]["dataset_uri"]


def test_launch_rerun_of_unknown_job_is_permanent(deps: Dependencies) -> None:
    with pytest.raises(UnknownJobError, match="no-such-job"):
        launch(LaunchRequest(rerun_of="no-such-job", request_id="r"), deps)


def test_launch_unvalidated_dataset_is_permanent(deps: Dependencies) -> None:
    request = LaunchRequest(dataset_uri=f"gs://{BUCKET}/elsewhere/x.jsonl", request_id="r")
    with pytest.raises(UnknownDatasetError, match="not a validated dataset"):
        launch(request, deps)
    assert _vertex(deps).jobs == {}


def test_launch_policy_refusal_records_and_announces_without_submitting() -> None:
    deps = fake_dependencies(max_train_steps=400)
    request = _validated_request(deps, config=b'{"train_steps": 500}')
    job_id = launch(request, deps)
    assert _vertex(deps).jobs == {}
    record = deps.records.get("jobs", job_id)
    assert record is not None
    assert record["state"] == "REJECTED_BY_POLICY"
    assert any("500" in r for r in record["refusals"])
    [status] = _statuses(deps)
    assert status.state.value == "REJECTED_BY_POLICY"
    assert status.reason and "500" in status.reason
    assert launch(request, deps) == job_id  # redelivery: nothing new
    assert len(_statuses(deps)) == 1


def test_launch_rejected_by_vertex_is_recorded_failed(deps: Dependencies) -> None:
    request = _validated_request(deps)
    _vertex(deps).fail_next.append(RequestRejectedError("Vertex AI refused the job: bad region"))
    job_id = launch(request, deps)
    record = deps.records.get("jobs", job_id)
    assert record is not None
    assert record["state"] == "FAILED"
    assert "bad region" in record["reason"]
    assert [s.state.value for s in _statuses(deps)] == ["REQUESTED", "FAILED"]


def test_launch_quota_exhausted_is_retried_then_succeeds(deps: Dependencies) -> None:
    request = _validated_request(deps)
    _vertex(deps).fail_next.append(QuotaExceededError("out of A100 quota"))
    with pytest.raises(QuotaExceededError):
        launch(request, deps)
    job_id = launch(request, deps)
    record = deps.records.get("jobs", job_id)
    assert record is not None and record["state"] == "SUBMITTED"
    assert len(_vertex(deps).jobs) == 1
