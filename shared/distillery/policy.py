"""The launch policy: one LaunchRequest + the deployment's settings → a resolved, explained job.

:func:`resolve` is pure (no I/O). It applies every rule of SPEC.md ("Regions and accelerators",
"Training parameters", "The job request") and the organisation's constraints from
:class:`~distillery.core.settings.Settings` (allowed regions, data residency, required CMEK,
accelerator preference with fallback, concurrency, step and daily-budget limits), and returns a
:class:`Plan`:

- ``spec``: every resolved value (:class:`JobSpec`);
- ``reasons``: one sentence per choice, saying why;
- ``refusals``: every reason the job cannot run (non-empty → REJECTED_BY_POLICY; all are
  collected, the engine never stops at the first);
- ``request_body``: the exact ``pipelineJobs.create`` body, holding only the parameters that apply.

:func:`job_id` derives the deterministic Vertex ``pipelineJobId`` of a plan.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from distillery.core.models import LaunchRequest
from distillery.core.settings import (
    DATA_RESIDENCY_AREAS,
    PROMOTION_GATE_KEYS,
    Settings,
)
from distillery.facts import SUPPORTED_REGIONS

# --- SPEC facts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcceleratorProfile:
    """Where and on what one accelerator type tunes (SPEC: "Regions and accelerators")."""

    name: str
    tuning_region: str
    count: int
    description: str
    cmek_supported: bool
    #: Planning estimate of one training step's wall time (see PIPELINE_OVERHEAD_HOURS).
    seconds_per_step: float


ACCELERATORS: dict[str, AcceleratorProfile] = {
    "GPU": AcceleratorProfile("GPU", "us-central1", 8, "8 x NVIDIA A100 80 GB", True, 10.0),
    "TPU": AcceleratorProfile("TPU", "europe-west4", 64, "64 TPU v3 cores", False, 5.0),
}

#: The only region where CMEK is available (pipeline, model upload and tuning must all be here).
CMEK_REGION = "us-central1"

DEFAULT_TRAIN_STEPS = 300
DEFAULT_LEARNING_RATE_MULTIPLIER = 1.0
DEFAULT_EVALUATION_INTERVAL = 20
DEFAULT_ENABLE_EARLY_STOPPING = True
DEFAULT_CHECKPOINT_SELECTION = "default"
CHECKPOINT_SELECTION_VALUES = ("default", "true", "false")

#: Batch size by tuning region for 8k-context students; 32k-context students use 8 everywhere.
SHORT_CONTEXT_BATCH = {"us-central1": 8, "europe-west4": 24}
LONG_CONTEXT_BATCH = 8

MAX_DATASET_EXAMPLES = 10_000
EVAL_EXAMPLES_RANGE = (10, 250)

#: Recommended train_steps range per task (SPEC: "Recommended settings by task").
TASK_STEP_RANGES: dict[str, tuple[int, int]] = {
    "classification": (200, 1000),
    "summarization": (1000, 1500),
    "extractive_qa": (200, 800),
}
TASKS: tuple[str, ...] = (*TASK_STEP_RANGES, "other")
#: With a task and no ``train_steps``, steps aim at this many passes over the dataset, clamped
#: into the task's recommended range (see :func:`choose_train_steps`).
TARGET_EPOCHS = 3.0

# Planning estimates, not measurements: they size the daily budget check, nothing else.
# estimated accelerator-hours = (PIPELINE_OVERHEAD_HOURS
#     + (train_steps x seconds_per_step + evaluations x EVALUATION_PASS_SECONDS) / 3600)
#     x accelerator count
# One accelerator-hour is one A100 for an hour or one TPU v3 core for an hour.
PIPELINE_OVERHEAD_HOURS = 0.5
EVALUATION_PASS_SECONDS = 60.0

EVAL_PARAMETERS: tuple[str, ...] = (
    "evaluation_interval",
    "enable_early_stopping",
    "enable_checkpoint_selection",
)

DISPLAY_NAME_MAX = 128
MODEL_NAME_SUFFIX = "-distilled"
#: pipelineJobId: a readable prefix (≤ JOB_ID_PREFIX_MAX) + "-" + JOB_ID_HASH_CHARS hex digits.
JOB_ID_PREFIX_MAX = 48
JOB_ID_HASH_CHARS = 24
JOB_ID_PATTERN = re.compile(r"^[a-z][-a-z0-9]{0,127}$")

_TENSORBOARD = re.compile(r"^projects/[^/]+/locations/(?P<location>[^/]+)/tensorboards/[^/]+$")
_KMS_KEY = re.compile(
    r"^projects/[^/]+/locations/(?P<location>[^/]+)/keyRings/[^/]+/cryptoKeys/[^/]+$"
)


# --- Public types --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyUsage:
    """What is already running or spent today (the launcher counts it from the job records)."""

    running_jobs: int = 0
    accelerator_hours_today: float = 0.0


@dataclass(frozen=True)
class JobSpec:
    """Every resolved value of one distillation job (eval fields are None without eval data)."""

    project: str
    pipeline_region: str
    #: The ``location`` parameter: where the distilled model is uploaded.
    model_upload_region: str
    tuning_region: str
    accelerator_type: str
    accelerator_count: int
    accelerator_description: str
    dataset_uri: str
    dataset_examples: int
    task: str | None
    teacher_model_reference: str
    student_model_reference: str
    student_context: str  # "8k" or "32k"
    batch_size: int
    train_steps: int
    examples_seen: int
    epochs: float
    learning_rate_multiplier: float
    evaluation_data_uri: str | None
    eval_examples: int | None
    evaluation_interval: int | None
    enable_early_stopping: bool | None
    enable_checkpoint_selection: str | None
    tensorboard_resource_id: str | None
    cmek_key: str | None
    service_account: str | None
    model_display_name: str
    #: The pipeline job's ``displayName``.
    display_name: str
    output_directory: str
    template_uri: str
    estimated_accelerator_hours: float


@dataclass(frozen=True)
class Plan:
    """The outcome of :func:`resolve`: the spec, why, what forbids it, and the request body."""

    spec: JobSpec
    reasons: list[str]
    refusals: list[str]
    request_body: dict[str, Any]

    @property
    def accepted(self) -> bool:
        """Whether the job may be submitted (no refusal)."""
        return not self.refusals

    def spec_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict (for records and ``--json``)."""
        return dataclasses.asdict(self.spec)


