"""The one schema of job overrides: which keys a job may set, how each value is read, what is wrong.

Overrides reach a job by four paths, and every one of them is read here and nowhere else:

- a dataset's config sidecar ``datasets/<name>.config.json``
  (:func:`distillery.validation.validate_config`, which maps each :class:`Problem` to its rule);
- ``distillery rerun --set key=value`` (validate_config, before the request is published);
- ``distillery plan --set key=value`` and ``LaunchRequest.overrides``
  (:func:`distillery.policy.resolve`, which turns each error into a refusal).

:func:`check_overrides` reads a mapping of overrides once: each value is parsed (typed and
normalized: ``300.0`` → ``300``, ``"gpu"`` → ``"GPU"``, ``" a@1 "`` → ``"a@1"``), judged by its
key's rule, and the rules between keys are applied. Every problem is a :class:`Problem` whose
message names the key and the value, so the same bad value reads the same whichever path it took.

The keys are the distillation job parameters a user may choose (SPEC "Training parameters" and
"The job request"), ``task`` (which picks the recommended ``train_steps``), ``backend`` (the
backend the job runs on: a job parameter of the plan, never sent to a service), the gemini
backend's tuning parameters (SPEC "The successor on Google Cloud today": ``base_model``,
``epoch_count``, ``adapter_size``, and ``tuning_mode``/``teacher_model`` for its v1beta1
distillation mode; ``learning_rate_multiplier`` is both backends'), the gemini backend's labeling
parameters (``rationales``, ``teacher_model`` as the labeling teacher, ``min_labeled_fraction``,
``rationale_mixture``, ``label_task_prefix``, ``rationale_task_prefix``: distilling step-by-step,
where a batch prediction job has a teacher label and explain the training set), and the
promotion gates of :data:`distillery.core.settings.PROMOTION_GATE_KEYS` and
``EVALUATION_GATE_KEYS``, which the promoter uses for the job in place of the settings of the same
name. Pure: no I/O.
"""

from __future__ import annotations

import difflib
import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from distillery._text import describe_json_value, preview
from distillery.core.settings import (
    BACKENDS,
    DEFAULT_BACKEND,
    EVALUATION_GATE_KEYS,
    PROMOTION_GATE_KEYS,
)
from distillery.facts import (
    ACCELERATOR_TYPES,
    ACCELERATORS,
    ADAPTER_SIZES,
    CHECKPOINT_SELECTION_VALUES,
    CMEK_REGION,
    DISPLAY_NAME_MAX,
    EVAL_ONLY_PARAMETERS,
    GEMINI_DISTILLATION_TEACHERS,
    GEMINI_MIN_EPOCH_COUNT,
    GEMINI_TEACHER_MODELS,
    GEMINI_TUNING_MODELS,
    GEMINI_TUNING_MODES,
    KMS_KEY_PATTERN,
    SUPPORTED_REGIONS,
    TASK_STEP_RANGES,
    TASKS,
    TENSORBOARD_PATTERN,
)
from distillery.labeling import DEFAULT_LABEL_TASK_PREFIX, DEFAULT_RATIONALE_TASK_PREFIX

#: What a service account looks like: an email address (the API checks that it exists).
SERVICE_ACCOUNT_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
#: The values of ``rationales``: ``teacher`` (a batch prediction job has the teacher explain every
#: example, and label the unlabeled ones), ``none`` (tune on the dataset's own labels only).
RATIONALES_VALUES: tuple[str, ...] = ("teacher", "none")
#: The longest task prefix: a prefix names the task, it is not a prompt (every training example
#: and every request the model serves carries it).
TASK_PREFIX_MAX = 32
#: The eval set named in a "needs an eval set" message when the overrides come from no file.
UNNAMED_EVAL_SET = "datasets/<name>.eval.jsonl"


class InvalidValue(ValueError):
    """A value breaks its key's parser or rule; the message says how (``is 0, expected ...``)."""


# --- Parsers and rules: each raises InvalidValue with the wording every path shows ---------------


