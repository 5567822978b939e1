"""The request side of the emulated ``tuningJobs`` (Gemini supervised tuning): states, the
tunable base models, and the validation of a ``tuningJobs.create`` body.

The body is a ``google.cloud.aiplatform.v1.TuningJob`` (fields by their JSON or proto names, as
the REST API accepts both; enums by name or number, 64-bit integers as numbers or strings, as
proto JSON allows)::

    {"baseModel": "gemini-2.5-flash",
     "supervisedTuningSpec": {"trainingDatasetUri": "gs://b/train.jsonl",
                              "validationDatasetUri": "gs://b/val.jsonl",
                              "hyperParameters": {"epochCount": "3",
                                                  "learningRateMultiplier": 1.0,
                                                  "adapterSize": "ADAPTER_SIZE_FOUR"},
                              "exportLastCheckpointOnly": false},
     "tunedModelDisplayName": "news-tuned", "description": "...",
     "labels": {"distillery-job-id": "..."},
     "encryptionSpec": {"kmsKeyName": "projects/P/locations/L/keyRings/R/cryptoKeys/K"},
     "serviceAccount": "sa@P.iam.gserviceaccount.com"}

Through ``v1beta1`` the body may instead hold a ``distillationSpec`` (Gemini distillation, early
access; google-cloud-aiplatform 2.7.0's ``aiplatform_v1beta1.types.DistillationSpec``)::

    {"baseModel": "gemini-2.5-flash",
     "distillationSpec": {"baseTeacherModel": "gemini-3.1-pro",
                          "trainingDatasetUri": "gs://b/prompts.jsonl",
                          "validationDatasetUri": "gs://b/val.jsonl",
                          "hyperParameters": {"epochCount": "3", ...}}, ...}

with ``tunedTeacherModelSource`` (a tuned model's resource name) in place of
``baseTeacherModel``, and the prompts in ``trainingDatasetUri`` (the 2.7.0 message's field) or
``promptDatasetUri`` (the newer references' name). The student is ``baseModel`` (the deprecated
``studentModel``, if sent, must name the same model); ``pipelineRootDirectory`` is deprecated and
ignored. As the service, the emulator runs distillation in
:data:`distillery.facts.GEMINI_DISTILLATION_REGION` only, with the early-access teachers and
students of :mod:`distillery.facts`; through ``v1`` a ``distillationSpec`` is an unknown field.

A field the message does not define is refused with the REST API's "Unknown name" answer;
output-only fields a client echoes back (``name``, ``state``, ``createTime``...) are ignored, as
the service ignores them. Everything the service would refuse at create time is refused here
with INVALID_ARGUMENT and the field that is wrong; what the service finds out only while the job
runs (an unreadable or malformed dataset) fails the job instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from distillery._text import describe_json_value
from distillery.facts import (
    GEMINI_DISTILLATION_REGION,
    GEMINI_DISTILLATION_STUDENTS,
    GEMINI_DISTILLATION_TEACHERS,
    GEMINI_TUNING_MODELS,
)
from distillery.local.emulator._model import JobStates
from distillery.local.emulator._status import ApiError, FieldViolation

TUNING_STATES = JobStates(
    "JOB_STATE",
    before=("QUEUED",),
    after=("PAUSED", "EXPIRED", "UPDATING", "PARTIALLY_SUCCEEDED"),
)
QUEUED = TUNING_STATES.named("QUEUED")
PENDING = TUNING_STATES.pending
RUNNING = TUNING_STATES.running
SUCCEEDED = TUNING_STATES.succeeded
FAILED = TUNING_STATES.failed
CANCELLING = TUNING_STATES.cancelling
CANCELLED = TUNING_STATES.cancelled
#: Every name of ``google.cloud.aiplatform.v1.JobState`` (for list filters).
ALL_STATES = TUNING_STATES.every
TERMINAL_STATES = TUNING_STATES.terminal

#: ``SupervisedHyperParameters.AdapterSize``: name → number (google-cloud-aiplatform 2.7.0).
ADAPTER_SIZES: dict[str, int] = {
    "ADAPTER_SIZE_UNSPECIFIED": 0,
    "ADAPTER_SIZE_ONE": 1,
    "ADAPTER_SIZE_TWO": 6,
    "ADAPTER_SIZE_FOUR": 2,
    "ADAPTER_SIZE_EIGHT": 3,
    "ADAPTER_SIZE_SIXTEEN": 4,
    "ADAPTER_SIZE_THIRTY_TWO": 5,
}
_ADAPTER_NAMES = {number: name for name, number in ADAPTER_SIZES.items()}


@dataclass(frozen=True)
class TunableModel:
    """A base model supervised tuning accepts, and the adapter sizes the docs allow for it."""

    model_id: str
    adapter_sizes: frozenset[str]


#: The base models the emulator tunes, with the adapter sizes the docs allow for each: the one
#: table of them, in :data:`distillery.facts.GEMINI_TUNING_MODELS` (the documented facts, dated
#: and sourced there); a model missing there is refused as the service refuses an untunable one.
TUNABLE_MODELS: dict[str, TunableModel] = {
    model_id: TunableModel(model_id, frozenset(model.adapter_sizes))
    for model_id, model in GEMINI_TUNING_MODELS.items()
}
_PUBLISHER_PREFIX = re.compile(r"(?:projects/[^/]+/locations/[^/]+/)?publishers/google/models/")

#: Epochs when ``epochCount`` is unset. The service picks a number from the dataset; the
#: emulator, which trains a small model on the CPU, uses this fixed one.
DEFAULT_EPOCHS = 3
MAX_EPOCHS = 100
MAX_DISPLAY_NAME_CHARS = 128
MAX_LABELS = 64
MAX_LABEL_CHARS = 63

_KMS_KEY = re.compile(
    r"projects/[^/]+/locations/(?P<location>[^/]+)/keyRings/[^/]+/cryptoKeys/[^/]+"
)
_SERVICE_ACCOUNT = re.compile(r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}")

#: TuningJob fields a client may send (JSON name → proto name).
_INPUT_FIELDS = {
    "baseModel": "base_model",
    "preTunedModel": "pre_tuned_model",
    "supervisedTuningSpec": "supervised_tuning_spec",
    "tunedModelDisplayName": "tuned_model_display_name",
    "description": "description",
    "labels": "labels",
    "encryptionSpec": "encryption_spec",
    "serviceAccount": "service_account",
}
#: The API versions the tuning routes answer; v1beta1's TuningJob adds ``distillationSpec``.
API_VERSIONS = ("v1", "v1beta1")
_BETA_INPUT_FIELDS = {**_INPUT_FIELDS, "distillationSpec": "distillation_spec"}
#: Output-only TuningJob fields: accepted and ignored.
_OUTPUT_FIELDS = {
    "name": "name",
    "state": "state",
    "createTime": "create_time",
    "startTime": "start_time",
    "endTime": "end_time",
    "updateTime": "update_time",
    "error": "error",
    "experiment": "experiment",
    "tunedModel": "tuned_model",
    "tuningDataStats": "tuning_data_stats",
    "evaluateDatasetRuns": "evaluate_dataset_runs",
}
_SPEC_FIELDS = {
    "trainingDatasetUri": "training_dataset_uri",
    "validationDatasetUri": "validation_dataset_uri",
    "hyperParameters": "hyper_parameters",
    "exportLastCheckpointOnly": "export_last_checkpoint_only",
    "evaluationConfig": "evaluation_config",
}
_DISTILLATION_FIELDS = {
    "baseTeacherModel": "base_teacher_model",
    "tunedTeacherModelSource": "tuned_teacher_model_source",
    "trainingDatasetUri": "training_dataset_uri",
    "promptDatasetUri": "prompt_dataset_uri",
    "validationDatasetUri": "validation_dataset_uri",
    "hyperParameters": "hyper_parameters",
    "studentModel": "student_model",
    "pipelineRootDirectory": "pipeline_root_directory",
}
_TUNED_MODEL = re.compile(r"projects/[^/]+/locations/[^/]+/models/[^/@]+(?:@[^/]+)?")
_HYPER_FIELDS = {
    "epochCount": "epoch_count",
    "learningRateMultiplier": "learning_rate_multiplier",
    "adapterSize": "adapter_size",
}
_ENCRYPTION_FIELDS = {"kmsKeyName": "kms_key_name"}


@dataclass(frozen=True)
class TuningRequest:
    """An accepted ``tuningJobs.create`` body, normalised (defaults filled in)."""

    base_model: str
    training_dataset_uri: str
    tuned_model_display_name: str
    epoch_count: int
    learning_rate_multiplier: float
    validation_dataset_uri: str = ""
    adapter_size: str = ""
    export_last_checkpoint_only: bool = False
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    kms_key_name: str = ""
    service_account: str = ""
    #: ``supervised``, or ``distillation`` (a v1beta1 ``distillationSpec``).
    tuning_mode: str = "supervised"
    #: The distillation teacher: ``baseTeacherModel``, or ``tunedTeacherModelSource`` (a model
    #: resource name); exactly one is set in distillation mode.
    base_teacher_model: str = ""
    tuned_teacher_model_source: str = ""

    @property
    def teacher(self) -> str:
        """The teacher reference the local teacher is resolved from ("" when supervised)."""
        return self.base_teacher_model or self.tuned_teacher_model_source

    def echo(self) -> dict[str, Any]:
        """The request fields as the TuningJob resource shows them."""
        hyper: dict[str, Any] = {
            "epochCount": str(self.epoch_count),
            "learningRateMultiplier": self.learning_rate_multiplier,
        }
        if self.adapter_size:
            hyper["adapterSize"] = self.adapter_size
        spec: dict[str, Any] = {
            "trainingDatasetUri": self.training_dataset_uri,
            "hyperParameters": hyper,
        }
        if self.validation_dataset_uri:
            spec["validationDatasetUri"] = self.validation_dataset_uri
        if self.export_last_checkpoint_only:
            spec["exportLastCheckpointOnly"] = True
        spec_key = "supervisedTuningSpec"
        if self.tuning_mode == "distillation":
            spec_key = "distillationSpec"
            teacher = (
                {"baseTeacherModel": self.base_teacher_model}
                if self.base_teacher_model
                else {"tunedTeacherModelSource": self.tuned_teacher_model_source}
            )
            spec = {**teacher, **spec}
        resource: dict[str, Any] = {
            "baseModel": self.base_model,
            spec_key: spec,
            "tunedModelDisplayName": self.tuned_model_display_name,
        }
        if self.description:
            resource["description"] = self.description
        if self.kms_key_name:
            resource["encryptionSpec"] = {"kmsKeyName": self.kms_key_name}
        if self.service_account:
            resource["serviceAccount"] = self.service_account
        return resource


def _invalid(field_path: str, message: str) -> ApiError:
    return ApiError("INVALID_ARGUMENT", message, [FieldViolation(field_path, message)])


def _fields(
    data: Any, known: Mapping[str, str], where: str, ignored: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``data``'s fields by JSON name, refusing names the message does not define.

    Raises:
        ApiError: INVALID_ARGUMENT, not an object or an unknown field (the REST API's words).
    """
    if not isinstance(data, Mapping):
        raise _invalid(
            where,
            f"Invalid JSON payload received. Expected an object at '{where}', got "
            f"{describe_json_value(data)}.",
        )
    proto_names = {snake: camel for camel, snake in known.items()}
    skipped = dict(ignored or {})
    skipped_proto = set(skipped.values())
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in known:
            values[key] = value
        elif key in proto_names:
            values[proto_names[key]] = value
        elif key not in skipped and key not in skipped_proto:
            message = (
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': "
                "Cannot find field."
            )
            raise _invalid(where, message)
    return values