# --- Small rules, public because they are worth testing on their own -----------------------------


def batch_size(student: str, tuning_region: str, long_context_students: tuple[str, ...]) -> int:
    """The tuning batch size for ``student`` when tuning runs in ``tuning_region`` (SPEC).

    Raises:
        KeyError: ``tuning_region`` is not a tuning region (us-central1, europe-west4).
    """
    per_region = SHORT_CONTEXT_BATCH[tuning_region]
    return LONG_CONTEXT_BATCH if student in long_context_students else per_region


def choose_train_steps(task: str, dataset_examples: int, batch: int) -> int:
    """The train_steps for ``task`` when none was asked for.

    ``ceil(TARGET_EPOCHS x dataset_examples / batch)``, clamped into the task's recommended range
    (:data:`TASK_STEP_RANGES`): enough steps to see the dataset about three times, never outside
    what SPEC recommends for the task.

    Raises:
        KeyError: ``task`` has no recommended range (e.g. "other").
    """
    low, high = TASK_STEP_RANGES[task]
    wanted = math.ceil(TARGET_EPOCHS * max(dataset_examples, 0) / batch)
    return min(max(wanted, low), high)


def estimate_accelerator_hours(
    profile: AcceleratorProfile, train_steps: int, evaluation_interval: int | None
) -> float:
    """The planning estimate of a job's accelerator-hours (formula above the constants)."""
    evaluations = train_steps // evaluation_interval if evaluation_interval else 0
    seconds = train_steps * profile.seconds_per_step + evaluations * EVALUATION_PASS_SECONDS
    return round((PIPELINE_OVERHEAD_HOURS + seconds / 3600) * profile.count, 2)


def default_model_display_name(dataset_uri: str) -> str:
    """``gs://b/validated/<sha>/news.jsonl`` → ``news-distilled``.

    Lower-case letters, digits and dashes only (safe as a Vertex model and endpoint display name
    and readable in a pipelineJobId), at most 128 characters.
    """
    base = dataset_uri.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".jsonl", ".json"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    stem = _slug(base)[: DISPLAY_NAME_MAX - len(MODEL_NAME_SUFFIX)].strip("-") or "dataset"
    return f"{stem}{MODEL_NAME_SUFFIX}"


