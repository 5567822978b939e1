"""The launcher on the in-memory ports: one job per request, reruns, refusals and faults."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from distillery.core.errors import (
    ContentionError,
    QuotaExceededError,
    RequestRejectedError,
    ServiceUnavailableError,
)
from distillery.core.models import LaunchRequest, StatusEvent, StorageObject
from distillery.core.ports import PipelineJobInfo
from distillery.core.runtime import Dependencies, run_handler
from distillery.fakes import (
    InMemoryObjectStore,
    InMemoryPublisher,
    InMemoryVertexPipelines,
)
from distillery.local.example_data import generate
from distillery.services.datasets import handle_object
from distillery.services.launcher import (
    AmbiguousDatasetError,
    RequestConflictError,
    UnknownDatasetError,
    UnknownJobError,
    UnvalidatedEvalSetError,
    handle_launch_event,
    launch,
)
from distillery.services.status import reconcile
from tests.helpers import (
    BUCKET,
    CrashOnSubmitted,
    fake_dependencies,
    jsonl,
    validated_request,
)


def _statuses(deps: Dependencies) -> list[StatusEvent]:
    assert isinstance(deps.publisher, InMemoryPublisher)
    return [
        StatusEvent.model_validate_json(m.data) for m in deps.publisher.on("distill-job-status")
    ]


def _vertex(deps: Dependencies) -> InMemoryVertexPipelines:
    assert isinstance(deps.vertex, InMemoryVertexPipelines)
    return deps.vertex


def test_launch_submits_one_job_with_the_resolved_request(deps: Dependencies) -> None:
    request = validated_request(deps)
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
    request = validated_request(deps)
    job_ids = {launch(request, deps) for _ in range(20)}
    assert len(job_ids) == 1
    assert len(_vertex(deps).jobs) == 1
    assert len(_statuses(deps)) == 2


def test_launch_converges_after_a_crash_between_vertex_and_firestore() -> None:
    deps = fake_dependencies()
    deps.records = CrashOnSubmitted()
    request = validated_request(deps)
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
    original = launch(validated_request(deps), deps)
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
    request = validated_request(deps, config=b'{"train_steps": 500}')
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
    request = validated_request(deps)
    _vertex(deps).fail_next.append(RequestRejectedError("Vertex AI refused the job: bad region"))
    job_id = launch(request, deps)
    record = deps.records.get("jobs", job_id)
    assert record is not None
    assert record["state"] == "FAILED"
    assert "bad region" in record["reason"]
    assert [s.state.value for s in _statuses(deps)] == ["REQUESTED", "FAILED"]


def test_launch_quota_exhausted_is_retried_then_succeeds(deps: Dependencies) -> None:
    request = validated_request(deps)
    _vertex(deps).fail_next.append(QuotaExceededError("out of A100 quota"))
    with pytest.raises(QuotaExceededError):
        launch(request, deps)
    job_id = launch(request, deps)
    record = deps.records.get("jobs", job_id)
    assert record is not None and record["state"] == "SUBMITTED"
    assert len(_vertex(deps).jobs) == 1


class _CrashAfterCreate(InMemoryVertexPipelines):
    """Vertex AI accepts the job, then the process 'dies' before anything else is recorded."""

    def __init__(self, project: str = "p") -> None:
        super().__init__(project)
        self.crashed = False

    def create(self, location: str, job_id: str, body: Mapping[str, Any]) -> PipelineJobInfo:
        info = super().create(location, job_id, body)
        if not self.crashed:
            self.crashed = True
            raise ServiceUnavailableError("injected crash after Vertex AI accepted the job")
        return info


def test_finding_1_budget_fallback_after_a_crash_still_makes_one_job() -> None:
    # TPU (74.67 h) fits a 100 h budget alone; counting its own REQUESTED record against the
    # budget on the redelivery would fall back to GPU (12.67 h) and submit a second job.
    deps = fake_dependencies(accelerators="TPU,GPU", daily_accelerator_hours=100.0)
    deps.vertex = _CrashAfterCreate()
    request = validated_request(deps)
    with pytest.raises(ServiceUnavailableError, match="injected"):
        launch(request, deps)
    job_id = launch(request, deps)  # the redelivery
    assert launch(request, deps) == job_id  # and another
    [body] = _vertex(deps).jobs.values()
    assert body["runtimeConfig"]["parameterValues"]["accelerator_type"] == "TPU"
    [record] = deps.records.list("jobs")
    assert record["job_id"] == job_id and record["state"] == "SUBMITTED"
    assert record["spec"]["accelerator_type"] == "TPU"


def test_finding_2_a_transient_error_under_a_concurrency_limit_is_launched_on_redelivery() -> None:
    deps = fake_dependencies(max_concurrent_jobs=1)
    request = validated_request(deps)
    _vertex(deps).fail_next.append(ServiceUnavailableError("Vertex AI unavailable"))
    with pytest.raises(ServiceUnavailableError):
        launch(request, deps)
    job_id = launch(request, deps)  # the redelivery: the job does not count against itself
    record = deps.records.get("jobs", job_id)
    assert record is not None and record["state"] == "SUBMITTED"
    assert len(_vertex(deps).jobs) == 1
    # The slot is taken while the job runs, and freed when it ends: later launches go ahead.
    second = LaunchRequest(rerun_of=job_id, request_id="second")
    refused = launch(second, deps)
    assert deps.records.get("jobs", refused)["state"] == "REJECTED_BY_POLICY"  # type: ignore[index]
    _vertex(deps).set_state(record["pipeline_job"], "PIPELINE_STATE_SUCCEEDED")
    reconcile(deps)
    third = launch(LaunchRequest(rerun_of=job_id, request_id="third"), deps)
    assert deps.records.get("jobs", third)["state"] == "SUBMITTED"  # type: ignore[index]
    assert len(_vertex(deps).jobs) == 2


def test_finding_2_reconcile_resumes_a_job_left_requested_past_the_lease() -> None:
    deps = fake_dependencies(max_concurrent_jobs=1, requested_lease_seconds=600)
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    now = [start]
    deps.clock = lambda: now[0]
    request = validated_request(deps)
    _vertex(deps).fail_next.append(ServiceUnavailableError("Vertex AI unavailable"))
    with pytest.raises(ServiceUnavailableError):
        launch(request, deps)  # and the event is never delivered again
    [record] = deps.records.list("jobs")
    assert record["state"] == "REQUESTED"

    now[0] = start + timedelta(seconds=599)
    reconcile(deps)  # within the lease: a delivery may be working on it
    assert deps.records.get("jobs", record["job_id"])["state"] == "REQUESTED"  # type: ignore[index]
    assert _vertex(deps).jobs == {}

    now[0] = start + timedelta(seconds=601)
    summary = reconcile(deps)
    assert record["job_id"] in summary.moved
    resumed = deps.records.get("jobs", record["job_id"])
    assert resumed is not None and resumed["state"] == "SUBMITTED"
    [body] = _vertex(deps).jobs.values()
    # The frozen plan, not a new one.
    assert {key: body[key] for key in record["request_body"]} == record["request_body"]
    assert [s.state.value for s in _statuses(deps)] == ["REQUESTED", "SUBMITTED"]


def _launch_event(request: LaunchRequest, event_id: str = "launch-1") -> CloudEvent:
    """The messagePublished CloudEvent Eventarc delivers for ``request`` on the launch topic."""
    return CloudEvent(
        {
            "id": event_id,
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/p/topics/distill-launch-requests",
        },
        {"message": {"data": base64.b64encode(request.to_bytes()).decode(), "messageId": "1"}},
    )


def test_launch_request_carries_its_dataset_record_id(deps: Dependencies) -> None:
    request = validated_request(deps)
    assert request.dataset_id is not None
    dataset = deps.records.get("datasets", request.dataset_id)
    assert dataset is not None and dataset["validated_uri"] == request.dataset_uri
    record = deps.records.get("jobs", launch(request, deps))
    assert record is not None and record["dataset_id"] == request.dataset_id


def test_launch_job_id_is_the_request_identity_not_the_plan() -> None:
    # The same request under other settings resolves another plan, and keeps its job id.
    first, second = fake_dependencies(), fake_dependencies(max_train_steps=200, region="us-west1")
    request = validated_request(first)
    validated_request(second)
    assert launch(request, first) == launch(request, second)
    other = request.model_copy(update={"request_id": "another"})
    assert launch(other, first) != launch(request, first)


def test_launch_reused_request_id_with_another_payload_is_a_conflict(deps: Dependencies) -> None:
    request = validated_request(deps)
    job_id = launch(request, deps)
    changed = request.model_copy(update={"overrides": {"train_steps": 500}})
    with pytest.raises(RequestConflictError, match=request.request_id) as raised:
        launch(changed, deps)
    assert job_id in str(raised.value) and "new request_id" in str(raised.value)
    assert len(_vertex(deps).jobs) == 1
    record = deps.records.get("jobs", job_id)
    assert record is not None
    assert record["request_body"]["runtimeConfig"]["parameterValues"]["train_steps"] == 300
    # Who sent it is not part of the payload: the same request from elsewhere is a redelivery.
    assert launch(request.model_copy(update={"requested_by": "someone"}), deps) == job_id


def test_launch_conflict_is_recorded_as_a_failed_event_and_acknowledged(
    deps: Dependencies, caplog: pytest.LogCaptureFixture
) -> None:
    request = validated_request(deps)
    launch(request, deps)
    changed = request.model_copy(update={"overrides": {"train_steps": 500}})
    with caplog.at_level(logging.ERROR, logger="distillery.services.launcher"):
        result = run_handler("launch_job", _launch_event(changed), handle_launch_event, deps)
    assert result is None  # acknowledged: a redelivery would conflict again
    assert any("reused with another payload" in r.getMessage() for r in caplog.records)
    [failure] = deps.records.list("failed_events")
    assert failure["function"] == "launch_job"
    assert failure["error"] == "RequestConflictError"
    assert request.request_id in failure["reason"]
    assert len(_vertex(deps).jobs) == 1


def test_launch_refuses_an_eval_set_that_was_not_validated_with_the_dataset(
    deps: Dependencies,
) -> None:
    request = validated_request(deps)
    assert isinstance(deps.objects, InMemoryObjectStore)
    deps.objects.put(BUCKET, "elsewhere/other.eval.jsonl", b"{}\n")
    forged = request.model_copy(
        update={"eval_dataset_uri": f"gs://{BUCKET}/elsewhere/other.eval.jsonl", "request_id": "f"}
    )
    with pytest.raises(UnvalidatedEvalSetError, match="not a validated eval set") as raised:
        launch(forged, deps)
    assert str(request.eval_dataset_uri) in str(raised.value)  # it says which one is
    assert _vertex(deps).jobs == {} and deps.records.list("jobs") == []
    # The unvalidated original upload of the eval set is not the validated copy either.
    original = forged.model_copy(
        update={"eval_dataset_uri": f"gs://{BUCKET}/datasets/news.eval.jsonl"}
    )
    with pytest.raises(UnvalidatedEvalSetError):
        launch(original, deps)


def test_launch_refuses_an_eval_set_for_a_dataset_validated_without_one(
    deps: Dependencies,
) -> None:
    train, _ = generate(240, 20)
    assert isinstance(deps.objects, InMemoryObjectStore)
    info = deps.objects.put(BUCKET, "datasets/solo.jsonl", jsonl(train))
    handle_object(StorageObject(bucket=BUCKET, name=info.name, generation=info.generation), deps)
    assert isinstance(deps.publisher, InMemoryPublisher)
    [message] = deps.publisher.on(deps.settings.launch_topic)
    request = LaunchRequest.model_validate_json(message.data)
    assert request.eval_dataset_uri is None
    forged = request.model_copy(update={"eval_dataset_uri": f"gs://{BUCKET}/x/any.jsonl"})
    with pytest.raises(UnvalidatedEvalSetError, match="no eval set was validated with it"):
        launch(forged, deps)
    assert _vertex(deps).jobs == {}


def _upload_twice(deps: Dependencies) -> list[LaunchRequest]:
    """news.jsonl uploaded twice with the same content (and so the same validated copy)."""
    train, evaluation = generate(240, 20)
    assert isinstance(deps.objects, InMemoryObjectStore)
    deps.objects.put(BUCKET, "datasets/news.eval.jsonl", jsonl(evaluation))
    for _ in range(2):
        info = deps.objects.put(BUCKET, "datasets/news.jsonl", jsonl(train))
        obj = StorageObject(bucket=BUCKET, name=info.name, generation=info.generation)
        handle_object(obj, deps)
    assert isinstance(deps.publisher, InMemoryPublisher)
    messages = deps.publisher.on(deps.settings.launch_topic)
    return [LaunchRequest.model_validate_json(m.data) for m in messages]


def test_launch_finds_each_upload_by_its_record_id_not_its_validated_uri(
    deps: Dependencies,
) -> None:
    first, second = _upload_twice(deps)
    assert first.dataset_uri == second.dataset_uri and first.dataset_id != second.dataset_id
    jobs = [deps.records.get("jobs", launch(r, deps)) for r in (first, second)]
    assert [job["dataset_id"] for job in jobs if job] == [first.dataset_id, second.dataset_id]
    assert len(_vertex(deps).jobs) == 2


def test_launch_without_dataset_id_refuses_an_ambiguous_validated_uri(
    deps: Dependencies,
) -> None:
    first, second = _upload_twice(deps)
    user = LaunchRequest(dataset_uri=first.dataset_uri, request_id="user-1")
    with pytest.raises(AmbiguousDatasetError, match="dataset_id") as raised:
        launch(user, deps)
    assert str(first.dataset_id) in str(raised.value) and str(second.dataset_id) in str(
        raised.value
    )
    assert _vertex(deps).jobs == {}
    named = user.model_copy(update={"dataset_id": second.dataset_id})
    record = deps.records.get("jobs", launch(named, deps))
    assert record is not None and record["dataset_id"] == second.dataset_id


def test_launch_without_dataset_id_finds_the_one_record_of_its_validated_uri(
    deps: Dependencies,
) -> None:
    request = validated_request(deps)
    user = LaunchRequest(
        dataset_uri=request.dataset_uri, eval_dataset_uri=request.eval_dataset_uri, request_id="u"
    )
    record = deps.records.get("jobs", launch(user, deps))
    assert record is not None and record["dataset_id"] == request.dataset_id
    assert record["state"] == "SUBMITTED"


def test_launch_dataset_id_must_name_the_dataset_uri(deps: Dependencies) -> None:
    request = validated_request(deps)
    with pytest.raises(UnknownDatasetError, match="names no validated dataset record"):
        launch(request.model_copy(update={"dataset_id": "no-such-record"}), deps)
    other = request.model_copy(update={"dataset_uri": f"gs://{BUCKET}/validated/x/news.jsonl"})
    with pytest.raises(UnknownDatasetError, match="not gs://"):
        launch(other, deps)
    assert _vertex(deps).jobs == {}


def test_launch_rerun_keeps_the_original_dataset_record(deps: Dependencies) -> None:
    _, second = _upload_twice(deps)
    original = launch(second, deps)
    rerun = launch(LaunchRequest(rerun_of=original, request_id="rerun-1"), deps)
    record = deps.records.get("jobs", rerun)
    assert record is not None and record["dataset_id"] == second.dataset_id
    assert record["state"] == "SUBMITTED"


def test_launch_policy_decision_is_frozen_across_redeliveries() -> None:
    # A refusal is decided once too: usage that changes later does not turn it into a launch.
    deps = fake_dependencies(max_concurrent_jobs=1)
    first = validated_request(deps)
    running = launch(first, deps)
    refused = launch(LaunchRequest(rerun_of=running, request_id="later"), deps)
    assert deps.records.get("jobs", refused)["state"] == "REJECTED_BY_POLICY"  # type: ignore[index]
    record = deps.records.get("jobs", running)
    assert record is not None
    _vertex(deps).set_state(record["pipeline_job"], "PIPELINE_STATE_SUCCEEDED")
    reconcile(deps)
    assert launch(LaunchRequest(rerun_of=running, request_id="later"), deps) == refused
    assert deps.records.get("jobs", refused)["state"] == "REJECTED_BY_POLICY"  # type: ignore[index]
    assert len(_vertex(deps).jobs) == 1
