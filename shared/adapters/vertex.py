"""Vertex AI pipeline jobs adapter: the GAPIC ``PipelineServiceClient`` over REST.

Only ``google.cloud.aiplatform_v1``'s pipeline service is imported, lazily, on first use: the
full ``google.cloud.aiplatform`` SDK costs seconds of cold start. The endpoint comes from
configuration only: ``{location}-aiplatform.googleapis.com`` in production, the local emulator's
``http://`` URL locally (an insecure endpoint can carry no real credentials, so it is called with
anonymous ones, as the official clients do for their emulators).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from distillery.adapters._errors import translate_google_errors
from distillery.errors import (
    AlreadyExistsError,
    ConfigurationError,
    QuotaExceededError,
    RequestRejectedError,
)
from distillery.ports import PipelineJobInfo, VertexPipelines


def _info(job: Any) -> PipelineJobInfo:
    from google.cloud.aiplatform_v1 import PipelineJob

    error = job.error.message if job.error and job.error.message else None
    return PipelineJobInfo(
        name=job.name,
        state=job.state.name,
        error=error,
        resource=json.loads(PipelineJob.to_json(job)),
    )


class VertexPipelineAdapter(VertexPipelines):
    """Pipeline jobs through the official client, one client per location."""

    def __init__(self, project: str, *, api_endpoint: str = "") -> None:
        if not project:
            raise ConfigurationError("Vertex AI pipeline jobs need GOOGLE_CLOUD_PROJECT")
        self._project = project
        self._api_endpoint = api_endpoint
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _client(self, location: str) -> Any:
        with self._lock:
            if location not in self._clients:
                from google.cloud.aiplatform_v1.services.pipeline_service import (
                    PipelineServiceClient,
                )

                endpoint = self._api_endpoint or f"{location}-aiplatform.googleapis.com"
                kwargs: dict[str, Any] = {
                    "transport": "rest",
                    "client_options": {"api_endpoint": endpoint},
                }
                if endpoint.startswith("http://"):
                    from google.auth.credentials import AnonymousCredentials

                    kwargs["credentials"] = AnonymousCredentials()  # type: ignore[no-untyped-call]
                self._clients[location] = PipelineServiceClient(**kwargs)
            return self._clients[location]

    def create(self, location: str, job_id: str, body: Mapping[str, Any]) -> PipelineJobInfo:
        from google.api_core import exceptions as gexc
        from google.cloud.aiplatform_v1 import PipelineJob

        parent = f"projects/{self._project}/locations/{location}"
        try:
            job = PipelineJob.from_json(json.dumps(body))
        except Exception as exc:
            raise RequestRejectedError(f"the pipeline job body does not parse: {exc}") from exc
        with translate_google_errors(f"creating pipeline job {parent}/pipelineJobs/{job_id}"):
            try:
                created = self._client(location).create_pipeline_job(
                    parent=parent, pipeline_job=job, pipeline_job_id=job_id
                )
            except gexc.Aborted:
                raise  # A transient conflict, not an existing job: translated as contention.
            except gexc.Conflict as exc:
                raise AlreadyExistsError(f"pipeline job {job_id} already exists") from exc
            except gexc.ResourceExhausted as exc:
                raise QuotaExceededError(f"Vertex AI is out of quota: {exc.message}") from exc
            except gexc.BadRequest as exc:  # INVALID_ARGUMENT and FAILED_PRECONDITION
                raise RequestRejectedError(f"Vertex AI refused the job: {exc.message}") from exc
        return _info(created)

    def get(self, name: str) -> PipelineJobInfo:
        location = name.split("/")[3] if name.count("/") >= 5 else ""
        with translate_google_errors(f"reading pipeline job {name}"):
            job = self._client(location).get_pipeline_job(name=name)
        return _info(job)
