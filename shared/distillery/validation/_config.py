"""Validate a config sidecar: the JSON object of job overrides next to a training set.

The allowed keys are the distillation job parameters a user may choose (SPEC "Training
parameters" and "The job request"), ``task``, which picks the recommended ``train_steps``, and
the promotion gates of the dataset's jobs (``min_eval_accuracy`` and the like), which the
promoter uses in place of the settings of the same name.
Values are normalized on the way (``300.0`` → ``300``, ``"gpu"`` → ``"GPU"``), so the launcher
receives exactly the types the pipeline expects.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distillery.core.settings import PROMOTION_GATE_KEYS
from distillery.facts import ACCELERATOR_TYPES, SUPPORTED_REGIONS
from distillery.validation import _rules as rules
from distillery.validation._names import DatasetKind
from distillery.validation._report import Finding, ValidationReport
from distillery.validation._text import describe_json_value, preview

#: The only region where a customer-managed encryption key (CMEK) can be used.
CMEK_REGION = "us-central1"
MAX_DISPLAY_NAME_CHARS = 128
TASKS: tuple[str, ...] = ("classification", "summarization", "extractive_qa", "other")
#: Recommended train_steps by task (SPEC "Training parameters"); "other" has none.
RECOMMENDED_TRAIN_STEPS: dict[str, tuple[int, int]] = {
    "classification": (200, 1000),
    "summarization": (1000, 1500),
    "extractive_qa": (200, 800),
}
#: Parameters that only mean something with an eval set.
EVAL_ONLY_KEYS: tuple[str, ...] = (
    "evaluation_interval",
    "enable_early_stopping",
    "enable_checkpoint_selection",
    *PROMOTION_GATE_KEYS,
)

_TENSORBOARD = re.compile(r"projects/[^/\s]+/locations/[^/\s]+/tensorboards/[^/\s]+")
_KMS_KEY = re.compile(
    r"projects/[^/\s]+/locations/(?P<location>[^/\s]+)/keyRings/[^/\s]+/cryptoKeys/[^/\s]+"
)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class _Invalid(Exception):
    """A value breaks its parameter's rule; the message says how."""


def _integer(value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"is {describe_json_value(value)}, expected an integer ≥ {minimum}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise _Invalid(f"is {value!r}, expected a whole number ≥ {minimum}")
    if value < minimum:
        raise _Invalid(f"is {value!r}, expected an integer ≥ {minimum}")
    return int(value)


def _train_steps(value: Any) -> int:
    return _integer(value, 1)


def _evaluation_interval(value: Any) -> int:
    return _integer(value, 1)


def _learning_rate_multiplier(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"is {describe_json_value(value)}, expected a number > 0")
    if not math.isfinite(value) or value <= 0:
        raise _Invalid(f"is {value!r}, expected a number > 0")
    return float(value)


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"is {describe_json_value(value)}, expected a number from 0 to 1")
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise _Invalid(f"is {value!r}, expected a number from 0 to 1")
    return float(value)


def _non_negative(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"is {describe_json_value(value)}, expected a number ≥ 0 (0: no limit)")
    if not math.isfinite(value) or value < 0:
        raise _Invalid(f"is {value!r}, expected a number ≥ 0 (0: no limit)")
    return float(value)


def _count(value: Any) -> int:
    return _integer(value, 0)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"is {describe_json_value(value)}, expected true or false")
    return value


def _checkpoint_selection(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("default", "true", "false"):
        flag = value.strip().lower()
        return flag if flag == "default" else flag == "true"
    raise _Invalid(
        f'is {describe_json_value(value)}, expected true, false or "default" '
        '(or the strings "true"/"false")'
    )


def _accelerator_type(value: Any) -> str:
    if isinstance(value, str) and value.strip().upper() in ACCELERATOR_TYPES:
        return value.strip().upper()
    raise _Invalid(
        f"is {describe_json_value(value)}, expected one of {', '.join(ACCELERATOR_TYPES)}"
    )


def _location(value: Any) -> str:
    if isinstance(value, str) and value.strip() in SUPPORTED_REGIONS:
        return value.strip()
    raise _Invalid(
        f"is {describe_json_value(value)}, expected a distillation region: "
        f"{', '.join(SUPPORTED_REGIONS)}"
    )


def _non_empty_string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"is {describe_json_value(value)}, expected a non-empty string")
    return value.strip()


