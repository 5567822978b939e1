"""The policy's public types: what it is told (usage), resolves (spec) and answers (plan)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PolicyUsage:
    """What is already running or spent today (the launcher counts it from the job records)."""

    running_jobs: int = 0
    accelerator_hours_today: float = 0.0
    #: The estimated tuning cost (USD) of today's gemini jobs.
    tuning_usd_today: float = 0.0


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
class GeminiJobSpec:
    """Every resolved value of one gemini-backend job: a Vertex AI supervised tuning job."""

    project: str
    #: Where the tuning job is created, runs, and keeps its tuned model.
    tuning_region: str
    base_model: str
    dataset_uri: str
    dataset_examples: int
    #: The training tokens of one epoch: the dataset record's count, or an estimate.
    dataset_tokens: int
    #: Whether :attr:`dataset_tokens` was counted by validation (False: estimated from examples).
    dataset_tokens_counted: bool
    validation_dataset_uri: str | None
    eval_examples: int | None
    epoch_count: int
    learning_rate_multiplier: float
    adapter_size: str | None
    task: str | None
    cmek_key: str | None
    service_account: str | None
    tuned_model_display_name: str
    #: The value of the job-id label (the job id, shortened to a valid label value).
    job_label: str
    estimated_cost_usd: float
    #: Always "gemini" (so a recorded spec says its backend).
    backend: str = "gemini"
    #: ``supervised`` (v1 ``supervisedTuningSpec``) or ``distillation`` (v1beta1
    #: ``distillationSpec``: the teacher writes the responses to the dataset's prompts).
    tuning_mode: str = "supervised"
    #: The distillation mode's ``baseTeacherModel`` (None in supervised mode).
    teacher_model: str | None = None
    #: The Vertex AI API version the job is created, read, listed and cancelled through.
    api_version: str = "v1"
    #: The labeling stage (``LabelingSpec.to_dict()``): the teacher labels and explains the
    #: training set before tuning, which then trains on its ``training_uri``. None: no labeling.
    labeling: dict[str, Any] | None = None


@dataclass(frozen=True)
class Plan:
    """What :func:`~distillery.policy.resolve` answers: the spec, why, what forbids it, the body.

    ``spec`` is a :class:`JobSpec` (``pipeline`` backend: the body is a ``pipelineJobs.create``
    body) or a :class:`GeminiJobSpec` (``gemini``: a ``tuningJobs.create`` body, and for a job
    whose teacher labels its training set the ``labeling`` spec and ``labeling_body``).
    """

    spec: JobSpec | GeminiJobSpec
    reasons: list[str]
    refusals: list[str]
    request_body: dict[str, Any]
    #: A gemini job's labeling stage (``LabelingSpec.to_dict()``), None when it does not label.
    labeling: dict[str, Any] | None = None
    #: The frozen ``batchPredictionJobs.create`` body of the labeling run (None: no labeling).
    labeling_body: dict[str, Any] | None = None

    @property
    def accepted(self) -> bool:
        """Whether the job may be submitted (no refusal)."""
        return not self.refusals

    @property
    def backend(self) -> str:
        """``pipeline`` or ``gemini``."""
        return "gemini" if isinstance(self.spec, GeminiJobSpec) else "pipeline"

    @property
    def location(self) -> str:
        """The region the job is created in (the pipeline region, or the tuning region)."""
        if isinstance(self.spec, GeminiJobSpec):
            return self.spec.tuning_region
        return self.spec.pipeline_region

    @property
    def api_version(self) -> str:
        """The Vertex AI API version the job is created through (v1beta1: distillation)."""
        return self.spec.api_version if isinstance(self.spec, GeminiJobSpec) else "v1"

    @property
    def estimated_accelerator_hours(self) -> float:
        """The pipeline's planning estimate (0 for a gemini job, which is billed by token)."""
        return (
            0.0 if isinstance(self.spec, GeminiJobSpec) else self.spec.estimated_accelerator_hours
        )

    @property
    def estimated_cost_usd(self) -> float:
        """The gemini job's planning cost, labeling included (0 for a pipeline job, budgeted in
        hours)."""
        return self.spec.estimated_cost_usd if isinstance(self.spec, GeminiJobSpec) else 0.0

    def spec_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict (for records and ``--json``)."""
        return dataclasses.asdict(self.spec)
