"""The request side of the emulated ``batchPredictionJobs`` (a Gemini teacher over a JSONL file):
the models it knows, and the validation of a ``batchPredictionJobs.create`` body.

The body is a ``google.cloud.aiplatform.v1.BatchPredictionJob`` (fields by their JSON or proto
names, as the REST API accepts both), as Google documents it for Gemini ("Batch inference from
Cloud Storage", cloud.google.com/vertex-ai/generative-ai/docs/multimodal/batch-prediction-from-
cloud-storage; see :mod:`distillery.facts`)::

    {"displayName": "label-news",
     "model": "publishers/google/models/gemini-2.5-pro",   # or projects/P/locations/L/models/M
     "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://b/in.jsonl"]}},
     "outputConfig": {"predictionsFormat": "jsonl",
                      "gcsDestination": {"outputUriPrefix": "gs://b/out"}},
     "labels": {"distillery-job-id": "..."},
     "encryptionSpec": {"kmsKeyName": "..."}, "serviceAccount": "..."}

``displayName``, ``model``, the Cloud Storage source and destination are required; a field the
message does not define is refused with the REST API's "Unknown name" answer; output-only fields
a client echoes back (``name``, ``state``, ``createTime``...) are ignored, as the service ignores
them. The emulator reads Cloud Storage JSONL only: a BigQuery source or destination, and the
fields of custom-model batch jobs (``dedicatedResources``, ``instanceConfig``...), are refused as
UNIMPLEMENTED rather than silently ignored.

A ``model`` the emulator does not know is refused as the service refuses it: NOT_FOUND, "Publisher
Model ... is not found" for a publisher model outside :data:`BATCH_PUBLISHER_MODELS` (the Gemini
teachers and tunable models of :mod:`distillery.facts`), "Model ... is not found" for a Model
Registry name that is not registered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from distillery._text import describe_json_value
from distillery.facts import GEMINI_BATCH_FORMAT, GEMINI_TEACHER_MODELS, GEMINI_TUNING_MODELS
from distillery.local.emulator._registry import split_model_name
from distillery.local.emulator._status import ApiError
from distillery.local.emulator._tuning import (
    TUNING_STATES,
    _fields,
    _invalid,
    _string,
    check_labels,
)

#: Batch prediction jobs have the same ``JobState`` enum as tuning jobs.
BATCH_STATES = TUNING_STATES
PENDING = BATCH_STATES.pending
RUNNING = BATCH_STATES.running
SUCCEEDED = BATCH_STATES.succeeded
FAILED = BATCH_STATES.failed
CANCELLING = BATCH_STATES.cancelling
CANCELLED = BATCH_STATES.cancelled
TERMINAL_STATES = BATCH_STATES.terminal
ALL_STATES = BATCH_STATES.every

PUBLISHER_PREFIX = "publishers/google/models/"
#: The Gemini publisher models the emulator answers batch jobs for (by model id): every teacher
#: of :data:`distillery.facts.GEMINI_TEACHER_MODELS` and every tunable base model.
BATCH_PUBLISHER_MODELS: frozenset[str] = frozenset(GEMINI_TEACHER_MODELS) | frozenset(
    GEMINI_TUNING_MODELS
)
_LOCATION_PUBLISHER = re.compile(r"projects/[^/]+/locations/[^/]+/(publishers/google/models/.+)")

_JOB_FIELDS = {
    "displayName": "display_name",
    "model": "model",
    "inputConfig": "input_config",
    "outputConfig": "output_config",
    "labels": "labels",
    "encryptionSpec": "encryption_spec",
    "serviceAccount": "service_account",
}
#: Fields of custom-model batch jobs that the local Gemini teacher has no use for.
_NOT_EMULATED = {
    "modelParameters": "model_parameters",
    "modelVersionId": "model_version_id",
    "unmanagedContainerModel": "unmanaged_container_model",
    "instanceConfig": "instance_config",
    "dedicatedResources": "dedicated_resources",
    "manualBatchTuningParameters": "manual_batch_tuning_parameters",
    "generateExplanation": "generate_explanation",
    "explanationSpec": "explanation_spec",
    "disableContainerLogging": "disable_container_logging",
}
#: Output-only fields a client may echo back; the service ignores them.
_OUTPUT_ONLY = {
    "name": "name",
    "state": "state",
    "error": "error",
    "outputInfo": "output_info",
    "partialFailures": "partial_failures",
    "resourcesConsumed": "resources_consumed",
    "completionStats": "completion_stats",
    "createTime": "create_time",
    "startTime": "start_time",
    "endTime": "end_time",
    "updateTime": "update_time",
    "satisfiesPzs": "satisfies_pzs",
    "satisfiesPzi": "satisfies_pzi",
}
_INPUT_FIELDS = {
    "instancesFormat": "instances_format",
    "gcsSource": "gcs_source",
    "bigquerySource": "bigquery_source",
    "vertexMultimodalDatasetSource": "vertex_multimodal_dataset_source",
}
_OUTPUT_FIELDS = {
    "predictionsFormat": "predictions_format",
    "gcsDestination": "gcs_destination",
    "bigqueryDestination": "bigquery_destination",
    "vertexMultimodalDatasetDestination": "vertex_multimodal_dataset_destination",
}
_WHERE = "batch_prediction_job"


@dataclass(frozen=True)
class BatchRequest:
    """A checked ``batchPredictionJobs.create`` body."""

    display_name: str
    #: As the request named it (``publishers/google/models/ID`` or a Model Registry name).
    model: str
    input_uris: tuple[str, ...]
    output_uri_prefix: str
    labels: Mapping[str, str] = field(default_factory=dict)
    kms_key_name: str = ""
    service_account: str = ""

    @property
    def publisher_model_id(self) -> str | None:
        """The Gemini model id of a publisher model (``gemini-2.5-pro``); None for a tuned one."""
        return (
            self.model[len(PUBLISHER_PREFIX) :] if self.model.startswith(PUBLISHER_PREFIX) else None
        )

    def echo(self) -> dict[str, Any]:
        """The request's fields as the REST ``BatchPredictionJob`` answers them."""
        resource: dict[str, Any] = {
            "displayName": self.display_name,
            "model": self.model,
            "inputConfig": {
                "instancesFormat": GEMINI_BATCH_FORMAT,
                "gcsSource": {"uris": list(self.input_uris)},
            },
            "outputConfig": {
                "predictionsFormat": GEMINI_BATCH_FORMAT,
                "gcsDestination": {"outputUriPrefix": self.output_uri_prefix},
            },
        }
        if self.labels:
            resource["labels"] = dict(self.labels)
        if self.kms_key_name:
            resource["encryptionSpec"] = {"kmsKeyName": self.kms_key_name}
        if self.service_account:
            resource["serviceAccount"] = self.service_account
        return resource


