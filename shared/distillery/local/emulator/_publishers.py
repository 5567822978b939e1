"""The emulated Model Garden ``publishers.models.get`` for the text models jobs distil with.

The Vertex AI SDK loads a tuned text model through its base model's publisher model:
``TextGenerationModel.get_tuned_model(name)`` reads the tuned model's
``google-vertex-llm-tuning-base-model-id`` label (``text-bison-002``), asks for
``publishers/google/models/text-bison@002`` and picks its model class by the answer's
``predictSchemata.instanceSchemaUri`` (the text generation schema for ``TextGenerationModel``).
The REST ``PublisherModel`` answered::

    {"name": "publishers/google/models/text-bison@002", "versionId": "002",
     "openSourceCategory": "PROPRIETARY", "launchStage": "GA",
     "publisherModelTemplate":
         "projects/{user-project}/locations/{location}/publishers/google/models/text-bison@002",
     "predictSchemata": {"instanceSchemaUri": ".../instance/text_generation_1.0.0.yaml",
                         "parametersSchemaUri": ".../params/text_generation_1.0.0.yaml",
                         "predictionSchemaUri": ".../prediction/text_generation_1.0.0.yaml"}}

The emulator knows the models its jobs use: the default teacher and student of its template
catalog, and every student a registered model was distilled into.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from distillery.local.emulator._status import ApiError

PUBLISHER = "google"
#: The schemata of Vertex AI's text generation models (the ``text-bison`` family).
_SCHEMA_ROOT = "gs://google-cloud-aiplatform/schema/predict"
TEXT_GENERATION_SCHEMATA = {
    "instanceSchemaUri": f"{_SCHEMA_ROOT}/instance/text_generation_1.0.0.yaml",
    "parametersSchemaUri": f"{_SCHEMA_ROOT}/params/text_generation_1.0.0.yaml",
    "predictionSchemaUri": f"{_SCHEMA_ROOT}/prediction/text_generation_1.0.0.yaml",
}


def short_model_id(reference: str) -> str:
    """``publishers/google/models/text-bison@002`` (or ``text-bison@002``) → ``text-bison@002``."""
    return reference.rstrip("/").rsplit("/", 1)[-1]


class PublisherModels:
    """``publishers/google/models/{id}`` for the text models the emulator's jobs use."""

    def __init__(
        self, defaults: Iterable[str], students: Callable[[], Iterable[str]] = tuple
    ) -> None:
        """``defaults``: model references always known; ``students``: those of registered
        models (asked at each request, as models are registered while the emulator runs)."""
        self._defaults = frozenset(short_model_id(d) for d in defaults if d)
        self._students = students

    def known(self) -> frozenset[str]:
        """The short ids (``text-bison@002``) this emulator answers for."""
        return self._defaults | {short_model_id(s) for s in self._students() if s}

    def get(self, publisher: str, model_id: str) -> dict[str, Any]:
        """``publishers.models.get``.

        Raises:
            ApiError: NOT_FOUND, a publisher other than ``google`` or a model no job uses.
        """
        name = f"publishers/{publisher}/models/{model_id}"
        known = self.known()
        if publisher != PUBLISHER or model_id not in known:
            raise ApiError(
                "NOT_FOUND",
                f"Publisher Model `{name}` is not found; the emulator knows "
                + (
                    ", ".join(f"publishers/{PUBLISHER}/models/{m}" for m in sorted(known)) or "none"
                ),
            )
        _, _, version = model_id.partition("@")
        resource: dict[str, Any] = {
            "name": name,
            "openSourceCategory": "PROPRIETARY",
            "launchStage": "GA",
            "publisherModelTemplate": (
                f"projects/{{user-project}}/locations/{{location}}/publishers/{publisher}"
                f"/models/{model_id}"
            ),
            "predictSchemata": dict(TEXT_GENERATION_SCHEMATA),
        }
        if version:
            resource["versionId"] = version
        return resource
