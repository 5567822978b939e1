"""Vertex AI batch prediction jobs (a Gemini teacher answering a JSONL file of requests) through
the GAPIC ``JobServiceClient``, over REST.

As in :mod:`distillery.adapters.tuning`: the whole REST ``BatchPredictionJob`` the product plans
is parsed into the message (``BatchPredictionJob.from_json`` refuses a field the message does
not define) and sent field for field, errors are ``google.api_core.exceptions`` mapped by the one
table of :mod:`distillery.adapters._errors`, the client is imported lazily, one per location,
and the endpoint comes from configuration only (the local Vertex AI API's ``http://`` URL
locally, with anonymous credentials).

The request, as Google documents it ("Batch inference from Cloud Storage", cloud.google.com/
vertex-ai/generative-ai/docs/multimodal/batch-prediction-from-cloud-storage, read 2026-12-02)::

    POST https://REGION-aiplatform.googleapis.com/v1/projects/P/locations/L/batchPredictionJobs
    {"displayName": "...", "model": "publishers/google/models/gemini-2.5-pro",
     "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://b/in.jsonl"]}},
     "outputConfig": {"predictionsFormat": "jsonl",
                      "gcsDestination": {"outputUriPrefix": "gs://b/out"}},
     "labels": {...}}

It answers the ``BatchPredictionJob`` itself (no long-running operation), with an id the service
chose: a caller that must not create twice labels the body and looks for the label first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from distillery.adapters._clients import LocationClients
from distillery.adapters._errors import translate_google_errors
from distillery.core.errors import ConfigurationError, RequestRejectedError
from distillery.core.ports import BatchPredictionJobInfo, BatchPredictions, location_of


def batch_job_message(body: Mapping[str, Any]) -> Any:
    """The ``BatchPredictionJob`` message of a REST ``body``.

    Raises:
        RequestRejectedError: the body does not parse as a BatchPredictionJob (an unknown field,
            a value of the wrong type).
    """
    from google.cloud.aiplatform_v1 import BatchPredictionJob

    try:
        return BatchPredictionJob.from_json(json.dumps(body))
    except Exception as exc:
        raise RequestRejectedError(f"the batch prediction job body does not parse: {exc}") from exc


def batch_job_info(job: Any) -> BatchPredictionJobInfo:
    """What the product reads of a ``BatchPredictionJob`` message."""
    from google.cloud.aiplatform_v1 import BatchPredictionJob

    resource = json.loads(BatchPredictionJob.to_json(job, use_integers_for_enums=False))
    # ``completionStats`` is absent until the service counted something: None, not zero.
    has_stats = "completionStats" in resource
    stats = job.completion_stats
    return BatchPredictionJobInfo(
        name=job.name,
        state=job.state.name,
        error=job.error.message if job.error and job.error.message else None,
        output_directory=job.output_info.gcs_output_directory or None,
        successful_count=int(stats.successful_count) if has_stats else None,
        failed_count=int(stats.failed_count) if has_stats else None,
        incomplete_count=int(stats.incomplete_count) if has_stats else None,
        resource=resource,
    )


def label_filter(key: str, value: str) -> str:
    """The list filter of the jobs labelled ``key=value`` (the value quoted, as AIP-160 wants)."""
    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"labels.{key}={quoted}"


class VertexBatchPredictionsAdapter(BatchPredictions):
    """Batch prediction jobs through the official ``JobServiceClient``, one per location."""

    def __init__(self, project: str, *, api_endpoint: str = "") -> None:
        """Jobs of ``project``, at ``api_endpoint`` ("" for Google's regional endpoints).

        Raises:
            ConfigurationError: ``project`` is empty.
        """
        if not project:
            raise ConfigurationError("Vertex AI batch prediction jobs need GOOGLE_CLOUD_PROJECT")
        self._project = project
        self._clients = LocationClients("job", api_endpoint)

    def _client(self, location: str) -> Any:
        return self._clients.client(location)

    def create(self, location: str, body: Mapping[str, Any]) -> BatchPredictionJobInfo:
        parent = f"projects/{self._project}/locations/{location}"
        job = batch_job_message(body)
        with translate_google_errors(f"creating a batch prediction job in {parent}"):
            created = self._client(location).create_batch_prediction_job(
                parent=parent, batch_prediction_job=job
            )
        return batch_job_info(created)

    def get(self, name: str) -> BatchPredictionJobInfo:
        with translate_google_errors(f"reading batch prediction job {name}"):
            job = self._client(location_of(name)).get_batch_prediction_job(name=name)
        return batch_job_info(job)

    def find_by_label(self, location: str, key: str, value: str) -> BatchPredictionJobInfo | None:
        from google.cloud.aiplatform_v1 import ListBatchPredictionJobsRequest

        parent = f"projects/{self._project}/locations/{location}"
        request = ListBatchPredictionJobsRequest(parent=parent, filter=label_filter(key, value))
        with translate_google_errors(f"listing the batch prediction jobs of {parent} by {key}"):
            found = [
                job
                for job in self._client(location).list_batch_prediction_jobs(request=request)
                if job.labels.get(key) == value  # Never trust a filter to be exact.
            ]
        if not found:
            return None
        newest = max(
            found, key=lambda j: (j.create_time.timestamp() if j.create_time else 0, j.name)
        )
        return batch_job_info(newest)

    def cancel(self, name: str) -> None:
        with translate_google_errors(f"cancelling batch prediction job {name}"):
            self._client(location_of(name)).cancel_batch_prediction_job(name=name)
