"""The labeling stage of a gemini job's plan: distilling step-by-step on supervised tuning.

Whether a job labels is decided here, from what validation recorded about its training set
(``labeling`` of the dataset record) and the ``rationales`` override:

- an unlabeled set (prompts only) is labeled and explained by the teacher (mode
  ``labels_and_rationales``; ``rationales`` defaults to ``teacher``, and ``none`` is refused: a
  prompt alone cannot be tuned on);
- a labeled set keeps its labels and is tuned on them alone, unless ``rationales=teacher`` asks
  the teacher to explain each label (mode ``rationales``);
- the distillation mode never labels (its own teacher writes the responses), nor does the
  pipeline backend (its template distills step-by-step itself).

When it labels, the resolved values are frozen in a :class:`~distillery.labeling.LabelingSpec`,
the tuning job trains on ``spec.training_uri`` (the two-task file the labeling run writes, never
the validated copy), and the plan prices the batch job and the larger two-task tuning data. The
wording is :mod:`._explain`'s. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from distillery import facts
from distillery.core.settings import Settings
from distillery.labeling import (
    DEFAULT_LABEL_TASK_PREFIX,
    DEFAULT_RATIONALE_TASK_PREFIX,
    GIVEN_ANSWER_HINT,
    INSTRUCTION_VERSION,
    STEP_BY_STEP_INSTRUCTION,
    LabelingSpec,
    instruction_sha256,
    labeling_paths,
)
from distillery.policy import _explain as explain
from distillery.policy._overrides import ReadOverrides
from distillery.validation import CHARS_PER_TOKEN

#: The keys that only mean something when the teacher labels (refused otherwise, never ignored).
LABELING_ONLY_KEYS: tuple[str, ...] = (
    "min_labeled_fraction",
    "rationale_mixture",
    "label_task_prefix",
    "rationale_task_prefix",
)


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` as validation estimates them (``TOKEN_ESTIMATE_METHOD``)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def instruction_tokens(mode: str) -> int:
    """The tokens of the system instruction each teacher request carries in ``mode`` (the
    ``rationales`` mode's hint without its label: the label is counted with the dataset)."""
    told = STEP_BY_STEP_INSTRUCTION
    if mode == "rationales":
        told += GIVEN_ANSWER_HINT.replace("{label}", "")
    return estimate_tokens(told)


@dataclass
class LabelingPlan:
    """What the labeling stage adds to a gemini plan."""

    #: None: the job does not label (it tunes on the validated copy).
    spec: LabelingSpec | None = None
    #: The training tokens of one epoch of the two-task data (None: the dataset's own).
    tuning_tokens: int | None = None
    #: The lines of the two-task training file (label task + mixture x rationale task).
    training_examples: int | None = None
    reasons: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    @property
    def estimated_cost_usd(self) -> float:
        """The batch job's planning cost (0 when the job does not label)."""
        return self.spec.estimated_cost_usd if self.spec is not None else 0.0


def resolve_labeling(
    read: ReadOverrides,
    settings: Settings,
    *,
    tuning_mode: str,
    dataset_labeling: str | None,
    job_id: str,
    job_label: str,
    region: str,
    dataset_uri: str,
    dataset_examples: int,
    dataset_tokens: int,
) -> LabelingPlan:
    """The labeling stage of a gemini job (see the module's docs).

    ``dataset_labeling`` is the dataset record's ``labeling`` (``unlabeled``, ``labeled``; None
    for records written before validation recorded it, read as labeled). ``dataset_tokens`` is
    the training set's token count (counted or estimated): for an unlabeled set, its prompts'.
    Raises nothing: every problem is a refusal.
    """
    overrides, given = read.values, read.given
    plan = LabelingPlan()
    unlabeled = dataset_labeling == "unlabeled"
    asked = overrides.rationales
    if tuning_mode == "distillation":
        # The schema refused rationales=teacher with an explicit tuning_mode; here the mode may
        # be the setting's.
        if asked == "teacher" and "tuning_mode" not in given:
            plan.refusals.append(explain.rationales_in_distillation())
        plan.refusals.extend(
            explain.labeling_key_without_labeling(key, why="the distillation mode")
            for key in LABELING_ONLY_KEYS
            if key in given
        )
        return plan
    rationales = asked or ("teacher" if unlabeled else "none")
    if rationales == "none":
        if unlabeled:
            plan.refusals.append(explain.unlabeled_without_teacher(dataset_examples))
        else:
            plan.reasons.append(explain.no_labeling(overridden=asked is not None))
        if "teacher_model" in given:
            plan.refusals.append(explain.teacher_without_distillation())
        plan.refusals.extend(
            explain.labeling_key_without_labeling(key, why="a job whose teacher does not label")
            for key in LABELING_ONLY_KEYS
            if key in given
        )
        return plan

    mode = "labels_and_rationales" if unlabeled else "rationales"
    teacher = overrides.teacher_model or settings.labeling_teacher_model
    if teacher not in facts.GEMINI_TEACHER_MODELS:
        plan.refusals.append(explain.not_a_labeling_teacher(teacher, facts.GEMINI_TEACHER_MODELS))
        teacher = settings.labeling_teacher_model
    fraction = overrides.min_labeled_fraction or settings.labeling_min_fraction
    mixture = (
        overrides.rationale_mixture
        if overrides.rationale_mixture is not None
        else settings.rationale_mixture
    )
    label_prefix = overrides.label_task_prefix or DEFAULT_LABEL_TASK_PREFIX
    rationale_prefix = overrides.rationale_task_prefix or DEFAULT_RATIONALE_TASK_PREFIX

    # The batch job: the teacher reads every prompt (and, in the rationales mode, its label,
    # counted in dataset_tokens) under the instruction; it writes a rationale and the answer.
    examples = max(dataset_examples, 0)
    input_tokens = dataset_tokens + examples * instruction_tokens(mode)
    output_per_example = facts.estimated_teacher_output_tokens(teacher)
    output_tokens = examples * output_per_example
    usd = round(facts.gemini_batch_cost_usd(teacher, input_tokens, output_tokens), 2)

    # The two-task data: every example's label task, and the mixture's share of rationale tasks.
    # Each task's prompt is the prefixed prompt; the label task's target is the dataset's own
    # answer (counted in dataset_tokens) or the teacher's (assumed), the rationale task's the
    # rationale (assumed). In the rationales mode the rationale task is priced with the label in
    # its prompt: a slight overestimate.
    label_task = dataset_tokens + examples * estimate_tokens(label_prefix)
    if unlabeled:
        label_task += examples * facts.ESTIMATED_ANSWER_TOKENS
    rationale_task = dataset_tokens + examples * (
        estimate_tokens(rationale_prefix) + facts.ESTIMATED_RATIONALE_TOKENS
    )
    plan.tuning_tokens = round(label_task + mixture * rationale_task)
    plan.training_examples = examples + round(mixture * examples)

    paths = labeling_paths(settings.bucket, settings.validated_prefix, job_id)
    plan.spec = LabelingSpec(
        mode=mode,
        teacher_model=teacher,
        location=region,
        source_uri=dataset_uri,
        source_examples=examples,
        input_uri=paths.input_uri,
        output_prefix=paths.output_prefix,
        labeled_uri=paths.labeled_uri,
        lineage_uri=paths.lineage_uri,
        training_uri=paths.training_uri,
        instruction_sha256=instruction_sha256(mode),
        instruction_version=INSTRUCTION_VERSION,
        min_labeled_fraction=fraction,
        rationale_mixture=mixture,
        label_task_prefix=label_prefix,
        rationale_task_prefix=rationale_prefix,
        estimated_input_tokens=input_tokens,
        estimated_output_tokens=output_tokens,
        estimated_cost_usd=usd,
        job_label=job_label,
    )
    model = facts.gemini_teacher_model(teacher)
    plan.reasons.extend(
        [
            explain.labeling(mode, examples, region, overridden=asked is not None),
            explain.labeling_teacher(teacher, model.name, overridden="teacher_model" in given),
            explain.labeling_cost(
                usd,
                input_tokens,
                output_tokens,
                output_per_example,
                verified=facts.GEMINI_TEACHER_PRICES_VERIFIED,
            ),
            explain.labeling_threshold(
                fraction, examples, overridden=overrides.min_labeled_fraction is not None
            ),
            explain.rationale_mixture(
                mixture, examples, overridden=overrides.rationale_mixture is not None
            ),
            explain.task_prefixes(
                label_prefix,
                rationale_prefix,
                overridden=bool({"label_task_prefix", "rationale_task_prefix"} & given),
            ),
            explain.labeling_artifacts(paths.labeled_uri, paths.training_uri),
        ]
    )
    return plan