def _gcs(value: Any, where: str, name: str, *, folder: bool) -> str:
    if value is None or value == "":
        raise _invalid(where, f"{name} is required.")
    if not isinstance(value, str):
        raise _invalid(where, f"{name} must be a string, got {describe_json_value(value)}.")
    bucket, _, name = value.removeprefix("gs://").partition("/")
    if (
        not value.startswith("gs://")
        or not bucket
        or (not folder and (not name or name.endswith("/")))
    ):
        kind = (
            "a Cloud Storage prefix (gs://BUCKET[/PATH])"
            if folder
            else "a Cloud Storage URI of a JSONL file (gs://BUCKET/OBJECT)"
        )
        raise _invalid(where, f"{where} must be {kind}, got {value!r}.")
    return value


def _format(values: Mapping[str, Any], key: str, where: str, required_source: str) -> None:
    fmt = _string(values, key, where)
    if not fmt:
        raise _invalid(f"{where}.{key}", f"{key} is required.")
    if fmt != GEMINI_BATCH_FORMAT:
        raise ApiError(
            "UNIMPLEMENTED",
            f"The local emulator reads and writes {GEMINI_BATCH_FORMAT!r} in Cloud Storage only "
            f"({required_source}); {key} {fmt!r} is not emulated.",
        )