def _integer(value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"is {describe_json_value(value)}, expected an integer ≥ {minimum}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise InvalidValue(f"is {value!r}, expected a whole number ≥ {minimum}")
    if value < minimum:
        raise InvalidValue(f"is {value!r}, expected an integer ≥ {minimum}")
    return int(value)


def _positive_integer(value: Any) -> int:
    return _integer(value, 1)


def _count(value: Any) -> int:
    return _integer(value, 0)


def _bounded_number(value: Any, accepts: Callable[[float], bool], expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"is {describe_json_value(value)}, expected {expected}")
    if not math.isfinite(value) or not accepts(value):
        raise InvalidValue(f"is {value!r}, expected {expected}")
    return float(value)


def _learning_rate_multiplier(value: Any) -> float:
    return _bounded_number(value, lambda number: number > 0, "a number > 0")


def _fraction(value: Any) -> float:
    return _bounded_number(value, lambda number: 0 <= number <= 1, "a number from 0 to 1")


def _non_negative(value: Any) -> float:
    return _bounded_number(value, lambda number: number >= 0, "a number ≥ 0 (0: no limit)")


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(f"is {describe_json_value(value)}, expected true or false")
    return value


def _checkpoint_selection(value: Any) -> bool | str:
    # JSON true/false and the template's own strings are all accepted; "true"/"false" become
    # booleans so a sidecar and a --set give the same value ("default" stays a string).
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in CHECKPOINT_SELECTION_VALUES:
        flag = value.strip().lower()
        return flag if flag == "default" else flag == "true"
    raise InvalidValue(
        f'is {describe_json_value(value)}, expected true, false or "default" '
        '(or the strings "true"/"false")'
    )


def _accelerator_type(value: Any) -> str:
    if isinstance(value, str) and value.strip().upper() in ACCELERATOR_TYPES:
        return value.strip().upper()
    raise InvalidValue(
        f"is {describe_json_value(value)}, expected one of {', '.join(ACCELERATOR_TYPES)}"
    )


def _not_a_region(value: Any) -> InvalidValue:
    return InvalidValue(
        f"is {describe_json_value(value)}, expected a distillation region: "
        f"{', '.join(SUPPORTED_REGIONS)}"
    )


def _region_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _not_a_region(value)
    return value.strip()


def _supported_region(region: str) -> None:
    if region not in SUPPORTED_REGIONS:
        raise _not_a_region(region)


def _non_empty_string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"is {describe_json_value(value)}, expected a non-empty string")
    return value.strip()


def _display_name(value: Any) -> str:
    name = _non_empty_string(value)
    if len(name) > DISPLAY_NAME_MAX:
        raise InvalidValue(
            f"is {len(name):,} characters long, at most {DISPLAY_NAME_MAX} are allowed"
        )
    return name


def _matching(pattern: re.Pattern[str], shape: str) -> Callable[[str], None]:
    """A rule: the whole string is ``shape`` (``pattern`` is a facts pattern, unanchored)."""

    def rule(text: str) -> None:
        if pattern.fullmatch(text) is None:
            raise InvalidValue(f"is {preview(text, 80)}, not {shape}")

    return rule