def _string(values: Mapping[str, Any], key: str, where: str) -> str:
    value = values.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _invalid(
            f"{where}.{key}",
            f"Invalid value at '{where}.{key}' (TYPE_STRING), {describe_json_value(value)}",
        )
    return value


def _gcs_uri(values: Mapping[str, Any], key: str, where: str, *, required: bool) -> str:
    uri = _string(values, key, where)
    if not uri:
        if required:
            raise _invalid(f"{where}.{key}", f"{key} is required.")
        return ""
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    if not uri.startswith("gs://") or not bucket or not name or name.endswith("/"):
        raise _invalid(
            f"{where}.{key}",
            f"{key} must be a Cloud Storage URI of a JSONL file (gs://BUCKET/OBJECT), got {uri!r}.",
        )
    return uri


_SUPERVISED_HYPER = "tuning_job.supervised_tuning_spec.hyper_parameters"


def _epochs(value: Any, hyper_where: str = _SUPERVISED_HYPER) -> int:
    where = f"{hyper_where}.epoch_count"
    if value is None:
        return DEFAULT_EPOCHS
    number: float | None = None
    if (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer()
    ):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        number = int(value)
    if number is None:
        raise _invalid(
            where, f"Invalid value at '{where}' (TYPE_INT64), {describe_json_value(value)}"
        )
    if not 1 <= number <= MAX_EPOCHS:
        raise _invalid(where, f"epoch_count must be between 1 and {MAX_EPOCHS}, got {number}.")
    return int(number)


