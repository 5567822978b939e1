"""Validate a config sidecar: the JSON object of job overrides next to a training set.

What a sidecar may hold, how each value is read and every message about a bad one are the
override schema of :mod:`distillery.overrides` (the policy reads a LaunchRequest's overrides with
the same schema); this module reads the file, checks what is JSON's business (encoding, syntax,
duplicate keys, an object) and files each of the schema's problems under its config rule.
Values are normalized on the way (``300.0`` → ``300``, ``"gpu"`` → ``"GPU"``), so the launcher
receives exactly the types the pipeline expects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from distillery._text import describe_json_value
from distillery.overrides import UNNAMED_EVAL_SET, ProblemKind, check_overrides
from distillery.validation import _rules as rules
from distillery.validation._names import DatasetKind
from distillery.validation._report import Finding, ValidationReport
from distillery.validation._rules import Rule

#: The config rule each kind of override problem is reported under.
RULE_OF_PROBLEM: dict[ProblemKind, Rule] = {
    ProblemKind.UNKNOWN_KEY: rules.CONFIG_UNKNOWN_KEY,
    ProblemKind.INVALID_VALUE: rules.CONFIG_INVALID_VALUE,
    ProblemKind.NEEDS_EVAL: rules.CONFIG_NEEDS_EVAL,
    ProblemKind.CMEK_UNSUPPORTED: rules.CONFIG_CMEK_UNSUPPORTED,
    ProblemKind.NOT_FOR_BACKEND: rules.CONFIG_NOT_FOR_BACKEND,
    ProblemKind.TRAIN_STEPS_OUTSIDE_RECOMMENDED: rules.CONFIG_TRAIN_STEPS_OUTSIDE_RECOMMENDED,
    ProblemKind.EVALUATION_INTERVAL_TOO_LONG: rules.CONFIG_EVALUATION_INTERVAL_TOO_LONG,
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
    return UNNAMED_EVAL_SET


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
    backend: str | None = None,
) -> ConfigValidation:
    """Validate the config sidecar ``data`` (the whole file; configs are small).

    ``has_eval`` says whether the dataset has an eval set: evaluation parameters need one.
    ``backend`` is the deployment's (``DISTILLERY_BACKEND``), which the sidecar's own
    ``backend`` replaces: given (or named by the sidecar), a key only the other backend reads is
    a ``config_not_for_backend`` error. Raises nothing: every problem is a finding in the report.
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

    checked = check_overrides(
        parsed, has_eval=has_eval, eval_set=_eval_name_for(source), backend=backend
    )
    for problem in checked.problems:
        report.add(
            RULE_OF_PROBLEM[problem.kind], Finding(field=problem.field, message=problem.message)
        )
    return ConfigValidation(report=report, overrides=checked.values if report.valid else {})