def _task(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in TASKS:
        return value.strip().lower()
    raise InvalidValue(f"is {describe_json_value(value)}, expected one of {', '.join(TASKS)}")


def _backend(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in BACKENDS:
        return value.strip().lower()
    raise InvalidValue(f"is {describe_json_value(value)}, expected one of {', '.join(BACKENDS)}")


def _base_model(value: Any) -> str:
    # The bare id is what the plan sends; Google's publisher prefix is accepted and dropped.
    if isinstance(value, str):
        short = value.strip().removeprefix("publishers/google/models/")
        if short in GEMINI_TUNING_MODELS:
            return short
    raise InvalidValue(
        f"is {describe_json_value(value)}, expected a Gemini base model that supports "
        f"supervised tuning: {', '.join(GEMINI_TUNING_MODELS)}"
    )


def _tuning_mode(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in GEMINI_TUNING_MODES:
        return value.strip().lower()
    raise InvalidValue(
        f"is {describe_json_value(value)}, expected one of {', '.join(GEMINI_TUNING_MODES)}"
    )


def _teacher_model(value: Any) -> str:
    # As base_model: the bare id is what the plan sends, the publisher prefix is dropped. Both
    # kinds of teacher parse; the policy judges the one named against the job's mode.
    if isinstance(value, str):
        short = value.strip().removeprefix("publishers/google/models/")
        if short in GEMINI_DISTILLATION_TEACHERS or short in GEMINI_TEACHER_MODELS:
            return short
    raise InvalidValue(
        f"is {describe_json_value(value)}, expected a Gemini teacher model: of the distillation "
        f"mode, {', '.join(GEMINI_DISTILLATION_TEACHERS)}; of labeling (rationales=teacher), "
        f"{', '.join(GEMINI_TEACHER_MODELS)}"
    )


def _rationales(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in RATIONALES_VALUES:
        return value.strip().lower()
    raise InvalidValue(
        f"is {describe_json_value(value)}, expected one of {', '.join(RATIONALES_VALUES)} "
        "(teacher: a teacher model explains, and labels, the training set)"
    )


def _labeled_fraction(value: Any) -> float:
    return _bounded_number(value, lambda number: 0 < number <= 1, "a number above 0, at most 1")


def _task_prefix(value: Any) -> str:
    # Kept exactly as given (its trailing space is part of the prompt the model sees).
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"is {describe_json_value(value)}, expected a non-empty string")
    if "\n" in value or "\r" in value:
        raise InvalidValue(f"is {preview(value, 40)}, which holds a line break: use one line")
    if len(value) > TASK_PREFIX_MAX:
        raise InvalidValue(
            f"is {len(value):,} characters long, at most {TASK_PREFIX_MAX} are allowed (a "
            "prefix names the task, like 'predict: ')"
        )
    return value


def _epoch_count(value: Any) -> int:
    return _integer(value, GEMINI_MIN_EPOCH_COUNT)


def _adapter_size(value: Any) -> str:
    # The enum name (ADAPTER_SIZE_FOUR) or the size it names (4); the plan sends the name.
    if isinstance(value, str) and value.strip().upper() in ADAPTER_SIZES:
        return value.strip().upper()
    if isinstance(value, int | float) and not isinstance(value, bool):
        for name, size in ADAPTER_SIZES.items():
            if value == size:
                return name
    sizes = ", ".join(str(size) for size in ADAPTER_SIZES.values())
    raise InvalidValue(
        f"is {describe_json_value(value)}, expected an adapter size ({sizes}) or its "
        "ADAPTER_SIZE_* name"
    )


_KMS_KEY_SHAPE = _matching(
    KMS_KEY_PATTERN, "a Cloud KMS key name projects/*/locations/*/keyRings/*/cryptoKeys/*"
)


def kms_key_rule(name: str) -> None:
    """The rule of ``encryption_spec_key_name`` (the policy judges the default key with it too).

    Raises:
        InvalidValue: ``name`` is not a whole Cloud KMS key name.
    """
    _KMS_KEY_SHAPE(name)


# --- The schema ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """One key a job may override: how its value is read and when it applies."""

    name: str
    #: Type and normalize a value, or raise :class:`InvalidValue`.
    parse: Callable[[Any], Any]
    #: Judge a parsed value beyond its type (a region, a resource name), or raise
    #: :class:`InvalidValue`. A value that parses but breaks its rule is an error, yet keeps its
    #: parsed form in :attr:`CheckedOverrides.values`, so the policy's own rules (a region's
    #: residency, say) still see what was asked for.
    rule: Callable[[Any], None] | None = None
    #: Only meaningful with an evaluation set ("no eval parameters without eval data").
    needs_eval: bool = False
    #: A promotion gate (read by the promoter), not a pipeline parameter.
    promotion_gate: bool = False
    #: The one backend that reads it (None: both); a job on the other backend refuses it rather
    #: than ignore what was asked.
    backend: str | None = None


def _job(
    name: str,
    parse: Callable[[Any], Any],
    rule: Callable[[Any], None] | None = None,
    *,
    backend: str | None = None,
) -> Parameter:
    return Parameter(name, parse, rule, needs_eval=name in EVAL_ONLY_PARAMETERS, backend=backend)


def _pipeline(
    name: str, parse: Callable[[Any], Any], rule: Callable[[Any], None] | None = None
) -> Parameter:
    return _job(name, parse, rule, backend="pipeline")


def _gemini(name: str, parse: Callable[[Any], Any]) -> Parameter:
    return _job(name, parse, backend="gemini")


def _gate(name: str, parse: Callable[[Any], Any]) -> Parameter:
    # Every gate judges eval metrics, so without an eval set it could never pass.
    return Parameter(name, parse, needs_eval=True, promotion_gate=True)


def _evaluation_gate(name: str, parse: Callable[[Any], Any]) -> Parameter:
    # Judged on the family's golden set, which need not be the job's eval set.
    return Parameter(name, parse, promotion_gate=True)


def _confidence(value: Any) -> float:
    return _bounded_number(value, lambda number: 0.5 <= number < 1, "a number from 0.5 to below 1")


def _resamples(value: Any) -> int:
    count = _integer(value, 100)
    if count > 100_000:
        raise InvalidValue(f"is {value!r}, expected an integer from 100 to 100000")
    return count


#: The parser of each promotion gate (the keys are settings.PROMOTION_GATE_KEYS: a gate added there
#: without a parser here fails at import, loudly).
_GATE_PARSERS: dict[str, Callable[[Any], Any]] = {
    "min_eval_accuracy": _fraction,
    "max_eval_loss": _non_negative,
    "min_eval_predictions": _count,
    "promotion_margin": _fraction,
}

#: The parser of each threshold of the golden-set evaluation (settings.EVALUATION_GATE_KEYS).
_EVALUATION_GATE_PARSERS: dict[str, Callable[[Any], Any]] = {
    "min_task_score": _fraction,
    "promotion_tolerance": _fraction,
    "max_class_regression": _fraction,
    "promotion_confidence": _confidence,
    "bootstrap_resamples": _resamples,
}

#: Every key an override may set, in the order messages list them.
PARAMETERS: dict[str, Parameter] = {
    parameter.name: parameter
    for parameter in (
        _pipeline("train_steps", _positive_integer),
        _job("learning_rate_multiplier", _learning_rate_multiplier),
        _pipeline("evaluation_interval", _positive_integer),
        _pipeline("enable_early_stopping", _boolean),
        _pipeline("enable_checkpoint_selection", _checkpoint_selection),
        _pipeline("accelerator_type", _accelerator_type),
        _pipeline("location", _region_name, _supported_region),
        _pipeline("teacher_model_reference", _non_empty_string),
        _pipeline("student_model_reference", _non_empty_string),
        _job("model_display_name", _display_name),
        _pipeline(
            "tensorboard_resource_id",
            _non_empty_string,
            _matching(
                TENSORBOARD_PATTERN,
                "a TensorBoard resource name projects/*/locations/*/tensorboards/*",
            ),
        ),
        _job("encryption_spec_key_name", _non_empty_string, kms_key_rule),
        _job(
            "service_account",
            _non_empty_string,
            _matching(SERVICE_ACCOUNT_PATTERN, "a service account email"),
        ),
        _job("task", _task),
        _job("backend", _backend),
        _gemini("base_model", _base_model),
        _gemini("epoch_count", _epoch_count),
        _gemini("adapter_size", _adapter_size),
        _gemini("tuning_mode", _tuning_mode),
        _gemini("teacher_model", _teacher_model),
        _gemini("rationales", _rationales),
        _gemini("min_labeled_fraction", _labeled_fraction),
        _gemini("rationale_mixture", _fraction),
        _gemini("label_task_prefix", _task_prefix),
        _gemini("rationale_task_prefix", _task_prefix),
        *(_gate(name, _GATE_PARSERS[name]) for name in PROMOTION_GATE_KEYS),
        *(_evaluation_gate(name, _EVALUATION_GATE_PARSERS[name]) for name in EVALUATION_GATE_KEYS),
    )
}

#: Every key an override may set: the job parameters, then the promotion gates.
OVERRIDABLE_PARAMETERS: tuple[str, ...] = tuple(PARAMETERS)
#: The overrides only the pipeline backend reads, and those only the gemini backend reads.
PIPELINE_ONLY_KEYS: tuple[str, ...] = tuple(
    name for name, parameter in PARAMETERS.items() if parameter.backend == "pipeline"
)
GEMINI_ONLY_KEYS: tuple[str, ...] = tuple(
    name for name, parameter in PARAMETERS.items() if parameter.backend == "gemini"
)


# --- Checking a set of overrides -----------------------------------------------------------------


class ProblemKind(enum.Enum):
    """What is wrong; :mod:`distillery.validation` maps each kind to one config rule."""

    UNKNOWN_KEY = "unknown_key"
    INVALID_VALUE = "invalid_value"
    NEEDS_EVAL = "needs_eval"
    CMEK_UNSUPPORTED = "cmek_unsupported"
    TRAIN_STEPS_OUTSIDE_RECOMMENDED = "train_steps_outside_recommended"
    EVALUATION_INTERVAL_TOO_LONG = "evaluation_interval_too_long"
    NOT_FOR_BACKEND = "not_for_backend"


#: Kinds that warn: the job can still run.
WARNING_KINDS = frozenset(
    {ProblemKind.TRAIN_STEPS_OUTSIDE_RECOMMENDED, ProblemKind.EVALUATION_INTERVAL_TOO_LONG}
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the overrides, about one key."""

    kind: ProblemKind
    field: str
    #: A sentence that names the key (``train_steps is 0, expected an integer ≥ 1``).
    message: str

    @property
    def is_warning(self) -> bool:
        """Whether the job may still run despite it."""
        return self.kind in WARNING_KINDS


@dataclass
class CheckedOverrides:
    """The outcome of :func:`check_overrides`."""

    #: Every value that parsed, normalized, in the order given: with an error about its rule or
    #: about the keys together, a value is still here (see :attr:`Parameter.rule`).
    values: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        """The problems that forbid the job."""
        return [problem for problem in self.problems if not problem.is_warning]

    @property
    def warnings(self) -> list[Problem]:
        """The problems the job may run with."""
        return [problem for problem in self.problems if problem.is_warning]

    @property
    def valid(self) -> bool:
        """Whether no problem forbids the job."""
        return not self.errors

    @property
    def flagged(self) -> set[str]:
        """The keys an error is about."""
        return {problem.field for problem in self.errors}


def check_overrides(
    raw: Mapping[str, Any],
    *,
    has_eval: bool,
    eval_set: str = UNNAMED_EVAL_SET,
    backend: str | None = None,
) -> CheckedOverrides:
    """Read every override in ``raw`` and apply the rules between them.

    ``has_eval`` says whether the job has an eval set (evaluation parameters and promotion gates
    need one); ``eval_set`` is the eval set's name for that message. ``backend`` is the
    deployment's backend (``DISTILLERY_BACKEND``; default ``gemini``), which a ``backend``
    override replaces: the pipeline's CMEK rules are the pipeline's only (the gemini policy
    judges a key against the tuning region). When the backend is known (``backend`` given, or a
    ``backend`` override), a key only the other backend reads is an error. Raises nothing: every
    problem is in the result.
    """
    checked = CheckedOverrides()
    #: The values that broke no rule of their own: the rules between keys judge only these.
    sound: dict[str, Any] = {}
    for key, value in raw.items():
        parameter = PARAMETERS.get(key)
        if parameter is None:
            close = difflib.get_close_matches(key, PARAMETERS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            checked.problems.append(
                Problem(
                    ProblemKind.UNKNOWN_KEY,
                    key,
                    f"unknown parameter {preview(key)}{hint} "
                    f"(allowed: {', '.join(OVERRIDABLE_PARAMETERS)})",
                )
            )
            continue
        try:
            parsed = parameter.parse(value)
        except InvalidValue as exc:
            checked.problems.append(Problem(ProblemKind.INVALID_VALUE, key, f"{key} {exc}"))
            continue
        checked.values[key] = parsed
        try:
            if parameter.rule is not None:
                parameter.rule(parsed)
        except InvalidValue as exc:
            checked.problems.append(Problem(ProblemKind.INVALID_VALUE, key, f"{key} {exc}"))
            continue
        sound[key] = parsed
    chosen = sound.get("backend") or backend or DEFAULT_BACKEND
    if backend is not None or "backend" in sound:
        # Every parsed key, even one that broke its rule: it is refused on this backend too.
        checked.problems.extend(_not_for_backend(checked.values, chosen))
    checked.problems.extend(
        _between_keys(sound, has_eval=has_eval, eval_set=eval_set, backend=chosen)
    )
    return checked


#: Why a key is refused on a backend, where "only the other backend reads it" is not enough.
_NOT_FOR_BACKEND_WHY: dict[tuple[str, str], str] = {
    ("rationales", "pipeline"): (
        ": the pipeline's distillation template has its own teacher write the labels and "
        "rationales, so Distillery's labeling never runs before it"
    ),
}


def _not_for_backend(values: dict[str, Any], backend: str) -> list[Problem]:
    """A problem for each key in ``values`` that only the other backend reads."""
    problems: list[Problem] = []
    for key in values:
        reader = PARAMETERS[key].backend
        if reader is not None and reader != backend:
            problems.append(
                Problem(
                    ProblemKind.NOT_FOR_BACKEND,
                    key,
                    f"{key} applies to the {reader} backend only; this job runs on the "
                    f"{backend} backend (set backend or remove the key)"
                    + _NOT_FOR_BACKEND_WHY.get((key, backend), ""),
                )
            )
    return problems


def _between_keys(
    values: dict[str, Any], *, has_eval: bool, eval_set: str, backend: str
) -> list[Problem]:
    """The rules between parameters, and between parameters and the dataset."""
    problems: list[Problem] = []
    if not has_eval:
        for key in values:
            if PARAMETERS[key].needs_eval:
                problems.append(
                    Problem(
                        ProblemKind.NEEDS_EVAL,
                        key,
                        f"{key} needs an eval set {eval_set}; upload one first or remove the "
                        "parameter",
                    )
                )

    key_name = values.get("encryption_spec_key_name")
    if key_name is not None and backend == "pipeline":
        problems.extend(_cmek_problems(key_name, values))

    steps = values.get("train_steps")
    task = values.get("task")
    recommended = TASK_STEP_RANGES.get(task) if task is not None else None
    if steps is not None and recommended is not None:
        low, high = recommended
        if not low <= steps <= high:
            problems.append(
                Problem(
                    ProblemKind.TRAIN_STEPS_OUTSIDE_RECOMMENDED,
                    "train_steps",
                    f"train_steps is {steps:,}; {low:,} to {high:,} is recommended for {task}",
                )
            )
    problems.extend(_labeling_problems(values))
    interval = values.get("evaluation_interval")
    if steps is not None and interval is not None and interval > steps:
        problems.append(
            Problem(
                ProblemKind.EVALUATION_INTERVAL_TOO_LONG,
                "evaluation_interval",
                f"evaluation_interval is {interval:,} but train_steps is {steps:,}: "
                "no evaluation would run before the end",
            )
        )
    return problems


def _labeling_problems(values: dict[str, Any]) -> list[Problem]:
    """The rules between the labeling keys (and the tuning mode, when it is given)."""
    problems: list[Problem] = []
    if values.get("rationales") == "teacher" and values.get("tuning_mode") == "distillation":
        problems.append(
            Problem(
                ProblemKind.INVALID_VALUE,
                "rationales",
                "rationales=teacher labels the training set for supervised tuning; the "
                "distillation mode's teacher writes the responses itself (set "
                "tuning_mode=supervised or remove rationales)",
            )
        )
    if "label_task_prefix" in values or "rationale_task_prefix" in values:
        label = values.get("label_task_prefix", DEFAULT_LABEL_TASK_PREFIX)
        rationale = values.get("rationale_task_prefix", DEFAULT_RATIONALE_TASK_PREFIX)
        if label.strip() == rationale.strip():
            given = "rationale_task_prefix" in values
            key = "rationale_task_prefix" if given else "label_task_prefix"
            problems.append(
                Problem(
                    ProblemKind.INVALID_VALUE,
                    key,
                    f"label_task_prefix {label!r} and rationale_task_prefix {rationale!r} are "
                    "the same: the model could not tell the label task from the rationale task",
                )
            )
    return problems


def _cmek_problems(key_name: str, values: dict[str, Any]) -> list[Problem]:
    """What keeps a customer-managed key from protecting the job these overrides describe."""
    problems: list[Problem] = []
    accelerator = values.get("accelerator_type")
    if accelerator is not None and not ACCELERATORS[accelerator].cmek_supported:
        capable = " or ".join(name for name, a in ACCELERATORS.items() if a.cmek_supported)
        problems.append(
            Problem(
                ProblemKind.CMEK_UNSUPPORTED,
                "encryption_spec_key_name",
                f"{accelerator} tuning ({ACCELERATORS[accelerator].tuning_region}) has no CMEK "
                f"support: use {capable} or drop the key",
            )
        )
    match = KMS_KEY_PATTERN.fullmatch(key_name)
    key_location = match["location"] if match else ""
    if key_location != CMEK_REGION:
        problems.append(
            Problem(
                ProblemKind.CMEK_UNSUPPORTED,
                "encryption_spec_key_name",
                f"the key is in {key_location}; CMEK is only available with a key in {CMEK_REGION}",
            )
        )
    location = values.get("location")
    if location is not None and location != CMEK_REGION:
        problems.append(
            Problem(
                ProblemKind.CMEK_UNSUPPORTED,
                "location",
                f"the model upload location is {location}; with CMEK it must be {CMEK_REGION}",
            )
        )
    return problems
