"""The batch prediction adapter builds the official client's requests from the product's body and
reads the answers back (a recording client stands in for the service here; the integration
test ``test_batch_api.py`` runs it against the local Vertex AI API)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud.aiplatform_v1 import (
    BatchPredictionJob,
    CompletionStats,
    JobState,
    ListBatchPredictionJobsRequest,
)
from google.rpc import status_pb2

from distillery.adapters._clients import client_kwargs
from distillery.adapters.batch import (
    VertexBatchPredictionsAdapter,
    batch_job_info,
    batch_job_message,
    label_filter,
)
from distillery.core.errors import (
    ConfigurationError,
    ObjectNotFoundError,
    RequestRejectedError,
    ServiceUnavailableError,
)

REGION = "us-central1"
PARENT = f"projects/p/locations/{REGION}"


def body(**extra: Any) -> dict[str, Any]:
    return {
        "displayName": "label-news",
        "model": "publishers/google/models/gemini-2.5-pro",
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://b/in.jsonl"]}},
        "outputConfig": {
            "predictionsFormat": "jsonl",
            "gcsDestination": {"outputUriPrefix": "gs://b/out"},
        },
        "labels": {"distillery-job-id": "job-1"},
        **extra,
    }


class RecordingClient:
    """Answers as the JobServiceClient does and keeps what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.listed: list[BatchPredictionJob] = []
        self.raises: Exception | None = None

    def _record(self, method: str, **kwargs: Any) -> None:
        self.calls.append((method, kwargs))
        if self.raises is not None:
            raise self.raises

    def create_batch_prediction_job(
        self, *, parent: str, batch_prediction_job: BatchPredictionJob
    ) -> BatchPredictionJob:
        self._record("create", parent=parent, batch_prediction_job=batch_prediction_job)
        created = BatchPredictionJob(batch_prediction_job)
        created.name = f"{parent}/batchPredictionJobs/123"
        created.state = JobState.JOB_STATE_PENDING
        return created

    def get_batch_prediction_job(self, *, name: str) -> BatchPredictionJob:
        self._record("get", name=name)
        return BatchPredictionJob(name=name, state=JobState.JOB_STATE_RUNNING)

    def list_batch_prediction_jobs(
        self, *, request: ListBatchPredictionJobsRequest
    ) -> list[BatchPredictionJob]:
        self._record("list", request=request)
        return self.listed

    def cancel_batch_prediction_job(self, *, name: str) -> None:
        self._record("cancel", name=name)


def adapter_with(client: RecordingClient) -> VertexBatchPredictionsAdapter:
    adapter = VertexBatchPredictionsAdapter("p")
    adapter._clients[REGION] = client
    return adapter


def test_create_sends_the_planned_body_field_for_field() -> None:
    client = RecordingClient()
    created = adapter_with(client).create(REGION, body())
    [(method, kwargs)] = client.calls
    assert method == "create" and kwargs["parent"] == PARENT
    job: BatchPredictionJob = kwargs["batch_prediction_job"]
    assert job.model == "publishers/google/models/gemini-2.5-pro"
    assert job.input_config.instances_format == "jsonl"
    assert list(job.input_config.gcs_source.uris) == ["gs://b/in.jsonl"]
    assert job.output_config.predictions_format == "jsonl"
    assert job.output_config.gcs_destination.output_uri_prefix == "gs://b/out"
    assert dict(job.labels) == {"distillery-job-id": "job-1"}
    assert created.name == f"{PARENT}/batchPredictionJobs/123"
    assert created.state == "JOB_STATE_PENDING"
    assert created.labels == {"distillery-job-id": "job-1"}
    assert created.successful_count is None and created.output_directory is None


def test_a_body_the_message_does_not_define_is_rejected_before_any_call() -> None:
    client = RecordingClient()
    with pytest.raises(RequestRejectedError, match="does not parse"):
        adapter_with(client).create(REGION, body(teacherInstruction="explain"))
    with pytest.raises(RequestRejectedError):
        batch_job_message(body(labels="not a map"))
    assert client.calls == []