def _learning_rate_multiplier(value: Any, hyper_where: str = _SUPERVISED_HYPER) -> float:
    where = f"{hyper_where}.learning_rate_multiplier"
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _invalid(
            where, f"Invalid value at '{where}' (TYPE_DOUBLE), {describe_json_value(value)}"
        )
    try:
        number = float(value)
    except ValueError:
        raise _invalid(
            where, f"Invalid value at '{where}' (TYPE_DOUBLE), {describe_json_value(value)}"
        ) from None
    if not math.isfinite(number) or number <= 0:
        raise _invalid(where, f"learning_rate_multiplier must be positive, got {value!r}.")
    return number


def _adapter_size(value: Any, model: TunableModel, hyper_where: str = _SUPERVISED_HYPER) -> str:
    where = f"{hyper_where}.adapter_size"
    if value is None:
        return ""
    name: str | None = None
    if isinstance(value, str) and value in ADAPTER_SIZES:
        name = value
    elif isinstance(value, int) and not isinstance(value, bool):
        name = _ADAPTER_NAMES.get(value)
    if name is None:
        raise _invalid(
            where,
            f"Invalid value at '{where}' (type.googleapis.com/google.cloud.aiplatform.v1."
            f"SupervisedHyperParameters.AdapterSize), {describe_json_value(value)}",
        )
    if name == "ADAPTER_SIZE_UNSPECIFIED":
        return ""
    if name not in model.adapter_sizes:
        allowed = ", ".join(sorted(model.adapter_sizes, key=lambda n: ADAPTER_SIZES[n]))
        raise _invalid(
            where,
            f"Adapter size {name} is not supported for base model {model.model_id}; "
            f"supported: {allowed}.",
        )
    return name


