"""Validation of ``pipelineJobs.create`` for the distillation template, as the service does it.

The parameters are the template's own (:mod:`distillery.local.emulator._template`): an unknown
one, a missing required one or a value of the wrong type is refused, an omitted one takes the
template's default. On top, SPEC.md's rules of the service (regions, CMEK, evaluation data,
TensorBoard region, Cloud Storage URIs); every fact comes from :mod:`distillery.facts`.

Deliberately independent of :mod:`distillery.policy`: the emulator checks the request the product
sends on its own, so a policy bug surfaces locally as the 400 the service would answer. Every
problem found is reported (not only the first), each naming its field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from distillery import facts
from distillery.facts import MAX_CONTEXT_LENGTHS, REQUIRED_PARAMETERS, TEMPLATE_PARAMETERS
from distillery.local.emulator._status import ApiError, FieldViolation
from distillery.local.emulator._template import typed_value

_GCS_OBJECT = re.compile(r"gs://[a-z0-9][-_.a-z0-9]{1,220}/\S+")
_GCS_FOLDER = re.compile(r"gs://[a-z0-9][-_.a-z0-9]{1,220}(/\S*)?")

#: PipelineJob fields a create request may set (camelCase, as the REST API names them).
_INPUT_FIELDS = frozenset(
    {
        "displayName",
        "pipelineSpec",
        "labels",
        "runtimeConfig",
        "encryptionSpec",
        "serviceAccount",
        "network",
        "reservedIpRanges",
        "pscInterfaceConfig",
        "templateUri",
        "preflightValidations",
    }
)
#: Output-only PipelineJob fields: the service ignores them in a create request.
_OUTPUT_FIELDS = frozenset(
    {
        "name",
        "createTime",
        "startTime",
        "endTime",
        "updateTime",
        "state",
        "jobDetail",
        "error",
        "templateMetadata",
        "scheduleName",
    }
)
_RUNTIME_CONFIG_FIELDS = frozenset(
    {"parameters", "gcsOutputDirectory", "parameterValues", "failurePolicy", "inputArtifacts"}
)


@dataclass(frozen=True)
class TemplateCatalog:
    """What the emulated service knows: templates, regions and the default models.

    The default models are the template's own (``text-unicorn@001`` teaching ``text-bison@002``);
    a catalog built from settings names the configured ones instead.
    """

    template_uris: tuple[str, ...] = (facts.TEMPLATE_URI,)
    teacher_model: str = facts.DEFAULT_TEACHER_MODEL
    student_model: str = facts.DEFAULT_STUDENT_MODEL
    regions: tuple[str, ...] = facts.SUPPORTED_REGIONS


@dataclass(frozen=True)
class AcceptedJob:
    """A create request that passed validation."""

    display_name: str
    template_uri: str
    output_directory: str
    #: Every parameter of the template, defaults filled in, values of the template's types
    #: (``""`` for an optional string not given: see :mod:`distillery.local.emulator._template`).
    parameters: dict[str, Any]
    labels: dict[str, str]
    service_account: str
    kms_key_name: str
    #: The request's input fields, echoed in the resource as sent.
    echoed: dict[str, Any] = field(default_factory=dict)


def _camel(name: str) -> str:
    """``snake_case`` → ``camelCase`` (the REST API accepts both spellings of a field)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


# --- Value rules beyond the template's types: return the value or raise ValueError(description) --


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def _display_name(value: str) -> str:
    text = _text(value)
    if len(text) > facts.DISPLAY_NAME_MAX:
        raise ValueError(f"must be at most {facts.DISPLAY_NAME_MAX} characters, got {len(text)}")
    return text


def _gcs_object(value: str) -> str:
    if not _GCS_OBJECT.fullmatch(value):
        raise ValueError(f"must be a Cloud Storage object URI gs://BUCKET/OBJECT, got {value!r}")
    return value


def _gcs_folder(value: str) -> str:
    if not _GCS_FOLDER.fullmatch(value):
        raise ValueError(f"must be a Cloud Storage URI gs://BUCKET/FOLDER, got {value!r}")
    return value


def _region(value: str) -> str:
    if value not in facts.SUPPORTED_REGIONS:
        raise ValueError(
            f"must be a region that supports distillation "
            f"({', '.join(facts.SUPPORTED_REGIONS)}), got {value!r}"
        )
    return value