def test_find_by_label_filters_by_the_quoted_label_and_keeps_the_newest_exact_match() -> None:
    client = RecordingClient()
    old = BatchPredictionJob(name=f"{PARENT}/batchPredictionJobs/1", labels={"k": "v"})
    old.create_time = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    new = BatchPredictionJob(name=f"{PARENT}/batchPredictionJobs/2", labels={"k": "v"})
    new.create_time = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    # A filter the service got wrong must not adopt someone else's job.
    other = BatchPredictionJob(name=f"{PARENT}/batchPredictionJobs/3", labels={"k": "w"})
    other.create_time = dt.datetime(2026, 1, 3, tzinfo=dt.UTC)
    client.listed = [old, new, other]
    found = adapter_with(client).find_by_label(REGION, "k", "v")
    assert found is not None and found.job_id == "2"
    [(_, kwargs)] = client.calls
    assert kwargs["request"].parent == PARENT
    assert kwargs["request"].filter == 'labels.k="v"'
    client.listed = []
    assert adapter_with(client).find_by_label(REGION, "k", "v") is None


def test_label_filter_escapes_quotes() -> None:
    assert label_filter("k", 'a"b\\c') == 'labels.k="a\\"b\\\\c"'


def test_get_and_cancel_go_to_the_client_of_the_job_location() -> None:
    client = RecordingClient()
    adapter = adapter_with(client)
    name = f"{PARENT}/batchPredictionJobs/9"
    assert adapter.get(name).state == "JOB_STATE_RUNNING"
    adapter.cancel(name)
    assert client.calls == [("get", {"name": name}), ("cancel", {"name": name})]


def test_the_info_carries_the_output_directory_stats_and_error() -> None:
    job = BatchPredictionJob(
        name=f"{PARENT}/batchPredictionJobs/5",
        state=JobState.JOB_STATE_SUCCEEDED,
        completion_stats=CompletionStats(successful_count=3, failed_count=1, incomplete_count=0),
    )
    job.output_info.gcs_output_directory = "gs://b/out/prediction-model-x"
    info = batch_job_info(job)
    assert info.output_directory == "gs://b/out/prediction-model-x"
    assert (info.successful_count, info.failed_count, info.incomplete_count) == (3, 1, 0)
    assert info.error is None
    assert info.resource is not None and info.resource["state"] == "JOB_STATE_SUCCEEDED"
    failed = BatchPredictionJob(
        name=f"{PARENT}/batchPredictionJobs/6",
        state=JobState.JOB_STATE_FAILED,
        error=status_pb2.Status(code=3, message="bad input"),
    )
    assert batch_job_info(failed).error == "bad input"


def test_google_errors_map_through_the_one_table() -> None:
    client = RecordingClient()
    adapter = adapter_with(client)
    client.raises = gexc.NotFound("Publisher Model `publishers/google/models/x` is not found")
    with pytest.raises(ObjectNotFoundError, match="creating a batch prediction job"):
        adapter.create(REGION, body())
    client.raises = gexc.FailedPrecondition("the job already ended")
    with pytest.raises(RequestRejectedError):
        adapter.cancel(f"{PARENT}/batchPredictionJobs/1")
    client.raises = gexc.ServiceUnavailable("down")
    with pytest.raises(ServiceUnavailableError):
        adapter.find_by_label(REGION, "k", "v")


def test_the_adapter_needs_a_project_and_uses_rest_against_the_endpoint() -> None:
    with pytest.raises(ConfigurationError, match="GOOGLE_CLOUD_PROJECT"):
        VertexBatchPredictionsAdapter("")
    kwargs = client_kwargs("", REGION)
    assert kwargs["transport"] == "rest"
    assert kwargs["client_options"] == {"api_endpoint": f"{REGION}-aiplatform.googleapis.com"}
    client = VertexBatchPredictionsAdapter("p", api_endpoint="http://127.0.0.1:1")._client(REGION)
    assert type(client).__name__ == "JobServiceClient"
