"""A request's overrides, read once with the override schema and typed for the resolver."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from distillery.overrides import PARAMETERS, Problem, check_overrides
from distillery.policy import _explain as explain


@dataclass(frozen=True)
class RequestedOverrides:
    """The job parameters a request overrides, typed; None means "not given".

    One field per job parameter of :data:`distillery.overrides.PARAMETERS` (the promotion gates
    are the promoter's business).
    """

    train_steps: int | None = None
    learning_rate_multiplier: float | None = None
    evaluation_interval: int | None = None
    enable_early_stopping: bool | None = None
    #: The template's string parameter: "default", "true" or "false".
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
    backend: str | None = None
    #: The gemini backend's: a GEMINI_TUNING_MODELS id, the epochs, an ADAPTER_SIZE_* name.
    base_model: str | None = None
    epoch_count: int | None = None
    adapter_size: str | None = None
    #: ``supervised`` or ``distillation``; the distillation mode's GEMINI_DISTILLATION_TEACHERS id.
    tuning_mode: str | None = None
    teacher_model: str | None = None
    #: Distilling step-by-step: ``teacher`` or ``none``; the labeling thresholds and prefixes.
    rationales: str | None = None
    min_labeled_fraction: float | None = None
    rationale_mixture: float | None = None
    label_task_prefix: str | None = None
    rationale_task_prefix: str | None = None


@dataclass(frozen=True)
class ReadOverrides:
    """What the schema made of a request's overrides."""

    values: RequestedOverrides
    #: The job parameters given (their values parsed, whether or not a rule refused them).
    given: frozenset[str]
    refusals: list[str] = field(default_factory=list)
    #: The schema's warnings, for the end of the reasons.
    notes: list[str] = field(default_factory=list)


def read_overrides(
    raw: Mapping[str, Any], *, has_eval: bool, backend: str | None = None
) -> ReadOverrides:
    """Read ``raw`` with :func:`distillery.overrides.check_overrides`; its errors are refusals.

    A value that parsed but broke its rule is kept (the schema's message is the refusal), so the
    policy's own rules still judge what was asked: a ``location`` outside the distillation
    regions is also refused as the model upload region. ``backend`` is the deployment's
    (``DISTILLERY_BACKEND``), for the schema's backend-specific rules. Raises nothing.
    """
    checked = check_overrides(raw, has_eval=has_eval, backend=backend)
    typed: dict[str, Any] = {}
    for key, value in checked.values.items():
        if PARAMETERS[key].promotion_gate:
            continue  # Read by the promoter from the request, not a job parameter.
        if key == "enable_checkpoint_selection" and isinstance(value, bool):
            # The schema reads "true"/"false" as booleans; the template takes the string.
            value = "true" if value else "false"
        typed[key] = value
    return ReadOverrides(
        values=RequestedOverrides(**typed),
        given=frozenset(typed),
        refusals=[explain.override_refusal(problem) for problem in _by_kind(checked.errors)],
        notes=[explain.override_note(problem) for problem in _by_kind(checked.warnings)],
    )


def _by_kind(problems: list[Problem]) -> list[Problem]:
    """``problems`` grouped by kind, kinds in order of first appearance (as a report lists them)."""
    kinds = list(dict.fromkeys(problem.kind for problem in problems))
    return sorted(problems, key=lambda problem: kinds.index(problem.kind))