def _accelerator(value: str) -> str:
    if value not in facts.ACCELERATOR_TYPES:
        raise ValueError(f"must be one of {', '.join(facts.ACCELERATOR_TYPES)}, got {value!r}")
    return value


def _positive_int(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be a positive integer, got {value!r}")
    return value


def _positive_number(value: float) -> float:
    if value <= 0:
        raise ValueError(f"must be a positive number, got {value!r}")
    return value


def _checkpoint_selection(value: str) -> str:
    if value.lower() not in facts.CHECKPOINT_SELECTION_VALUES:
        raise ValueError(
            f"must be one of the strings {', '.join(facts.CHECKPOINT_SELECTION_VALUES)}, "
            f"got {value!r}"
        )
    return value.lower()


def _kms_key(value: str) -> str:
    if not facts.KMS_KEY_PATTERN.fullmatch(value):
        raise ValueError(
            "must be a Cloud KMS key name projects/P/locations/L/keyRings/R/cryptoKeys/K, "
            f"got {value!r}"
        )
    return value


def _context_length(value: str) -> str:
    if value not in MAX_CONTEXT_LENGTHS:
        raise ValueError(
            f"must be one of {', '.join(repr(v) for v in MAX_CONTEXT_LENGTHS)}, got {value!r}"
        )
    return value


#: The rules a value of the right type must also follow (SPEC.md's rules of the service; the SDK's
#: documented values of ``max_context_length``). The template's other parameters only have a
#: type: ``enable_early_stopping``, ``temperature`` (the teacher's sampling),
#: ``tpu_training_skip_cmek``, ``api_endpoint`` and ``version`` — see
#: :mod:`distillery.local.emulator._training` for what each means locally.
_VALUE_RULES: dict[str, Callable[[Any], Any]] = {
    "project": _text,
    "location": _region,
    "model_display_name": _display_name,
    "dataset_uri": _gcs_object,
    "accelerator_type": _accelerator,
    "teacher_model_reference": _text,
    "student_model_reference": _text,
    "train_steps": _positive_int,
    "learning_rate_multiplier": _positive_number,
    "evaluation_data_uri": _gcs_object,
    "evaluation_interval": _positive_int,
    "enable_checkpoint_selection": _checkpoint_selection,
    "evaluation_output_root_dir": _gcs_folder,
    "tensorboard_resource_id": _text,
    "encryption_spec_key_name": _kms_key,
    "max_context_length": _context_length,
}


class _Violations:
    """Collects field violations; raises them together as one INVALID_ARGUMENT."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field_path: str, description: str) -> None:
        self.items.append(FieldViolation(field_path, description))

    def raise_if_any(self) -> None:
        if self.items:
            text = "; ".join(v.description for v in self.items)
            raise ApiError("INVALID_ARGUMENT", f"Invalid pipeline job: {text}", self.items)


def check_job_id(job_id: str) -> None:
    """Check a client-chosen ``pipelineJobId``.

    Raises:
        ApiError: INVALID_ARGUMENT, the id does not match ``[a-z][-a-z0-9]{0,127}``.
    """
    pattern = facts.PIPELINE_JOB_ID_PATTERN
    if not pattern.fullmatch(job_id):
        raise ApiError(
            "INVALID_ARGUMENT",
            f"pipelineJobId {job_id!r} is invalid: it must match {pattern.pattern}",
            [FieldViolation("pipelineJobId", f"must match {pattern.pattern}")],
        )


def validate_create(
    location: str, body: Mapping[str, Any], catalog: TemplateCatalog
) -> AcceptedJob:
    """Validate a ``pipelineJobs.create`` body for the distillation template in ``location``.

    Raises:
        ApiError: INVALID_ARGUMENT naming every offending field (region, template; parameters
            unknown to the template, missing or of the wrong type; the CMEK, evaluation and
            tensorboard rules of SPEC.md).
    """
    if location not in catalog.regions:
        raise ApiError(
            "INVALID_ARGUMENT",
            f"Location {location!r} does not support distillation pipeline jobs; use one of: "
            f"{', '.join(catalog.regions)}",
            [FieldViolation("parent", f"location {location!r} is not a supported region")],
        )
    bad = _Violations()
    fields = {_camel(k): v for k, v in body.items()}
    for name in sorted(set(fields) - _INPUT_FIELDS - _OUTPUT_FIELDS):
        bad.add(name, f"Unknown field {name!r} in the pipeline job")

    display_name = fields.get("displayName", "")
    if not isinstance(display_name, str) or len(display_name) > facts.DISPLAY_NAME_MAX:
        bad.add(
            "displayName",
            f"displayName must be a string of at most {facts.DISPLAY_NAME_MAX} chars",
        )
        display_name = ""

    template_uri = fields.get("templateUri")
    if "pipelineSpec" in fields:
        bad.add(
            "pipelineSpec",
            "pipelineSpec is not supported by the local emulator: send the distillation "
            "templateUri instead",
        )
    if template_uri not in catalog.template_uris:
        bad.add(
            "templateUri",
            f"templateUri {template_uri!r} is not a known distillation template; known: "
            f"{', '.join(catalog.template_uris)}",
        )

    labels = _labels(fields.get("labels", {}), bad)
    service_account = fields.get("serviceAccount", "")
    if not isinstance(service_account, str) or (service_account and "@" not in service_account):
        bad.add("serviceAccount", f"serviceAccount must be an email, got {service_account!r}")
        service_account = ""

    spec_key = _encryption_spec_key(fields.get("encryptionSpec"), bad)
    output_directory, raw_parameters = _runtime_config(fields.get("runtimeConfig"), bad)
    parameters = _parameters(raw_parameters, location, catalog, bad)
    kms_key = _check_cmek(spec_key, parameters, location, bad)
    _check_tensorboard(parameters.get("tensorboard_resource_id"), location, bad)
    bad.raise_if_any()

    echoed = {k: v for k, v in fields.items() if k in _INPUT_FIELDS}
    return AcceptedJob(
        display_name=display_name,
        template_uri=str(template_uri),
        output_directory=output_directory,
        parameters=parameters,
        labels=labels,
        service_account=service_account,
        kms_key_name=kms_key,
        echoed=echoed,
    )


def _labels(raw: Any, bad: _Violations) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        bad.add("labels", "labels must be a map of strings")
        return {}
    labels: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str) or len(key) > facts.LABEL_MAX or len(value) > facts.LABEL_MAX:
            bad.add(f"labels.{key}", f"label {key!r} must be a string of at most {facts.LABEL_MAX}")
            continue
        labels[key] = value
    return labels


def _encryption_spec_key(raw: Any, bad: _Violations) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, Mapping):
        bad.add("encryptionSpec", "encryptionSpec must be an object with kmsKeyName")
        return ""
    key = raw.get("kmsKeyName", raw.get("kms_key_name", ""))
    if key == "":
        return ""
    try:
        if not isinstance(key, str):
            raise ValueError(f"must be a string, got {key!r}")
        return _kms_key(key)
    except ValueError as exc:
        bad.add("encryptionSpec.kmsKeyName", f"encryptionSpec.kmsKeyName {exc}")
        return ""


def _runtime_config(raw: Any, bad: _Violations) -> tuple[str, Mapping[str, Any]]:
    if not isinstance(raw, Mapping):
        bad.add("runtimeConfig", "runtimeConfig is required (gcsOutputDirectory, parameterValues)")
        return "", {}
    config = {_camel(k): v for k, v in raw.items()}
    for name in sorted(set(config) - _RUNTIME_CONFIG_FIELDS):
        bad.add(f"runtimeConfig.{name}", f"Unknown field {name!r} in runtimeConfig")
    if "parameters" in config:
        bad.add(
            "runtimeConfig.parameters",
            "runtimeConfig.parameters is deprecated for this template: use parameterValues",
        )
    output = config.get("gcsOutputDirectory")
    if not isinstance(output, str) or not _GCS_FOLDER.fullmatch(output):
        bad.add(
            "runtimeConfig.gcsOutputDirectory",
            f"runtimeConfig.gcsOutputDirectory must be a gs:// URI (the pipeline root), "
            f"got {output!r}",
        )
        output = ""
    values = config.get("parameterValues", {})
    if not isinstance(values, Mapping):
        bad.add("runtimeConfig.parameterValues", "runtimeConfig.parameterValues must be a map")
        values = {}
    return output, values


def _parameters(
    raw: Mapping[str, Any], location: str, catalog: TemplateCatalog, bad: _Violations
) -> dict[str, Any]:
    """Every template parameter: the request's value, checked and typed, or the default."""
    prefix = "runtimeConfig.parameterValues"
    values: dict[str, Any] = {}
    for name in sorted(raw):
        parameter = TEMPLATE_PARAMETERS.get(name)
        if parameter is None:
            bad.add(
                f"{prefix}.{name}",
                f"Unknown parameter {name!r}: the distillation template takes "
                f"{', '.join(TEMPLATE_PARAMETERS)}",
            )
            continue
        what = "location (model upload region)" if name == "location" else name
        try:
            value = typed_value(parameter.kind, raw[name])
            if value != parameter.unset and name in _VALUE_RULES:
                value = _VALUE_RULES[name](value)
        except ValueError as exc:
            bad.add(f"{prefix}.{name}", f"parameter {what} {exc}")
            continue
        values[name] = value
    for name in REQUIRED_PARAMETERS:
        if name not in raw:
            bad.add(f"{prefix}.{name}", f"parameter {name} is required")
    has_eval = raw.get("evaluation_data_uri") not in (None, "")
    for name in facts.EVAL_ONLY_PARAMETERS:
        if name in raw and not has_eval:
            bad.add(
                f"{prefix}.{name}",
                f"parameter {name} needs evaluation data: set evaluation_data_uri or drop it",
            )
    # The template's defaults, but the emulated service's default models, and the pipeline's
    # region for the model upload region ("" in the template).
    if not values.get("location"):
        values["location"] = location
    values.setdefault("teacher_model_reference", catalog.teacher_model)
    values.setdefault("student_model_reference", catalog.student_model)
    for name, parameter in TEMPLATE_PARAMETERS.items():
        if not parameter.required:
            values.setdefault(name, parameter.default)
    return values


def _check_cmek(
    spec_key: str, parameters: Mapping[str, Any], location: str, bad: _Violations
) -> str:
    """The CMEK key of the job ("" for Google-managed); records why it cannot be used."""
    parameter_key = parameters.get("encryption_spec_key_name", "")
    if spec_key and parameter_key and spec_key != parameter_key:
        bad.add(
            "encryptionSpec.kmsKeyName",
            "encryptionSpec.kmsKeyName and parameter encryption_spec_key_name name different keys",
        )
    key = str(spec_key or parameter_key)
    if not key:
        return ""
    field_path = (
        "encryptionSpec.kmsKeyName"
        if spec_key
        else "runtimeConfig.parameterValues.encryption_spec_key_name"
    )
    what = "CMEK (encryptionSpec.kmsKeyName / encryption_spec_key_name)"
    cmek_region = facts.CMEK_REGION
    if location != cmek_region:
        bad.add(
            field_path,
            f"{what} is only available in {cmek_region}; the pipeline runs in {location}",
        )
    upload = parameters.get("location", location)
    if upload != cmek_region:
        bad.add(
            field_path,
            f"{what} needs the model upload location in {cmek_region}; "
            f"parameter location is {upload}",
        )
    # SPEC.md: no CMEK on TPU. What tpu_training_skip_cmek changes is not documented, so it
    # does not lift this rule (the parameter is accepted and only recorded).
    accelerator = facts.ACCELERATORS.get(str(parameters.get("accelerator_type")))
    if accelerator is not None and (
        not accelerator.cmek_supported or accelerator.tuning_region != cmek_region
    ):
        bad.add(
            field_path,
            f"{what} is not supported with accelerator_type {accelerator.name} (tuning runs in "
            f"{accelerator.tuning_region} without CMEK)",
        )
    match = facts.KMS_KEY_PATTERN.fullmatch(key)
    if match is not None and match["location"] != cmek_region:
        bad.add(
            field_path, f"{what}: the key is in {match['location']}, it must be in {cmek_region}"
        )
    return key


def _check_tensorboard(tensorboard: Any, location: str, bad: _Violations) -> None:
    if not isinstance(tensorboard, str) or not tensorboard:
        return
    field_path = "runtimeConfig.parameterValues.tensorboard_resource_id"
    if "/" not in tensorboard:
        return  # A bare id names a tensorboard of the pipeline's own region.
    match = facts.TENSORBOARD_PATTERN.fullmatch(tensorboard)
    if match is None:
        bad.add(
            field_path,
            "parameter tensorboard_resource_id must be a tensorboard id or "
            f"projects/P/locations/L/tensorboards/ID, got {tensorboard!r}",
        )
    elif match["location"] != location:
        bad.add(
            field_path,
            f"parameter tensorboard_resource_id is in {match['location']}; "
            f"the tensorboard must be in the pipeline region {location}",
        )