def build_request_body(spec: JobSpec) -> dict[str, Any]:
    """The ``pipelineJobs.create`` body of ``spec``: only the parameters that apply are sent."""
    parameters: dict[str, Any] = {
        "project": spec.project,
        "model_display_name": spec.model_display_name,
        "dataset_uri": spec.dataset_uri,
        "location": spec.model_upload_region,
        "accelerator_type": spec.accelerator_type,
        "teacher_model_reference": spec.teacher_model_reference,
        "student_model_reference": spec.student_model_reference,
        "train_steps": spec.train_steps,
        "learning_rate_multiplier": spec.learning_rate_multiplier,
    }
    if spec.evaluation_data_uri is not None:
        parameters["evaluation_data_uri"] = spec.evaluation_data_uri
        parameters["evaluation_interval"] = spec.evaluation_interval
        parameters["enable_early_stopping"] = spec.enable_early_stopping
        parameters["enable_checkpoint_selection"] = spec.enable_checkpoint_selection
    if spec.tensorboard_resource_id is not None:
        parameters["tensorboard_resource_id"] = spec.tensorboard_resource_id
    if spec.cmek_key is not None:
        parameters["encryption_spec_key_name"] = spec.cmek_key
    body: dict[str, Any] = {
        "displayName": spec.display_name,
        "runtimeConfig": {
            "gcsOutputDirectory": spec.output_directory,
            "parameterValues": parameters,
        },
    }
    if spec.cmek_key is not None:
        body["encryptionSpec"] = {"kmsKeyName": spec.cmek_key}
    if spec.service_account is not None:
        body["serviceAccount"] = spec.service_account
    body["templateUri"] = spec.template_uri
    return body


def job_id(plan: Plan, *, source_identity: str, request_id: str) -> str:
    """The deterministic Vertex ``pipelineJobId`` of ``plan`` (``[a-z][-a-z0-9]{0,127}``).

    A readable prefix from the display name, then the first 24 hex digits of the SHA-256 of the
    canonical JSON of the validated dataset's identity (``source_identity``, e.g.
    ``bucket/object#generation``), the request body (every resolved parameter) and ``request_id``.
    The same inputs always give the same id; changing any of them gives another.

    Raises:
        ValueError: ``source_identity`` or ``request_id`` is empty.
    """
    if not source_identity or not request_id:
        raise ValueError("job_id needs a source_identity and a request_id")
    canonical = json.dumps(
        {"source": source_identity, "request": plan.request_body, "request_id": request_id},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:JOB_ID_HASH_CHARS]
    prefix = _slug(plan.spec.display_name)[:JOB_ID_PREFIX_MAX].strip("-")
    if not prefix[:1].isalpha():
        prefix = f"job-{prefix}".rstrip("-")
    return f"{prefix}-{digest}"


# --- Overrides -----------------------------------------------------------------------------------


