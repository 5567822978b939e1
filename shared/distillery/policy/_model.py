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
    """What :func:`~distillery.policy.resolve` answers: the spec, why, what forbids it, the body."""

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
