"""One settings object, built from the environment.

Every environment variable the product reads is named exactly once, in :data:`ENVIRONMENT`.
Explicit arguments beat the environment: build :class:`Settings` directly in tests and tools.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from distillery.core.errors import ConfigurationError
from distillery.facts import (
    ACCELERATOR_TYPES,
    DEFAULT_ACCELERATOR,
    DEFAULT_GEMINI_DISTILLATION_TEACHER,
    DEFAULT_GEMINI_TEACHER_MODEL,
    DEFAULT_GEMINI_TUNING_MODE,
    DEFAULT_LONG_CONTEXT_STUDENTS,
    DEFAULT_STUDENT_MODEL,
    DEFAULT_TEACHER_MODEL,
    GEMINI_DISTILLATION_TEACHERS,
    GEMINI_TEACHER_MODELS,
    GEMINI_TUNING_MODES,
    GEMINI_TUNING_REGIONS,
    SUPPORTED_REGIONS,
    TEMPLATE_URI,
)

#: The backends a job may run on (``DISTILLERY_BACKEND``, the ``backend`` override): ``pipeline``
#: is the seed's Vertex AI distillation pipeline (pipelineJobs), ``gemini`` Gemini supervised
#: tuning (tuningJobs), what runs on Google Cloud today.
BACKENDS: tuple[str, ...] = ("pipeline", "gemini")
#: The backend that runs on Google Cloud today: PaLM 2 and the ``distillation/v1.0.0`` pipeline
#: template were shut down on 2025-04-09, so a pipeline job there starts nothing that succeeds.
DEFAULT_BACKEND = "gemini"

#: Data-residency areas (``DISTILLERY_DATA_RESIDENCY``) → the region-name prefixes inside each.
#: Under a residency, every region a job touches (pipeline, model upload, tuning) must match.
DATA_RESIDENCY_AREAS: dict[str, tuple[str, ...]] = {
    "eu": ("europe-",),
    "us": ("us-",),
    "north-america": ("us-", "northamerica-"),
    "asia": ("asia-",),
}

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _env(name: str, **kwargs: Any) -> Any:
    """A dataclass field read from environment variable ``name``."""
    metadata = {"env": name}
    return field(metadata=metadata, **kwargs)


#: Promotion gates a dataset's config sidecar (or a rerun's ``--set``) may set for its own jobs,
#: in place of the ``DISTILLERY_*`` setting of the same name. The override schema
#: (:mod:`distillery.overrides`) reads them with the job parameters.
PROMOTION_GATE_KEYS: tuple[str, ...] = (
    "min_eval_accuracy",
    "max_eval_loss",
    "min_eval_predictions",
    "promotion_margin",
)

#: The thresholds of Distillery's own evaluation on the family's golden set, which a config
#: sidecar or a rerun's ``--set`` may set for its jobs too. Unlike the gates above they need no
#: eval set (the golden set may be the user's ``datasets/<name>.golden.jsonl``).
EVALUATION_GATE_KEYS: tuple[str, ...] = (
    "min_task_score",
    "promotion_tolerance",
    "max_class_regression",
    "promotion_confidence",
    "bootstrap_resamples",
)


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the production defaults of ARCHITECTURE.md."""

    project: str = _env("GOOGLE_CLOUD_PROJECT", default="")
    bucket: str = _env("DISTILLERY_BUCKET", default="")
    region: str = _env("DISTILLERY_REGION", default="us-central1")
    #: Unset in production; the local Vertex AI emulator's URL locally.
    vertex_api_endpoint: str = _env("DISTILLERY_VERTEX_API_ENDPOINT", default="")

    launch_topic: str = _env("DISTILLERY_LAUNCH_TOPIC", default="distill-launch-requests")
    job_events_topic: str = _env("DISTILLERY_JOB_EVENTS_TOPIC", default="distill-job-events")
    status_topic: str = _env("DISTILLERY_STATUS_TOPIC", default="distill-job-status")

    datasets_collection: str = _env("DISTILLERY_DATASETS_COLLECTION", default="datasets")
    jobs_collection: str = _env("DISTILLERY_JOBS_COLLECTION", default="jobs")
    models_collection: str = _env("DISTILLERY_MODELS_COLLECTION", default="models")
    #: Events that could not be parsed at all are recorded here (then acknowledged).
    failures_collection: str = _env("DISTILLERY_FAILURES_COLLECTION", default="failed_events")
    #: Where ``reconcile`` keeps its cursor between runs (one document).
    reconcile_collection: str = _env("DISTILLERY_RECONCILE_COLLECTION", default="reconcile")

    datasets_prefix: str = _env("DISTILLERY_DATASETS_PREFIX", default="datasets/")
    validated_prefix: str = _env("DISTILLERY_VALIDATED_PREFIX", default="validated/")
    reports_prefix: str = _env("DISTILLERY_REPORTS_PREFIX", default="reports/")
    pipeline_root_prefix: str = _env("DISTILLERY_PIPELINE_ROOT_PREFIX", default="pipeline-root/")

    #: How many findings of one rule a report lists before it only counts the rest.
    max_findings_per_rule: int = _env("DISTILLERY_MAX_FINDINGS_PER_RULE", default=20)
    #: A claim on a dataset's launch older than this is taken over by a redelivered event.
    launch_claim_seconds: int = _env("DISTILLERY_LAUNCH_CLAIM_SECONDS", default=30)
    #: A job still REQUESTED this long after its last write is resumed by ``reconcile`` (submitted
    #: with its frozen plan, or adopted from Vertex AI); above launch_job's timeout, so a delivery
    #: still working on the job is never raced.
    requested_lease_seconds: int = _env("DISTILLERY_REQUESTED_LEASE_SECONDS", default=600)
    #: How long one ``reconcile`` run works (below its function's timeout); what it did not reach
    #: is taken up where it stopped on the next run.
    reconcile_budget_seconds: float = _env("DISTILLERY_RECONCILE_BUDGET_SECONDS", default=240.0)

    log_level: str = _env("DISTILLERY_LOG_LEVEL", default="INFO")

    # --- Launch policy (read by distillery.policy; SPEC "Regions and accelerators") -------------
    #: The backend a job runs on unless its ``backend`` override names the other (BACKENDS).
    backend: str = _env("DISTILLERY_BACKEND", default=DEFAULT_BACKEND)
    #: The distillation pipeline template sent as ``templateUri``.
    template_uri: str = _env(
        "DISTILLERY_TEMPLATE_URI",
        default=TEMPLATE_URI,
    )
    #: Default teacher and student (an override ``teacher_model_reference`` /
    #: ``student_model_reference`` wins); configuration, never hard-wired.
    teacher_model: str = _env("DISTILLERY_TEACHER_MODEL", default=DEFAULT_TEACHER_MODEL)
    student_model: str = _env("DISTILLERY_STUDENT_MODEL", default=DEFAULT_STUDENT_MODEL)
    #: Comma-separated students with a 32k context; every other student is treated as an
    #: 8k-context model (the batch sizes of each are distillery.facts.batch_size's).
    long_context_students: str = _env(
        "DISTILLERY_LONG_CONTEXT_STUDENTS", default=",".join(DEFAULT_LONG_CONTEXT_STUDENTS)
    )
    #: Comma-separated accelerators in order of preference: the first that satisfies every
    #: constraint is used. An explicit ``accelerator_type`` override bypasses this list.
    accelerators: str = _env("DISTILLERY_ACCELERATORS", default=DEFAULT_ACCELERATOR)
    #: Comma-separated regions a job may touch (pipeline, model upload and tuning region);
    #: empty means every supported region.
    allowed_regions: str = _env("DISTILLERY_ALLOWED_REGIONS", default="")
    #: Empty, or a key of DATA_RESIDENCY_AREAS: every region a job touches must lie in that area.
    data_residency: str = _env("DISTILLERY_DATA_RESIDENCY", default="")
    #: Default Cloud KMS key for CMEK, used when CMEK applies (GPU, everything in the CMEK region
    #: of distillery.facts); an ``encryption_spec_key_name`` override wins.
    cmek_key: str = _env("DISTILLERY_CMEK_KEY", default="")
    #: Refuse every job that would not be encrypted with a customer-managed key.
    require_cmek: bool = _env("DISTILLERY_REQUIRE_CMEK", default=False)
    #: The service account jobs run as; empty: a tuning job runs as the Vertex AI Secure
    #: Fine-Tuning Service Agent, a pipeline job as the project's Compute Engine default.
    service_account: str = _env("DISTILLERY_SERVICE_ACCOUNT", default="")
    #: Refuse a launch while this many jobs are active (0: no limit).
    max_concurrent_jobs: int = _env("DISTILLERY_MAX_CONCURRENT_JOBS", default=0)
    #: Refuse an explicit ``train_steps`` above this; chosen values are capped to it (0: no limit).
    max_train_steps: int = _env("DISTILLERY_MAX_TRAIN_STEPS", default=0)
    #: Daily budget in estimated accelerator-hours (A100-hours or TPU-v3-core-hours; 0: none).
    daily_accelerator_hours: float = _env("DISTILLERY_DAILY_ACCELERATOR_HOURS", default=0.0)
    #: Daily budget of the gemini backend in estimated tuning cost, USD (0: none).
    daily_tuning_usd: float = _env("DISTILLERY_DAILY_TUNING_USD", default=0.0)
    #: The gemini backend's tuning mode unless a ``tuning_mode`` override names the other
    #: (GEMINI_TUNING_MODES): ``supervised``, or ``distillation`` (v1beta1, allowlisted projects).
    tuning_mode: str = _env("DISTILLERY_TUNING_MODE", default=DEFAULT_GEMINI_TUNING_MODE)
    #: The teacher of the distillation mode unless a ``teacher_model`` override names another
    #: (GEMINI_DISTILLATION_TEACHERS).
    gemini_teacher_model: str = _env(
        "DISTILLERY_GEMINI_TEACHER_MODEL", default=DEFAULT_GEMINI_DISTILLATION_TEACHER
    )
    #: The teacher that labels (and explains) a supervised job's training set through batch
    #: prediction, unless a ``teacher_model`` override names another (GEMINI_TEACHER_MODELS).
    labeling_teacher_model: str = _env(
        "DISTILLERY_LABELING_TEACHER_MODEL", default=DEFAULT_GEMINI_TEACHER_MODEL
    )
    #: A labeling job goes on to tuning only if at least this fraction of its examples came back
    #: labeled with a rationale (above 0, at most 1; a ``min_labeled_fraction`` override wins).
    labeling_min_fraction: float = _env("DISTILLERY_LABELING_MIN_FRACTION", default=0.9)
    #: The fraction of the labeled examples that also give an ``explain:`` rationale task (0 to 1;
    #: 1: every one; a ``rationale_mixture`` override wins).
    rationale_mixture: float = _env("DISTILLERY_RATIONALE_MIXTURE", default=1.0)

    # --- Promotion (read by distillery.services.promoter; SPEC "After the job") -------------------
    #: Minimum ``eval_fraction_of_correct_next_step_preds`` (eval token accuracy, 0 to 1).
    min_eval_accuracy: float = _env("DISTILLERY_MIN_EVAL_ACCURACY", default=0.0)
    #: Maximum ``eval_total_loss`` (0: no maximum).
    max_eval_loss: float = _env("DISTILLERY_MAX_EVAL_LOSS", default=0.0)
    #: Minimum ``eval_num_predictions`` (eval target tokens scored), so a model is never judged
    #: on a tiny evaluation set (0: no minimum).
    min_eval_predictions: int = _env("DISTILLERY_MIN_EVAL_PREDICTIONS", default=0)
    #: How much a model must beat the champion by to replace it (never worse): the mean paired
    #: difference of the task metric on the golden set, and the eval token accuracy where the
    #: service reports it.
    promotion_margin: float = _env("DISTILLERY_PROMOTION_MARGIN", default=0.0)
    #: The golden set's task metric (accuracy, ROUGE-L, token F1) every model must reach.
    min_task_score: float = _env("DISTILLERY_MIN_TASK_SCORE", default=0.0)
    #: How far below zero the paired difference's confidence interval may reach: the lower bound
    #: must be at least minus this (0: the interval must not reach below zero).
    promotion_tolerance: float = _env("DISTILLERY_PROMOTION_TOLERANCE", default=0.02)
    #: How much any one class's accuracy may drop against the champion (classification).
    max_class_regression: float = _env("DISTILLERY_MAX_CLASS_REGRESSION", default=0.1)
    #: The confidence level of the paired-bootstrap interval.
    promotion_confidence: float = _env("DISTILLERY_PROMOTION_CONFIDENCE", default=0.95)
    #: How many bootstrap resamples the interval is computed from.
    bootstrap_resamples: int = _env("DISTILLERY_BOOTSTRAP_RESAMPLES", default=2000)
    #: The seed of the resampling: the same answers always give the same interval.
    bootstrap_seed: int = _env("DISTILLERY_BOOTSTRAP_SEED", default=0)
    #: Promote a model that has no eval metrics (it still never replaces a champion that has).
    promote_without_eval: bool = _env("DISTILLERY_PROMOTE_WITHOUT_EVAL", default=False)
    #: A promoted model's share of its endpoint's traffic while the champion keeps the rest
    #: (0: all of it; the first model of an endpoint always takes all of it).
    canary_percent: int = _env("DISTILLERY_CANARY_PERCENT", default=0)
    #: Seconds one promote_model call waits for a deployment before it returns (its operation
    #: recorded on the job, finished by a redelivery or reconcile): below the function's timeout.
    promote_budget_seconds: float = _env("DISTILLERY_PROMOTE_BUDGET_SECONDS", default=240.0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``); ``overrides`` win.

        Raises:
            ConfigurationError: a variable holds a value of the wrong type.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata["env"]
            if name not in environ or environ[name] == "":
                continue
            raw = environ[name]
            if f.type in ("int", int):
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
            elif f.type in ("float", float):
                try:
                    values[f.name] = float(raw)
                except ValueError:
                    raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
            elif f.type in ("bool", bool):
                flag = raw.strip().lower()
                if flag not in _TRUE | _FALSE:
                    raise ConfigurationError(
                        f"{name} must be true or false (or 1/0, yes/no, on/off), got {raw!r}"
                    )
                values[f.name] = flag in _TRUE
            else:
                values[f.name] = raw
        values.update(overrides)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise :class:`ConfigurationError` when a value breaks a rule."""
        for f in dataclasses.fields(self):
            if f.name.endswith("_prefix"):
                value = getattr(self, f.name)
                if not value.endswith("/") or value.startswith("/"):
                    raise ConfigurationError(
                        f"{f.metadata['env']} must be a folder like 'datasets/', got {value!r}"
                    )
        written = [self.validated_prefix, self.reports_prefix, self.pipeline_root_prefix]
        for prefix in written:
            if prefix.startswith(self.datasets_prefix) or self.datasets_prefix.startswith(prefix):
                raise ConfigurationError(
                    f"the prefix {prefix!r} overlaps the watched {self.datasets_prefix!r}: "
                    "a function must never write where it is triggered"
                )
        if self.backend not in BACKENDS:
            raise ConfigurationError(
                f"DISTILLERY_BACKEND must be one of {', '.join(BACKENDS)}, got {self.backend!r}"
            )
        if self.tuning_mode not in GEMINI_TUNING_MODES:
            raise ConfigurationError(
                f"DISTILLERY_TUNING_MODE must be one of {', '.join(GEMINI_TUNING_MODES)}, "
                f"got {self.tuning_mode!r}"
            )
        if self.gemini_teacher_model not in GEMINI_DISTILLATION_TEACHERS:
            raise ConfigurationError(
                "DISTILLERY_GEMINI_TEACHER_MODEL must be a teacher of the distillation mode: "
                f"{', '.join(GEMINI_DISTILLATION_TEACHERS)}, got {self.gemini_teacher_model!r}"
            )
        if self.labeling_teacher_model not in GEMINI_TEACHER_MODELS:
            raise ConfigurationError(
                "DISTILLERY_LABELING_TEACHER_MODEL must be a Gemini teacher model: "
                f"{', '.join(GEMINI_TEACHER_MODELS)}, got {self.labeling_teacher_model!r}"
            )
        if not 0.0 < self.labeling_min_fraction <= 1.0:
            raise ConfigurationError(
                "DISTILLERY_LABELING_MIN_FRACTION must be above 0 and at most 1, got "
                f"{self.labeling_min_fraction!r}"
            )
        if not 0.0 <= self.rationale_mixture <= 1.0:
            raise ConfigurationError(
                f"DISTILLERY_RATIONALE_MIXTURE must be from 0 to 1, got {self.rationale_mixture!r}"
            )
        if self.region not in self.known_regions:
            raise ConfigurationError(
                f"DISTILLERY_REGION {self.region!r} is not a region the {self.backend} backend "
                f"runs in; use one of: {', '.join(self.known_regions)}"
            )
        if self.max_findings_per_rule < 1:
            raise ConfigurationError("DISTILLERY_MAX_FINDINGS_PER_RULE must be at least 1")
        self._check_launch_policy()
        self._check_promotion()

    def _check_promotion(self) -> None:
        """Raise :class:`ConfigurationError` when a promotion setting breaks a rule."""
        for name in (
            "min_eval_accuracy",
            "promotion_margin",
            "min_task_score",
            "promotion_tolerance",
            "max_class_regression",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigurationError(f"{self.env_name(name)} must be between 0 and 1")
        if not 0.5 <= self.promotion_confidence < 1.0:
            raise ConfigurationError(
                "DISTILLERY_PROMOTION_CONFIDENCE must be at least 0.5 and below 1"
            )
        if not 100 <= self.bootstrap_resamples <= 100_000:
            raise ConfigurationError("DISTILLERY_BOOTSTRAP_RESAMPLES must be 100 to 100000")
        for name in ("max_eval_loss", "min_eval_predictions"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{self.env_name(name)} must be 0 (no limit) or more")
        if self.promote_budget_seconds <= 0:
            raise ConfigurationError("DISTILLERY_PROMOTE_BUDGET_SECONDS must be above 0")
        if self.reconcile_budget_seconds <= 0:
            raise ConfigurationError("DISTILLERY_RECONCILE_BUDGET_SECONDS must be above 0")
        if not 0 <= self.canary_percent < 100:
            raise ConfigurationError(
                "DISTILLERY_CANARY_PERCENT must be 0 (full traffic) or a percentage below 100"
            )

    def _check_launch_policy(self) -> None:
        """Raise :class:`ConfigurationError` when a launch-policy setting breaks a rule."""
        accelerators = self.accelerator_list
        if not accelerators or any(a not in ACCELERATOR_TYPES for a in accelerators):
            raise ConfigurationError(
                f"DISTILLERY_ACCELERATORS must list some of {', '.join(ACCELERATOR_TYPES)} "
                f"in order of preference, got {self.accelerators!r}"
            )
        if len(set(accelerators)) != len(accelerators):
            raise ConfigurationError(
                f"DISTILLERY_ACCELERATORS repeats a type: {self.accelerators!r}"
            )
        unknown = [r for r in self.allowed_region_list if r not in self.known_regions]
        if unknown:
            raise ConfigurationError(
                f"DISTILLERY_ALLOWED_REGIONS names regions that are not {self.backend} backend "
                f"regions: {', '.join(unknown)}"
            )
        if self.data_residency and self.data_residency not in DATA_RESIDENCY_AREAS:
            raise ConfigurationError(
                f"DISTILLERY_DATA_RESIDENCY must be one of {', '.join(DATA_RESIDENCY_AREAS)} "
                f"(or empty), got {self.data_residency!r}"
            )
        for name in (
            "max_concurrent_jobs",
            "max_train_steps",
            "daily_accelerator_hours",
            "daily_tuning_usd",
        ):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{self.env_name(name)} must be 0 (no limit) or more")

    @property
    def known_regions(self) -> tuple[str, ...]:
        """The regions ``DISTILLERY_REGION`` and ``DISTILLERY_ALLOWED_REGIONS`` may name: the
        distillation regions, and with the gemini backend the tuning regions too (a job's
        ``backend`` override may still pick the pipeline, whose policy refuses a region it lacks).
        """
        if self.backend == "gemini":
            return (
                *SUPPORTED_REGIONS,
                *(r for r in GEMINI_TUNING_REGIONS if r not in SUPPORTED_REGIONS),
            )
        return SUPPORTED_REGIONS

    @property
    def long_context_student_list(self) -> tuple[str, ...]:
        """``DISTILLERY_LONG_CONTEXT_STUDENTS`` as a tuple."""
        return _split_list(self.long_context_students)

    @property
    def accelerator_list(self) -> tuple[str, ...]:
        """``DISTILLERY_ACCELERATORS`` as a tuple, upper-cased, in order of preference."""
        return tuple(a.upper() for a in _split_list(self.accelerators))

    @property
    def allowed_region_list(self) -> tuple[str, ...]:
        """``DISTILLERY_ALLOWED_REGIONS`` as a tuple; every supported region when empty."""
        return _split_list(self.allowed_regions) or SUPPORTED_REGIONS

    def require(self, *names: str) -> None:
        """Raise :class:`ConfigurationError` naming every empty setting among ``names``."""
        missing = [
            f.metadata["env"]
            for f in dataclasses.fields(self)
            if f.name in names and not getattr(self, f.name)
        ]
        if missing:
            raise ConfigurationError(f"required settings are not set: {', '.join(missing)}")

    @staticmethod
    def env_name(field_name: str) -> str:
        """The environment variable behind settings field ``field_name``."""
        for f in dataclasses.fields(Settings):
            if f.name == field_name:
                return str(f.metadata["env"])
        raise KeyError(field_name)


def _split_list(raw: str) -> tuple[str, ...]:
    """A comma-separated setting as a tuple of its non-empty, stripped items."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


#: Environment variable name → settings field, for tools that print or pass the environment.
ENVIRONMENT: dict[str, str] = {f.metadata["env"]: f.name for f in dataclasses.fields(Settings)}

#: The official clients' emulator variables (read by the clients themselves, not by us).
EMULATOR_VARIABLES: tuple[str, ...] = (
    "STORAGE_EMULATOR_HOST",
    "PUBSUB_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
)
