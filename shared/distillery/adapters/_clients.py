"""The Vertex AI GAPIC clients of an API endpoint: made lazily, one per service and location.

The clients are imported on first use (a cold start that never deploys never imports the
endpoint client) and talk REST; the endpoint comes from configuration only (the local
emulator's ``http://`` URL locally, with anonymous credentials).
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

#: Service → (module under ``google.cloud.aiplatform_v1.services``, client class).
_SERVICES = {
    "pipeline": ("pipeline_service", "PipelineServiceClient"),
    "endpoint": ("endpoint_service", "EndpointServiceClient"),
    "model": ("model_service", "ModelServiceClient"),
    "prediction": ("prediction_service", "PredictionServiceClient"),
    "tuning": ("gen_ai_tuning_service", "GenAiTuningServiceClient"),
    "job": ("job_service", "JobServiceClient"),
}


def client_kwargs(api_endpoint: str, location: str) -> dict[str, Any]:
    """REST client options for ``location`` (anonymous credentials for an ``http://`` emulator)."""
    endpoint = api_endpoint or f"{location}-aiplatform.googleapis.com"
    kwargs: dict[str, Any] = {"transport": "rest", "client_options": {"api_endpoint": endpoint}}
    if endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        kwargs["credentials"] = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return kwargs


class LocationClients(dict[str, Any]):
    """One service's clients of ``api_endpoint`` ("" for Google's regional ones), by location.

    A plain mapping of location → client besides, so a test can hand in its own client.
    """

    def __init__(self, service: str, api_endpoint: str, *, api_version: str = "v1") -> None:
        """Clients of ``service``, a key of the table above, of API ``api_version`` (the
        ``google.cloud.aiplatform_<version>`` package: ``v1``, or ``v1beta1``).

        Raises:
            KeyError: ``service`` is not one this module knows.
        """
        super().__init__()
        self._module_name, self._class_name = _SERVICES[service]
        self._api_endpoint = api_endpoint
        self._api_version = api_version
        self._lock = threading.Lock()

    def client(self, location: str) -> Any:
        """The client for ``location``, made (and imported) on first use."""
        with self._lock:
            if location not in self:
                module = importlib.import_module(
                    f"google.cloud.aiplatform_{self._api_version}.services.{self._module_name}"
                )
                client_class = getattr(module, self._class_name)
                self[location] = client_class(**client_kwargs(self._api_endpoint, location))
            return self[location]