def _model(body: Mapping[str, Any], location: str, registered: Callable[[str], bool]) -> str:
    model = _string(body, "model", _WHERE)
    if not model:
        raise _invalid(f"{_WHERE}.model", "model is required.")
    if match := _LOCATION_PUBLISHER.fullmatch(model):
        model = match[1]
    if model.startswith(PUBLISHER_PREFIX):
        model_id = model[len(PUBLISHER_PREFIX) :]
        if model_id not in BATCH_PUBLISHER_MODELS:
            known = ", ".join(PUBLISHER_PREFIX + m for m in sorted(BATCH_PUBLISHER_MODELS))
            raise ApiError(
                "NOT_FOUND",
                f"Publisher Model `projects/-/locations/{location}/{model}` is not found; the "
                f"local emulator answers batch jobs for {known}, and the models of its Model "
                "Registry.",
            )
        return model
    if split_model_name(model) is None:
        raise _invalid(
            f"{_WHERE}.model",
            f"model must be publishers/google/models/MODEL or projects/P/locations/L/models/M, "
            f"got {model!r}.",
        )
    if not registered(model):
        raise ApiError("NOT_FOUND", f"Model {model} is not found.")
    return model


def validate_batch_job(
    location: str, body: Mapping[str, Any], registered: Callable[[str], bool] = lambda _: False
) -> BatchRequest:
    """The checked request of a ``batchPredictionJobs.create`` ``body`` (see the module docs);
    ``registered`` says whether a Model Registry name exists.

    Raises:
        ApiError: INVALID_ARGUMENT naming the field that is wrong, UNIMPLEMENTED for what the
            emulator does not emulate, NOT_FOUND for a model it does not know.
    """
    values = _fields(body, {**_JOB_FIELDS, **_NOT_EMULATED}, _WHERE, _OUTPUT_ONLY)
    for name in _NOT_EMULATED:
        if values.get(name) not in (None, "", {}, [], False):
            raise ApiError(
                "UNIMPLEMENTED",
                f"The local emulator runs Gemini batch jobs only; {name} is not emulated.",
            )
    display_name = _string(values, "displayName", _WHERE)
    if not display_name:
        raise _invalid(f"{_WHERE}.display_name", "displayName is required.")
    model = _model(values, location, registered)
    where_in = f"{_WHERE}.input_config"
    inputs = _fields(values.get("inputConfig") or {}, _INPUT_FIELDS, where_in)
    _format(inputs, "instancesFormat", where_in, "inputConfig.gcsSource")
    if inputs.get("bigquerySource") or inputs.get("vertexMultimodalDatasetSource"):
        raise ApiError("UNIMPLEMENTED", "The local emulator reads Cloud Storage sources only.")
    source = _fields(inputs.get("gcsSource") or {}, {"uris": "uris"}, f"{where_in}.gcs_source")
    uris = source.get("uris")
    if not isinstance(uris, list) or not uris:
        raise _invalid(f"{where_in}.gcs_source.uris", "gcsSource.uris is required.")
    input_uris = tuple(
        _gcs(uri, f"{where_in}.gcs_source.uris[{i}]", "gcsSource.uris", folder=False)
        for i, uri in enumerate(uris)
    )
    where_out = f"{_WHERE}.output_config"
    outputs = _fields(values.get("outputConfig") or {}, _OUTPUT_FIELDS, where_out)
    _format(outputs, "predictionsFormat", where_out, "outputConfig.gcsDestination")
    if outputs.get("bigqueryDestination") or outputs.get("vertexMultimodalDatasetDestination"):
        raise ApiError("UNIMPLEMENTED", "The local emulator writes Cloud Storage outputs only.")
    destination = _fields(
        outputs.get("gcsDestination") or {},
        {"outputUriPrefix": "output_uri_prefix"},
        f"{where_out}.gcs_destination",
    )
    prefix = _gcs(
        destination.get("outputUriPrefix"),
        f"{where_out}.gcs_destination.output_uri_prefix",
        "gcsDestination.outputUriPrefix",
        folder=True,
    )
    encryption = _fields(
        values.get("encryptionSpec") or {},
        {"kmsKeyName": "kms_key_name"},
        f"{_WHERE}.encryption_spec",
    )
    return BatchRequest(
        display_name=display_name,
        model=model,
        input_uris=input_uris,
        output_uri_prefix=prefix.rstrip("/"),
        labels=check_labels(values.get("labels"), f"{_WHERE}.labels"),
        kms_key_name=_string(encryption, "kmsKeyName", f"{_WHERE}.encryption_spec"),
        service_account=_string(values, "serviceAccount", _WHERE),
    )