def _label_char_ok(char: str, *, first: bool) -> bool:
    # Lowercase letters (international ones too: Ll, and Lo letters that have no case).
    letter = char.islower() or (char.isalpha() and not char.isupper())
    return letter if first else (letter or char.isdigit() or char in "_-")


def check_labels(raw: Any, where: str = "tuning_job.labels") -> dict[str, str]:
    """Labels as Google's label rules allow them.

    At most 64 labels; a key is 1-63 characters, starts with a lowercase letter and holds only
    lowercase letters, digits, ``_`` and ``-``; a value is 0-63 of the same characters.

    Raises:
        ApiError: INVALID_ARGUMENT naming the label.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _invalid(where, f"labels must be a map of strings, got {describe_json_value(raw)}")
    if len(raw) > MAX_LABELS:
        raise _invalid(where, f"At most {MAX_LABELS} labels are allowed, got {len(raw)}.")
    labels: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise _invalid(
                f"{where}[{key}]",
                f"The value of label {key!r} must be a string, got {describe_json_value(value)}.",
            )
        key_ok = (
            0 < len(key) <= MAX_LABEL_CHARS
            and _label_char_ok(key[0], first=True)
            and all(_label_char_ok(c, first=False) for c in key[1:])
        )
        if not key_ok:
            raise _invalid(
                f"{where}[{key}]",
                f"Label key {key!r} is invalid: it must be 1-{MAX_LABEL_CHARS} characters, start "
                "with a lowercase letter and contain only lowercase letters, digits, "
                "underscores and dashes.",
            )
        value_ok = len(value) <= MAX_LABEL_CHARS and all(
            _label_char_ok(c, first=False) for c in value
        )
        if not value_ok:
            raise _invalid(
                f"{where}[{key}]",
                f"Label value {value!r} of key {key!r} is invalid: it must be at most "
                f"{MAX_LABEL_CHARS} characters of lowercase letters, digits, underscores and "
                "dashes.",
            )
        labels[key] = value
    return labels


def tunable_model(reference: str) -> TunableModel | None:
    """The tunable model ``reference`` names (``ID`` or ``[projects/P/locations/L/]publishers/
    google/models/ID``), or None."""
    return TUNABLE_MODELS.get(_PUBLISHER_PREFIX.sub("", reference, count=1))


def validate_tuning_job(
    location: str, body: Mapping[str, Any], api_version: str = "v1"
) -> TuningRequest:
    """Check a ``tuningJobs.create`` body of ``api_version`` as the service does; the
    normalised request.

    Raises:
        ApiError: INVALID_ARGUMENT (an unknown field, a wrong type, a missing or invalid
            value, a distillation job outside its region), UNIMPLEMENTED (a valid field the
            emulator does not emulate).
    """
    known = _BETA_INPUT_FIELDS if api_version == "v1beta1" else _INPUT_FIELDS
    top = _fields(body, known, "tuning_job", ignored=_OUTPUT_FIELDS)
    if top.get("preTunedModel") is not None:
        raise ApiError(
            "UNIMPLEMENTED",
            "The local emulator does not emulate continuous tuning (preTunedModel); tune a "
            "baseModel.",
        )
    base_model = _string(top, "baseModel", "tuning_job")
    if not base_model:
        raise _invalid("tuning_job.base_model", "base_model is required.")
    model = tunable_model(base_model)
    if model is None:
        raise _invalid(
            "tuning_job.base_model",
            f"Base model {base_model} is not supported for supervised tuning. Supported base "
            f"models: {', '.join(TUNABLE_MODELS)}.",
        )
    if top.get("distillationSpec") is not None:
        if top.get("supervisedTuningSpec") is not None:
            raise _invalid(
                "tuning_job.tuning_spec",
                "Only one tuning spec may be set: supervised_tuning_spec or distillation_spec.",
            )
        return _distillation_request(location, top, base_model, model)
    if top.get("supervisedTuningSpec") is None:
        raise _invalid(
            "tuning_job.supervised_tuning_spec",
            "A tuning spec is required: set supervised_tuning_spec"
            + (" or distillation_spec." if api_version == "v1beta1" else "."),
        )
    where = "tuning_job.supervised_tuning_spec"
    spec = _fields(top["supervisedTuningSpec"], _SPEC_FIELDS, where)
    if spec.get("evaluationConfig") is not None:
        raise ApiError(
            "UNIMPLEMENTED",
            "The local emulator does not emulate evaluationConfig (the Gen AI evaluation "
            "service); evaluate the tuned model through its endpoint.",
        )
    training = _gcs_uri(spec, "trainingDatasetUri", where, required=True)
    validation = _gcs_uri(spec, "validationDatasetUri", where, required=False)
    export_last = spec.get("exportLastCheckpointOnly", False)
    if not isinstance(export_last, bool):
        raise _invalid(
            f"{where}.export_last_checkpoint_only",
            f"Invalid value at '{where}.export_last_checkpoint_only' (TYPE_BOOL), "
            f"{describe_json_value(export_last)}",
        )
    hyper = _fields(spec.get("hyperParameters") or {}, _HYPER_FIELDS, f"{where}.hyper_parameters")
    display_name, kms_key, service_account = _common(location, top)
    return TuningRequest(
        base_model=base_model,
        training_dataset_uri=training,
        validation_dataset_uri=validation,
        tuned_model_display_name=display_name,
        epoch_count=_epochs(hyper.get("epochCount")),
        learning_rate_multiplier=_learning_rate_multiplier(hyper.get("learningRateMultiplier")),
        adapter_size=_adapter_size(hyper.get("adapterSize"), model),
        export_last_checkpoint_only=export_last,
        description=_string(top, "description", "tuning_job"),
        labels=check_labels(top.get("labels")),
        kms_key_name=kms_key,
        service_account=service_account,
    )


def _distillation_request(
    location: str, top: Mapping[str, Any], base_model: str, model: TunableModel
) -> TuningRequest:
    """A v1beta1 ``distillationSpec`` body, checked (see the module docs).

    Raises:
        ApiError: INVALID_ARGUMENT, as :func:`validate_tuning_job`.
    """
    where = "tuning_job.distillation_spec"
    if location != GEMINI_DISTILLATION_REGION:
        raise _invalid(
            where,
            f"Distillation is not available in {location}; it is available in "
            f"{GEMINI_DISTILLATION_REGION} only.",
        )
    if model.model_id not in GEMINI_DISTILLATION_STUDENTS:
        raise _invalid(
            "tuning_job.base_model",
            f"Base model {base_model} is not supported as a distillation student. Supported "
            f"students: {', '.join(GEMINI_DISTILLATION_STUDENTS)}.",
        )
    spec = _fields(top["distillationSpec"], _DISTILLATION_FIELDS, where)
    base_teacher = _string(spec, "baseTeacherModel", where)
    tuned_teacher = _string(spec, "tunedTeacherModelSource", where)
    if base_teacher and tuned_teacher:
        raise _invalid(
            f"{where}.teacher_model",
            "Only one teacher may be set: base_teacher_model or tuned_teacher_model_source.",
        )
    if not base_teacher and not tuned_teacher:
        raise _invalid(
            f"{where}.teacher_model",
            "A teacher is required: set base_teacher_model or tuned_teacher_model_source.",
        )
    if base_teacher:
        short = _PUBLISHER_PREFIX.sub("", base_teacher, count=1)
        if short not in GEMINI_DISTILLATION_TEACHERS:
            raise _invalid(
                f"{where}.base_teacher_model",
                f"Base teacher model {base_teacher} is not supported for distillation. "
                f"Supported teachers: {', '.join(GEMINI_DISTILLATION_TEACHERS)}.",
            )
        base_teacher = short
    if tuned_teacher and not _TUNED_MODEL.fullmatch(tuned_teacher):
        raise _invalid(
            f"{where}.tuned_teacher_model_source",
            "tuned_teacher_model_source must be projects/PROJECT/locations/LOCATION/models/"
            f"MODEL, got {tuned_teacher!r}.",
        )
    student = _string(spec, "studentModel", where)
    if student and tunable_model(student) != model:
        raise _invalid(
            f"{where}.student_model",
            f"student_model {student} differs from base_model {base_model}; student_model is "
            "deprecated: set base_model only.",
        )
    training = _gcs_uri(spec, "trainingDatasetUri", where, required=False)
    prompts = _gcs_uri(spec, "promptDatasetUri", where, required=False)
    if training and prompts:
        raise _invalid(
            f"{where}.prompt_dataset_uri",
            "Set the prompt dataset once: prompt_dataset_uri or training_dataset_uri.",
        )
    if not training and not prompts:
        raise _invalid(
            f"{where}.prompt_dataset_uri",
            "A prompt dataset is required: set prompt_dataset_uri (or training_dataset_uri).",
        )
    validation = _gcs_uri(spec, "validationDatasetUri", where, required=False)
    hyper_where = f"{where}.hyper_parameters"
    hyper = _fields(spec.get("hyperParameters") or {}, _HYPER_FIELDS, hyper_where)
    display_name, kms_key, service_account = _common(location, top)
    return TuningRequest(
        base_model=base_model,
        training_dataset_uri=training or prompts,
        validation_dataset_uri=validation,
        tuned_model_display_name=display_name,
        epoch_count=_epochs(hyper.get("epochCount"), hyper_where),
        learning_rate_multiplier=_learning_rate_multiplier(
            hyper.get("learningRateMultiplier"), hyper_where
        ),
        adapter_size=_adapter_size(hyper.get("adapterSize"), model, hyper_where),
        description=_string(top, "description", "tuning_job"),
        labels=check_labels(top.get("labels")),
        kms_key_name=kms_key,
        service_account=service_account,
        tuning_mode="distillation",
        base_teacher_model=base_teacher,
        tuned_teacher_model_source=tuned_teacher,
    )


def _common(location: str, top: Mapping[str, Any]) -> tuple[str, str, str]:
    """The display name, KMS key and service account of a body, checked.

    Raises:
        ApiError: INVALID_ARGUMENT naming the field.
    """
    display_name = _string(top, "tunedModelDisplayName", "tuning_job")
    if len(display_name) > MAX_DISPLAY_NAME_CHARS:
        raise _invalid(
            "tuning_job.tuned_model_display_name",
            f"tuned_model_display_name can be up to {MAX_DISPLAY_NAME_CHARS} characters long, "
            f"got {len(display_name)}.",
        )
    encryption = _fields(
        top.get("encryptionSpec") or {}, _ENCRYPTION_FIELDS, "tuning_job.encryption_spec"
    )
    kms_key = _string(encryption, "kmsKeyName", "tuning_job.encryption_spec")
    if kms_key:
        match = _KMS_KEY.fullmatch(kms_key)
        if match is None:
            raise _invalid(
                "tuning_job.encryption_spec.kms_key_name",
                "kms_key_name must be projects/PROJECT/locations/LOCATION/keyRings/RING/"
                f"cryptoKeys/KEY, got {kms_key!r}.",
            )
        if match["location"] != location:
            raise _invalid(
                "tuning_job.encryption_spec.kms_key_name",
                f"The KMS key {kms_key} is in {match['location']}; a tuning job in {location} "
                "needs a key in the same region.",
            )
    service_account = _string(top, "serviceAccount", "tuning_job")
    if service_account and not _SERVICE_ACCOUNT.fullmatch(service_account):
        raise _invalid(
            "tuning_job.service_account",
            f"service_account must be a service account email, got {service_account!r}.",
        )
    return display_name, kms_key, service_account
