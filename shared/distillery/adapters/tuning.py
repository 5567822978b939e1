"""Vertex AI tuning jobs (Gemini supervised tuning) through the GAPIC ``GenAiTuningServiceClient``
and ``PredictionServiceClient.generate_content``, over REST.

Why the GAPIC client and not google-genai (both are Google's; checked in google-genai 2.34.0 and
google-cloud-aiplatform 2.7.0):

- ``client.tunings.tune`` builds the request from ``CreateTuningJobConfig``, which has ``labels``
  and ``encryption_spec`` but no ``service_account``: the product's tuning body names the service
  account the job runs as, and google-genai could not send it. ``create_tuning_job`` takes the
  whole ``TuningJob`` message, so the body the product plans is the body that is sent, field for
  field (``TuningJob.from_json`` refuses a field the message does not define).
- ``list_tuning_jobs`` takes ``filter`` (``labels.KEY="VALUE"``), as google-genai's
  ``ListTuningJobsConfig`` does: both could find a job by label.
- It raises ``google.api_core.exceptions``, like the other Vertex AI adapters, so the one error
  table of :mod:`distillery.adapters._errors` maps its errors; google-genai raises its own.
- google-genai 2.34.0 marks ``tunings.tune`` experimental (it warns "may change in future
  versions"), and it refreshes its credentials before each call, so it cannot use the anonymous
  credentials the local emulator is called with. (It does read the emulator's tuning jobs and
  generateContent answers: the emulator's tests prove both clients.)
- It is already a dependency of the functions' archive (the pipeline and endpoint adapters);
  google-genai would add a second HTTP stack to every cold start.

As in :mod:`distillery.adapters.vertex`, the clients are imported lazily, one per location, and
the endpoint comes from configuration only (the local emulator's ``http://`` URL locally, with
anonymous credentials).

Two API versions: a supervised tuning job goes through ``aiplatform_v1``; a distillation job
through ``aiplatform_v1beta1`` (its ``GenAiTuningServiceClient``, REST too), because
``distillationSpec`` exists in the v1beta1 ``TuningJob`` only (checked in 2.7.0's types). Such a
job is also read, listed and cancelled through v1beta1, so what is read back is the message it
was created as; the caller passes the version its job record holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from distillery.adapters._clients import LocationClients
from distillery.adapters._errors import translate_google_errors
from distillery.core.errors import ConfigurationError, RequestRejectedError
from distillery.core.ports import TuningJobInfo, TuningJobs, location_of

#: The temperature of every ``generateContent`` request: greedy decoding.
GREEDY_TEMPERATURE = 0.0

#: The API versions a tuning job may be created through (the ``aiplatform_<version>`` packages).
API_VERSIONS: tuple[str, ...] = ("v1", "v1beta1")


def _types(api_version: str) -> Any:
    """The ``google.cloud.aiplatform_<api_version>`` package (its TuningJob, list request).

    Raises:
        ConfigurationError: ``api_version`` is not one of :data:`API_VERSIONS`.
    """
    if api_version == "v1":
        import google.cloud.aiplatform_v1 as v1

        return v1
    if api_version == "v1beta1":
        import google.cloud.aiplatform_v1beta1 as v1beta1

        return v1beta1
    raise ConfigurationError(
        f"tuning jobs have no API version {api_version!r}; expected one of "
        f"{', '.join(API_VERSIONS)}"
    )


def _info(job: Any, api_version: str = "v1") -> TuningJobInfo:
    tuning_job = _types(api_version).TuningJob
    resource = json.loads(tuning_job.to_json(job, use_integers_for_enums=False))
    return TuningJobInfo(
        name=job.name,
        state=job.state.name,
        error=job.error.message if job.error and job.error.message else None,
        tuned_model=job.tuned_model.model or None,
        endpoint=job.tuned_model.endpoint or None,
        resource=resource,
    )


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class VertexTuningJobsAdapter(TuningJobs):
    """Tuning jobs and ``generateContent`` through the official clients, one per location."""

    def __init__(self, project: str, *, api_endpoint: str = "") -> None:
        if not project:
            raise ConfigurationError("Vertex AI tuning jobs need GOOGLE_CLOUD_PROJECT")
        self._project = project
        self._tuning_clients = {
            version: LocationClients("tuning", api_endpoint, api_version=version)
            for version in API_VERSIONS
        }
        self._prediction_clients = LocationClients("prediction", api_endpoint)

    def _tuning(self, location: str, api_version: str = "v1") -> Any:
        _types(api_version)  # An unknown version is refused before a client is looked up.
        return self._tuning_clients[api_version].client(location)

    def _prediction(self, location: str) -> Any:
        return self._prediction_clients.client(location)

    def create(
        self, location: str, body: Mapping[str, Any], *, api_version: str = "v1"
    ) -> TuningJobInfo:
        tuning_job = _types(api_version).TuningJob
        parent = f"projects/{self._project}/locations/{location}"
        try:
            # from_json refuses a field the version's message lacks (distillationSpec in v1).
            job = tuning_job.from_json(json.dumps(body))
        except Exception as exc:
            raise RequestRejectedError(
                f"the tuning job body does not parse as a {api_version} TuningJob: {exc}"
            ) from exc
        with translate_google_errors(f"creating a tuning job in {parent}"):
            created = self._tuning(location, api_version).create_tuning_job(
                parent=parent, tuning_job=job
            )
        return _info(created, api_version)

    def get(self, name: str, *, api_version: str = "v1") -> TuningJobInfo:
        with translate_google_errors(f"reading tuning job {name}"):
            job = self._tuning(location_of(name), api_version).get_tuning_job(name=name)
        return _info(job, api_version)

    def find_by_label(
        self, location: str, key: str, value: str, *, api_version: str = "v1"
    ) -> TuningJobInfo | None:
        list_request = _types(api_version).ListTuningJobsRequest
        parent = f"projects/{self._project}/locations/{location}"
        request = list_request(parent=parent, filter=f"labels.{key}={_quote(value)}")
        with translate_google_errors(f"listing the tuning jobs of {parent} labelled {key}"):
            found = [
                job
                for job in self._tuning(location, api_version).list_tuning_jobs(request=request)
                if job.labels.get(key) == value  # Never trust a filter to be exact.
            ]
        if not found:
            return None
        newest = max(
            found, key=lambda j: (j.create_time.timestamp() if j.create_time else 0, j.name)
        )
        return _info(newest, api_version)

    def cancel(self, name: str, *, api_version: str = "v1") -> None:
        with translate_google_errors(f"cancelling tuning job {name}"):
            self._tuning(location_of(name), api_version).cancel_tuning_job(name=name)

    def generate(self, endpoint: str, prompt: str) -> str:
        """The tuned model's answer to one user turn, decoded greedily.

        ``generationConfig.temperature`` is sent as 0 (an ``optional`` field: an explicit 0 is
        sent, not dropped as a default) so that the same model answers the same prompt the same
        way: the promoter compares two models' answers on one golden set.

        Raises:
            ObjectNotFoundError: no such endpoint.
            RequestRejectedError: the request is refused, or the answer has no candidate.
            ServiceUnavailableError: the service did not answer (transient).
        """
        from google.cloud.aiplatform_v1 import (
            Content,
            GenerateContentRequest,
            GenerationConfig,
            Part,
        )

        request = GenerateContentRequest(
            model=endpoint,
            contents=[Content(role="user", parts=[Part(text=prompt)])],
            generation_config=GenerationConfig(temperature=GREEDY_TEMPERATURE),
        )
        with translate_google_errors(f"asking {endpoint} to generate content"):
            response = self._prediction(location_of(endpoint)).generate_content(request=request)
        if not response.candidates:
            feedback = response.prompt_feedback
            why = feedback.block_reason_message or feedback.block_reason.name
            raise RequestRejectedError(f"{endpoint} answered no candidate (prompt feedback: {why})")
        return "".join(part.text for part in response.candidates[0].content.parts)