def _display_name(value: Any) -> str:
    name = _non_empty_string(value)
    if len(name) > MAX_DISPLAY_NAME_CHARS:
        raise _Invalid(
            f"is {len(name):,} characters long, at most {MAX_DISPLAY_NAME_CHARS} are allowed"
        )
    return name


def _matching(pattern: re.Pattern[str], shape: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _non_empty_string(value)
        if pattern.fullmatch(text) is None:
            raise _Invalid(f"is {preview(text, 80)}, expected {shape}")
        return text

    return parse


def _task(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in TASKS:
        return value.strip().lower()
    raise _Invalid(f"is {describe_json_value(value)}, expected one of {', '.join(TASKS)}")


#: Each allowed key and the parser that checks and normalizes its value.
PARAMETERS: dict[str, Callable[[Any], Any]] = {
    "train_steps": _train_steps,
    "learning_rate_multiplier": _learning_rate_multiplier,
    "evaluation_interval": _evaluation_interval,
    "enable_early_stopping": _boolean,
    "enable_checkpoint_selection": _checkpoint_selection,
    "accelerator_type": _accelerator_type,
    "location": _location,
    "teacher_model_reference": _non_empty_string,
    "student_model_reference": _non_empty_string,
    "model_display_name": _display_name,
    "tensorboard_resource_id": _matching(
        _TENSORBOARD, "a resource name projects/*/locations/*/tensorboards/*"
    ),
    "encryption_spec_key_name": _matching(
        _KMS_KEY, "a key name projects/*/locations/*/keyRings/*/cryptoKeys/*"
    ),
    "service_account": _matching(_EMAIL, "a service account email"),
    "task": _task,
    # Promotion gates for this dataset's jobs (in place of the DISTILLERY_* settings).
    "min_eval_accuracy": _fraction,
    "max_eval_loss": _non_negative,
    "min_eval_predictions": _count,
    "promotion_margin": _fraction,
}


@dataclass
class ConfigValidation:
    """The outcome of :func:`validate_config`."""

    report: ValidationReport
    #: The validated, normalized job parameters; empty when the config is invalid.
    overrides: dict[str, Any] = field(default_factory=dict)


def _eval_name_for(source: str) -> str:
    """The eval set that goes with the config file ``source``, by the naming convention."""
    if source.endswith(".config.json"):
        return source[: -len(".config.json")] + ".eval.jsonl"
    return "datasets/<name>.eval.jsonl"


def _parse_object(data: bytes, report: ValidationReport) -> dict[str, Any] | None:
    """The JSON object in ``data``, or ``None`` after recording why there is none."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        report.add(
            rules.CONFIG_NOT_JSON,
            Finding(message=f"invalid UTF-8 at byte offset {exc.start:,}: {exc.reason}"),
        )
        return None
    if text.startswith("\ufeff"):
        report.add(
            rules.CONFIG_NOT_JSON,
            Finding(message="the file starts with a UTF-8 byte order mark; save it without BOM"),
        )
        return None
    duplicates: list[str] = []

    def collect(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen and key not in duplicates:
                duplicates.append(key)
            seen[key] = value
        return seen

    try:
        parsed = json.loads(text, object_pairs_hook=collect)
    except json.JSONDecodeError as exc:
        report.add(
            rules.CONFIG_NOT_JSON,
            Finding(line=exc.lineno, message=f"{exc.msg} at line {exc.lineno}, column {exc.colno}"),
        )
        return None
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        report.add(rules.CONFIG_NOT_JSON, Finding(message=f"the JSON cannot be read: {reason}"))
        return None
    if not isinstance(parsed, dict):
        report.add(
            rules.CONFIG_NOT_AN_OBJECT,
            Finding(
                message=f"the file holds {describe_json_value(parsed)}, expected an object "
                'such as {"train_steps": 300}'
            ),
        )
        return None
    for key in duplicates:
        report.add(
            rules.CONFIG_DUPLICATE_KEY,
            Finding(field=key, message=f"{key} is given more than once; give it once"),
        )
    return parsed


def validate_config(
    data: bytes,
    *,
    source: str,
    has_eval: bool,
    max_findings_per_rule: int = 20,
) -> ConfigValidation:
    """Validate the config sidecar ``data`` (the whole file; configs are small).

    ``has_eval`` says whether the dataset has an eval set: evaluation parameters need one.
    Raises nothing: every problem is a finding in the report.
    """
    report = ValidationReport(
        source=source,
        kind=DatasetKind.CONFIG,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        max_findings_per_rule=max_findings_per_rule,
    )
    parsed = _parse_object(data, report)
    if parsed is None:
        return ConfigValidation(report=report)

    overrides: dict[str, Any] = {}
    for key, value in parsed.items():
        parse = PARAMETERS.get(key)
        if parse is None:
            close = difflib.get_close_matches(key, PARAMETERS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            report.add(
                rules.CONFIG_UNKNOWN_KEY,
                Finding(
                    field=key,
                    message=f"unknown parameter {preview(key)}{hint} "
                    f"(allowed: {', '.join(PARAMETERS)})",
                ),
            )
            continue
        try:
            overrides[key] = parse(value)
        except _Invalid as exc:
            report.add(rules.CONFIG_INVALID_VALUE, Finding(field=key, message=f"{key} {exc}"))

    _check_combinations(overrides, has_eval, source, report)
    return ConfigValidation(report=report, overrides=overrides if report.valid else {})


def _check_combinations(
    overrides: dict[str, Any], has_eval: bool, source: str, report: ValidationReport
) -> None:
    """The rules between parameters, and between parameters and the dataset."""
    if not has_eval:
        for key in EVAL_ONLY_KEYS:
            if key in overrides:
                report.add(
                    rules.CONFIG_NEEDS_EVAL,
                    Finding(
                        field=key,
                        message=f"{key} needs an eval set {_eval_name_for(source)}; "
                        "upload one first or remove the parameter",
                    ),
                )

    key_name = overrides.get("encryption_spec_key_name")
    if key_name is not None:
        if overrides.get("accelerator_type") == "TPU":
            report.add(
                rules.CONFIG_CMEK_UNSUPPORTED,
                Finding(
                    field="encryption_spec_key_name",
                    message="TPU tuning (europe-west4) has no CMEK support: use GPU or drop "
                    "the key",
                ),
            )
        match = _KMS_KEY.fullmatch(key_name)
        key_location = match.group("location") if match else ""
        if key_location != CMEK_REGION:
            report.add(
                rules.CONFIG_CMEK_UNSUPPORTED,
                Finding(
                    field="encryption_spec_key_name",
                    message=f"the key is in {key_location}; CMEK is only available with a key "
                    f"in {CMEK_REGION}",
                ),
            )
        location = overrides.get("location")
        if location is not None and location != CMEK_REGION:
            report.add(
                rules.CONFIG_CMEK_UNSUPPORTED,
                Finding(
                    field="location",
                    message=f"the model upload location is {location}; with CMEK it must be "
                    f"{CMEK_REGION}",
                ),
            )

    steps = overrides.get("train_steps")
    recommended = RECOMMENDED_TRAIN_STEPS.get(overrides.get("task", ""))
    if steps is not None and recommended is not None:
        low, high = recommended
        if not low <= steps <= high:
            report.add(
                rules.CONFIG_TRAIN_STEPS_OUTSIDE_RECOMMENDED,
                Finding(
                    field="train_steps",
                    message=f"train_steps is {steps:,}; {low:,} to {high:,} is recommended for "
                    f"{overrides['task']}",
                ),
            )
    interval = overrides.get("evaluation_interval")
    if steps is not None and interval is not None and interval > steps:
        report.add(
            rules.CONFIG_EVALUATION_INTERVAL_TOO_LONG,
            Finding(
                field="evaluation_interval",
                message=f"evaluation_interval is {interval:,} but train_steps is {steps:,}: "
                "no evaluation would run before the end",
            ),
        )