@dataclass
class _Overrides:
    """The job parameters a request may override, typed; None means "not given"."""

    train_steps: int | None = None
    learning_rate_multiplier: float | None = None
    evaluation_interval: int | None = None
    enable_early_stopping: bool | None = None
    enable_checkpoint_selection: str | None = None
    accelerator_type: str | None = None
    location: str | None = None
    teacher_model_reference: str | None = None
    student_model_reference: str | None = None
    model_display_name: str | None = None
    tensorboard_resource_id: str | None = None
    encryption_spec_key_name: str | None = None
    service_account: str | None = None
    task: str | None = None


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def _positive_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError("must be a number above 0")
    return float(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value.strip()


def _checkpoint_selection(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str) or value.lower() not in CHECKPOINT_SELECTION_VALUES:
        raise ValueError(f"must be one of {', '.join(CHECKPOINT_SELECTION_VALUES)}")
    return value.lower()


def _accelerator(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in ACCELERATORS:
        raise ValueError(f"must be one of {', '.join(ACCELERATORS)}")
    return value.upper()


def _task(value: Any) -> str:
    if not isinstance(value, str) or value not in TASKS:
        raise ValueError(f"must be one of {', '.join(TASKS)}")
    return value


def _display_name(value: Any) -> str:
    text = _text(value)
    if len(text) > DISPLAY_NAME_MAX:
        raise ValueError(f"must be at most {DISPLAY_NAME_MAX} characters")
    return text


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "train_steps": _positive_int,
    "learning_rate_multiplier": _positive_float,
    "evaluation_interval": _positive_int,
    "enable_early_stopping": _boolean,
    "enable_checkpoint_selection": _checkpoint_selection,
    "accelerator_type": _accelerator,
    "location": _text,
    "teacher_model_reference": _text,
    "student_model_reference": _text,
    "model_display_name": _display_name,
    "tensorboard_resource_id": _text,
    "encryption_spec_key_name": _text,
    "service_account": _text,
    "task": _task,
}

#: Every job parameter a LaunchRequest may override, and the promotion gates it may set.
OVERRIDABLE_PARAMETERS: tuple[str, ...] = (*_PARSERS, *PROMOTION_GATE_KEYS)


@dataclass
class _CheckedOverrides:
    """What the shared config validator made of the overrides."""

    values: dict[str, Any]
    refusals: list[str] = field(default_factory=list)
    #: Fields its errors name: the policy does not repeat its own complaint about them.
    flagged: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def _validated_overrides(raw: Mapping[str, Any], has_eval: bool) -> _CheckedOverrides:
    """Run :func:`distillery.validation.validate_config` over the overrides."""
    if not raw:
        return _CheckedOverrides({})
    # Imported here: the validator may use this module's parameter tables, and the policy must
    # stay importable on its own.
    from distillery.validation import validate_config

    result = validate_config(json.dumps(dict(raw)).encode(), source="overrides", has_eval=has_eval)
    report = result.report
    notes = [
        f"note: override {finding.field + ': ' if finding.field else ''}{finding.message}"
        for rule in report.warnings
        for finding in rule.findings
    ]
    if report.valid:
        return _CheckedOverrides(dict(result.overrides), notes=notes)
    checked = _CheckedOverrides(dict(raw), notes=notes)
    for rule in report.errors:
        for finding in rule.findings:
            where = finding.field or ""
            checked.refusals.append(
                f"override {where}: {finding.message}" if where else finding.message
            )
            if where:
                checked.flagged.add(where)
        if not rule.findings:
            checked.refusals.append(f"overrides: {rule.summary}")
    if not checked.refusals:
        checked.refusals.append("the overrides are invalid")
    return checked


def _parse_overrides(
    raw: Mapping[str, Any], flagged: set[str]
) -> tuple[_Overrides, list[str], set[str]]:
    """Type every override: (typed values, refusals, the names given).

    A value the validator flagged is not complained about twice: if it is unusable it is dropped
    silently; if it is well-typed (flagged for another reason) it is kept, so the policy's own
    rules still judge it.
    """
    parsed = _Overrides()
    refusals: list[str] = []
    given: set[str] = set()
    for key, value in raw.items():
        if key in PROMOTION_GATE_KEYS:
            continue  # Read by the promoter, not a job parameter (the validator checked it).
        parser = _PARSERS.get(key)
        if parser is None:
            if key not in flagged:
                refusals.append(
                    f"override {key}: not a job parameter that can be overridden "
                    f"(use one of: {', '.join(OVERRIDABLE_PARAMETERS)})"
                )
            continue
        if value is None:
            continue
        try:
            setattr(parsed, key, parser(value))
        except ValueError as exc:
            if key not in flagged:
                refusals.append(f"override {key}: {exc}, got {value!r}")
            continue
        given.add(key)
    return parsed, refusals, given


# --- Regions -------------------------------------------------------------------------------------


def _region_refusals(role: str, region: str, settings: Settings) -> list[str]:
    """Why ``region`` (playing ``role``) may not be used under the organisation's constraints."""
    refusals: list[str] = []
    if region not in SUPPORTED_REGIONS:
        refusals.append(
            f"the {role} {region} is not a distillation region "
            f"(SPEC: use one of {', '.join(SUPPORTED_REGIONS)})"
        )
        return refusals
    allowed = settings.allowed_region_list
    if region not in allowed:
        refusals.append(
            f"the {role} {region} is not allowed "
            f"({Settings.env_name('allowed_regions')}: {', '.join(allowed)})"
        )
    residency = settings.data_residency
    if residency:
        prefixes = DATA_RESIDENCY_AREAS[residency]
        if not region.startswith(prefixes):
            area = ", ".join(f"{p}*" for p in prefixes)
            refusals.append(
                f"the {role} {region} breaks the {residency} data residency "
                f"({Settings.env_name('data_residency')}={residency} allows {area} regions only)"
            )
    return refusals


def _cmek_unavailable(profile: AcceleratorProfile, pipeline: str, upload: str) -> str | None:
    """Why CMEK cannot protect this job, or None when it can (SPEC: CMEK only in us-central1)."""
    why: list[str] = []
    if not profile.cmek_supported:
        why.append(f"{profile.name} tuning has no CMEK (it runs in {profile.tuning_region})")
    if pipeline != CMEK_REGION:
        why.append(f"the pipeline region is {pipeline}, not {CMEK_REGION}")
    if upload != CMEK_REGION:
        why.append(f"the model upload region (location) is {upload}, not {CMEK_REGION}")
    if not why:
        return None
    return (
        " and ".join(why) + f" — CMEK needs GPU tuning with the pipeline and model upload in "
        f"{CMEK_REGION}"
    )


# --- Resolution ----------------------------------------------------------------------------------


@dataclass
class _Common:
    """What every accelerator candidate shares."""

    settings: Settings
    overrides: _Overrides
    given: set[str]
    usage: PolicyUsage
    dataset_uri: str
    dataset_examples: int
    eval_uri: str | None
    eval_examples: int | None
    pipeline_region: str
    upload_region: str
    teacher: str
    student: str
    model_display_name: str
    output_directory: str
    tensorboard: str | None
    service_account: str | None
    region_reasons: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    #: The validator's warnings about the overrides, listed last.
    notes: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


@dataclass
class _Candidate:
    """One accelerator's resolution: its spec, reasons and the refusals specific to it."""

    spec: JobSpec
    reasons: list[str]
    refusals: list[str]


def resolve(
    request: LaunchRequest,
    settings: Settings,
    *,
    dataset_examples: int,
    eval_examples: int | None,
    usage: PolicyUsage = PolicyUsage(),
) -> Plan:
    """Resolve ``request`` under SPEC.md and the organisation's policy in ``settings``.

    Pure: no I/O. Override values are checked by :func:`distillery.validation.validate_config`
    (its findings become refusals) and typed here. Accelerator choice: an ``accelerator_type``
    override is honoured or refused, never changed; otherwise the accelerators of
    ``DISTILLERY_ACCELERATORS`` are tried in order and the first that satisfies every constraint
    wins (``reasons`` says why earlier ones were skipped). A refused plan still carries the spec
    and body of the preferred accelerator, so the refusal can be recorded with what was asked.

    Raises:
        ConfigurationError: the project or the bucket (for the output directory) is not set.
    """
    settings.require("project", "bucket")
    common = _resolve_common(request, settings, dataset_examples, eval_examples, usage)

    if common.overrides.accelerator_type is not None:
        names: tuple[str, ...] = (common.overrides.accelerator_type,)
        origin = "requested by the accelerator_type override"
    else:
        names = settings.accelerator_list
        env = Settings.env_name("accelerators")
        origin = "the default" if names == ("GPU",) else f"first choice of {env}={','.join(names)}"
    candidates = [_resolve_candidate(ACCELERATORS[name], common) for name in names]

    chosen = next((c for c in candidates if not c.refusals), None)
    refusals = list(common.refusals)
    skipped_reasons: list[str] = []
    if chosen is not None:
        for skipped in candidates[: candidates.index(chosen)]:
            skipped_reasons.append(
                f"accelerator {skipped.spec.accelerator_type} skipped: "
                + "; ".join(skipped.refusals)
            )
        if chosen is not candidates[0]:
            origin = f"the first of {','.join(names)} that satisfies every constraint"
    else:
        chosen = candidates[0]
        for candidate in candidates:
            prefix = f"accelerator {candidate.spec.accelerator_type}: " if len(names) > 1 else ""
            refusals.extend(prefix + refusal for refusal in candidate.refusals)
    spec = chosen.spec
    reasons = [
        *common.region_reasons,
        *skipped_reasons,
        f"accelerator {spec.accelerator_type}: {origin}; tuning runs in {spec.tuning_region} "
        f"on {spec.accelerator_description}",
        *common.reasons,
        *chosen.reasons,
        *common.notes,
    ]
    return Plan(
        spec=spec,
        reasons=reasons,
        refusals=refusals,
        request_body=build_request_body(spec),
    )


def _resolve_common(
    request: LaunchRequest,
    settings: Settings,
    dataset_examples: int,
    eval_examples: int | None,
    usage: PolicyUsage,
) -> _Common:
    has_eval = request.eval_dataset_uri is not None
    checked = _validated_overrides(request.overrides, has_eval)
    overrides, parse_refusals, given = _parse_overrides(checked.values, checked.flagged)
    refusals = [*checked.refusals, *parse_refusals]

    # Regions.
    pipeline = settings.region
    refusals.extend(_region_refusals("pipeline region", pipeline, settings))
    upload = overrides.location or pipeline
    refusals.extend(_region_refusals("model upload region", upload, settings))
    region_reasons = [
        f"pipeline region {pipeline}: {Settings.env_name('region')} (where the pipeline runs)",
        f"model upload region {upload}: "
        + ("the location override" if overrides.location else "the pipeline region (no location)"),
    ]
    reasons: list[str] = []

    # Dataset.
    dataset_uri = request.dataset_uri or ""
    if not dataset_uri:
        refusals.append("the request names no dataset (dataset_uri)")
    if dataset_examples < 1:
        refusals.append(f"the dataset has {dataset_examples} examples; it needs at least 1")
    elif dataset_examples > MAX_DATASET_EXAMPLES:
        refusals.append(
            f"the dataset has {dataset_examples} examples; SPEC allows at most "
            f"{MAX_DATASET_EXAMPLES}"
        )

    # Evaluation data.
    eval_uri = request.eval_dataset_uri
    if eval_uri is None:
        for name in EVAL_PARAMETERS:
            if name in given and name not in checked.flagged:
                refusals.append(
                    f"override {name} needs eval data, and the request has no eval set "
                    "(add <name>.eval.jsonl next to the training set, or drop the override)"
                )
    elif eval_examples is not None and not (
        EVAL_EXAMPLES_RANGE[0] <= eval_examples <= EVAL_EXAMPLES_RANGE[1]
    ):
        refusals.append(
            f"the eval set has {eval_examples} examples; SPEC wants between "
            f"{EVAL_EXAMPLES_RANGE[0]} and {EVAL_EXAMPLES_RANGE[1]}"
        )

    # Steps (the limit on explicit values; chosen values are capped per candidate).
    max_steps = settings.max_train_steps
    if max_steps and overrides.train_steps is not None and overrides.train_steps > max_steps:
        refusals.append(
            f"train_steps {overrides.train_steps} is above "
            f"{Settings.env_name('max_train_steps')}={max_steps}"
        )

    # Concurrency.
    max_jobs = settings.max_concurrent_jobs
    if max_jobs and usage.running_jobs >= max_jobs:
        refusals.append(
            f"{usage.running_jobs} jobs are active and {Settings.env_name('max_concurrent_jobs')}"
            f"={max_jobs}: launch again when one finishes"
        )

    # TensorBoard.
    tensorboard = overrides.tensorboard_resource_id
    if tensorboard is not None:
        match = _TENSORBOARD.match(tensorboard)
        if match is None:
            refusals.append(
                f"tensorboard_resource_id {tensorboard!r} is not a TensorBoard resource name "
                "(projects/PROJECT/locations/REGION/tensorboards/ID)"
            )
        elif match["location"] != pipeline:
            refusals.append(
                f"the TensorBoard is in {match['location']}; it must be in the pipeline "
                f"region {pipeline} (SPEC)"
            )
        else:
            reasons.append(f"TensorBoard {tensorboard}: in the pipeline region, as SPEC requires")

    # Models, names, identity.
    teacher = overrides.teacher_model_reference or settings.teacher_model
    student = overrides.student_model_reference or settings.student_model
    for role, value, key, env in (
        ("teacher", teacher, "teacher_model_reference", "teacher_model"),
        ("student", student, "student_model_reference", "student_model"),
    ):
        source = f"the {key} override" if key in given else Settings.env_name(env)
        reasons.append(f"{role} {value}: {source}")
    if overrides.model_display_name:
        model_name = overrides.model_display_name
        reasons.append(f"model display name {model_name}: the model_display_name override")
    else:
        model_name = default_model_display_name(dataset_uri)
        base = dataset_uri.rsplit("/", 1)[-1] or "(none)"
        reasons.append(f"model display name {model_name}: derived from the dataset file {base}")
    output = f"gs://{settings.bucket}/{settings.pipeline_root_prefix}{_slug(model_name) or 'job'}"
    reasons.append(
        f"output directory {output}: the pipeline root for this model; Vertex AI writes each "
        "run under <root>/<project number>/<pipelineJobId>/"
    )
    service_account = overrides.service_account or settings.service_account or None
    if service_account is None:
        reasons.append(
            "service account: the project's Compute Engine default "
            f"(no override, {Settings.env_name('service_account')} unset), so none is sent"
        )
    else:
        source = "the override" if overrides.service_account else "configured"
        reasons.append(f"service account {service_account}: {source}")

    return _Common(
        settings=settings,
        overrides=overrides,
        given=given,
        usage=usage,
        dataset_uri=dataset_uri,
        dataset_examples=dataset_examples,
        eval_uri=eval_uri,
        eval_examples=eval_examples if eval_uri is not None else None,
        pipeline_region=pipeline,
        upload_region=upload,
        teacher=teacher,
        student=student,
        model_display_name=model_name,
        output_directory=output,
        tensorboard=tensorboard,
        service_account=service_account,
        region_reasons=region_reasons,
        reasons=reasons,
        notes=checked.notes,
        refusals=refusals,
    )


def _resolve_candidate(profile: AcceleratorProfile, common: _Common) -> _Candidate:
    settings = common.settings
    overrides = common.overrides
    reasons: list[str] = []
    refusals = _region_refusals(f"{profile.name} tuning region", profile.tuning_region, settings)

    # Batch size.
    long_context = common.student in settings.long_context_student_list
    batch = batch_size(common.student, profile.tuning_region, settings.long_context_student_list)
    context = "32k" if long_context else "8k"
    where = (
        "in every tuning region" if long_context else f"and tuning runs in {profile.tuning_region}"
    )
    article = "a" if long_context else "an"
    reasons.append(f"batch size {batch}: {common.student} has {article} {context} context {where}")

    # Steps.
    steps, steps_reason = _train_steps(overrides, common, batch)
    reasons.append(steps_reason)

    # Epochs.
    seen = steps * batch
    epochs = round(seen / common.dataset_examples, 4) if common.dataset_examples > 0 else 0.0
    reasons.append(
        f"epochs {epochs:g}: {steps} steps x {batch} = {seen} examples seen / "
        f"{common.dataset_examples} examples"
    )

    # Learning rate.
    lr = overrides.learning_rate_multiplier
    if lr is None:
        lr = DEFAULT_LEARNING_RATE_MULTIPLIER
        reasons.append(f"learning rate multiplier {lr!r}: the default")
    else:
        reasons.append(f"learning rate multiplier {lr!r}: the learning_rate_multiplier override")

    # Evaluation.
    interval: int | None = None
    early: bool | None = None
    selection: str | None = None
    if common.eval_uri is not None:
        interval = overrides.evaluation_interval or DEFAULT_EVALUATION_INTERVAL
        early = (
            DEFAULT_ENABLE_EARLY_STOPPING
            if overrides.enable_early_stopping is None
            else overrides.enable_early_stopping
        )
        selection = overrides.enable_checkpoint_selection or DEFAULT_CHECKPOINT_SELECTION

        def origin(name: str) -> str:
            return "override" if name in common.given else "default"

        reasons.append(
            f"evaluation on {common.eval_uri}: every {interval} steps "
            f"({origin('evaluation_interval')}), early stopping "
            f"{'on' if early else 'off'} ({origin('enable_early_stopping')}), checkpoint "
            f"selection {selection!r} ({origin('enable_checkpoint_selection')})"
        )
        if interval > steps:
            reasons.append(
                f"note: evaluation_interval {interval} is above train_steps {steps}, so the "
                "model is evaluated at most once"
            )
    else:
        reasons.append("no evaluation: no eval data, so no eval parameter is sent")

    # Encryption.
    cmek, cmek_reason, cmek_refusals = _encryption(profile, common)
    reasons.append(cmek_reason)
    refusals.extend(cmek_refusals)

    # Cost.
    hours = estimate_accelerator_hours(profile, steps, interval)
    reasons.append(
        f"estimated accelerator-hours {hours:g}: ({PIPELINE_OVERHEAD_HOURS:g} h overhead + "
        f"{steps} steps x {profile.seconds_per_step:g} s"
        + (
            f" + {steps // interval} evaluations x {EVALUATION_PASS_SECONDS:g} s"
            if interval
            else ""
        )
        + f") x {profile.count} accelerators (a planning estimate)"
    )
    budget = settings.daily_accelerator_hours
    spent = common.usage.accelerator_hours_today
    if budget and spent + hours > budget:
        refusals.append(
            f"the daily budget would be exceeded: {spent:g} accelerator-hours used today + "
            f"{hours:g} for this job > {Settings.env_name('daily_accelerator_hours')}={budget:g}"
        )

    spec = JobSpec(
        project=settings.project,
        pipeline_region=common.pipeline_region,
        model_upload_region=common.upload_region,
        tuning_region=profile.tuning_region,
        accelerator_type=profile.name,
        accelerator_count=profile.count,
        accelerator_description=profile.description,
        dataset_uri=common.dataset_uri,
        dataset_examples=common.dataset_examples,
        task=overrides.task,
        teacher_model_reference=common.teacher,
        student_model_reference=common.student,
        student_context=context,
        batch_size=batch,
        train_steps=steps,
        examples_seen=seen,
        epochs=epochs,
        learning_rate_multiplier=lr,
        evaluation_data_uri=common.eval_uri,
        eval_examples=common.eval_examples,
        evaluation_interval=interval,
        enable_early_stopping=early,
        enable_checkpoint_selection=selection,
        tensorboard_resource_id=common.tensorboard,
        cmek_key=cmek,
        service_account=common.service_account,
        model_display_name=common.model_display_name,
        display_name=common.model_display_name,
        output_directory=common.output_directory,
        template_uri=settings.template_uri,
        estimated_accelerator_hours=hours,
    )
    return _Candidate(spec=spec, reasons=reasons, refusals=refusals)


def _train_steps(overrides: _Overrides, common: _Common, batch: int) -> tuple[int, str]:
    """The steps and the sentence explaining them (explicit values are limited elsewhere)."""
    task = overrides.task
    task_range = TASK_STEP_RANGES.get(task or "")
    if overrides.train_steps is not None:
        steps = overrides.train_steps
        reason = f"train steps {steps}: the train_steps override"
        if task_range and not task_range[0] <= steps <= task_range[1]:
            reason += (
                f" (note: outside the {task_range[0]}-{task_range[1]} SPEC recommends for {task})"
            )
        return steps, reason
    if task_range and task is not None:
        steps = choose_train_steps(task, common.dataset_examples, batch)
        wanted = math.ceil(TARGET_EPOCHS * max(common.dataset_examples, 0) / batch)
        reason = (
            f"train steps {steps}: task {task} aims at {TARGET_EPOCHS:g} epochs "
            f"(ceil({TARGET_EPOCHS:g} x {common.dataset_examples} / {batch}) = {wanted}), "
            f"kept within the recommended {task_range[0]}-{task_range[1]}"
        )
    else:
        steps = DEFAULT_TRAIN_STEPS
        why = f"task {task} has no recommended range" if task else "no train_steps and no task"
        reason = f"train steps {steps}: the default ({why})"
    max_steps = common.settings.max_train_steps
    if max_steps and steps > max_steps:
        reason += f"; capped to {max_steps} by {Settings.env_name('max_train_steps')}"
        steps = max_steps
    return steps, reason


def _encryption(profile: AcceleratorProfile, common: _Common) -> tuple[str | None, str, list[str]]:
    """(the CMEK key or None, the reason, the refusals) for one accelerator candidate."""
    settings = common.settings
    requested = common.overrides.encryption_spec_key_name
    key = requested or settings.cmek_key or None
    unavailable = _cmek_unavailable(profile, common.pipeline_region, common.upload_region)
    refusals: list[str] = []
    if requested and unavailable:
        refusals.append(f"CMEK was requested (encryption_spec_key_name) but {unavailable}")
    if settings.require_cmek:
        env = Settings.env_name("require_cmek")
        if unavailable:
            refusals.append(f"{env} is set but {unavailable}")
        elif key is None:
            refusals.append(
                f"{env} is set but no key is given: set the encryption_spec_key_name override "
                f"or {Settings.env_name('cmek_key')}"
            )
    if unavailable or key is None:
        if requested:
            reason = "encryption: the requested CMEK key cannot be used here (see refusals)"
        elif key:
            reason = (
                f"encryption: Google-managed key; the default {Settings.env_name('cmek_key')} "
                f"is not used because {unavailable}"
            )
        else:
            reason = "encryption: Google-managed key (no CMEK key given)"
        return None, reason, refusals
    match = _KMS_KEY.match(key)
    if match is None:
        refusals.append(
            f"the CMEK key {key!r} is not a Cloud KMS key name "
            "(projects/P/locations/L/keyRings/R/cryptoKeys/K)"
        )
    elif match["location"] != CMEK_REGION:
        refusals.append(
            f"the CMEK key is in {match['location']}; it must be in {CMEK_REGION} with the job"
        )
    source = "the encryption_spec_key_name override" if requested else "the default key"
    return (
        key,
        f"encryption: CMEK with {source} (GPU, pipeline and model upload in {CMEK_REGION})",
        refusals,
    )


def _slug(text: str) -> str:
    """Lower-case letters, digits and single dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
