"""``distillery validate PATH``: validate a local dataset file the way the bucket function would.

A training set ``<name>.jsonl`` is validated together with its siblings by the bucket naming
conventions: ``<name>.eval.jsonl`` (an invalid eval set makes the whole result invalid, and inputs
shared with the training set are warned about) and ``<name>.config.json`` (job overrides).

A training set without answers that a gemini job would tune on in the supervised mode (the
sidecar's ``backend``/``tuning_mode``, else ``DISTILLERY_BACKEND``/``DISTILLERY_TUNING_MODE``) is
labeled by the teacher before tuning: the output says so (``labeling`` in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from distillery.commands.cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from distillery.validation._config import validate_config
from distillery.validation._jsonl import JsonlValidation, add_overlap_findings, validate_jsonl
from distillery.validation._names import DatasetKind
from distillery.validation._render import render_text
from distillery.validation._report import ValidationReport

#: A config sidecar larger than this cannot be a config file; only its head is validated.
CONFIG_MAX_BYTES = 64 << 10

_EVAL_SUFFIX = ".eval.jsonl"
_GOLDEN_SUFFIX = ".golden.jsonl"
_CONFIG_SUFFIX = ".config.json"
_TRAINING_SUFFIX = ".jsonl"


class UsageError(Exception):
    """The command line names something that cannot be validated."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``validate`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "validate",
        help="validate a dataset, eval set or config sidecar on this machine",
        description=(
            "Validate a local JSON Lines dataset (NAME.jsonl), eval set (NAME.eval.jsonl) or "
            "config sidecar (NAME.config.json) with the rules the bucket function applies. "
            "A training set is validated with its NAME.eval.jsonl and NAME.config.json siblings "
            "when they exist. Exit status: 0 valid, 1 invalid, 2 usage error."
        ),
    )
    parser.add_argument("path", metavar="PATH", help="the file to validate")
    parser.add_argument(
        "--eval",
        dest="as_eval",
        action="store_true",
        help="validate PATH as an eval set (implied by a .eval.jsonl name)",
    )
    parser.add_argument(
        "--json",
        dest="as_json",
        action="store_true",
        help='print one JSON object {"valid": ..., "reports": [...]} instead of text',
    )
    parser.set_defaults(handler=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    """Validate ``args.path`` (and its siblings), print the report(s); return the exit code."""
    try:
        reports = _validate_path(Path(args.path), as_eval=bool(args.as_eval))
    except UsageError as exc:
        sys.stderr.write(f"distillery validate: {exc}\n")
        return EXIT_USAGE
    valid = all(report.valid for report in reports)
    try:
        labeling = _labeling_note(Path(args.path), reports)
    except UsageError as exc:
        sys.stderr.write(f"distillery validate: {exc}\n")
        return EXIT_USAGE
    if args.as_json:
        document: dict[str, object] = {
            "valid": valid,
            "reports": [report.to_json_dict() for report in reports],
        }
        if labeling is not None:
            document["labeling"] = labeling
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write("\n".join(render_text(report) for report in reports))
        if labeling is not None:
            sys.stdout.write(f"\nLabeling: {labeling['note']}\n")
        if len(reports) > 1:
            invalid = [report.source for report in reports if not report.valid]
            overall = "VALID" if valid else f"INVALID ({', '.join(invalid)} not valid)"
            sys.stdout.write(f"\nOverall: {overall}\n")
    return EXIT_OK if valid else EXIT_INVALID


def _labeling_note(path: Path, reports: list[ValidationReport]) -> dict[str, str] | None:
    """What the teacher will do with an unlabeled training set a supervised gemini job tunes on,
    or None (labeled, another kind of file, the pipeline backend, the distillation mode, or
    ``rationales=none``, which the plan refuses for an unlabeled set).

    Raises:
        UsageError: a ``DISTILLERY_*`` setting the choice depends on is malformed.
    """
    training = reports[0]
    if training.kind is not DatasetKind.TRAINING or training.labeling != "unlabeled":
        return None
    from distillery.core.errors import ConfigurationError
    from distillery.core.settings import Settings

    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    config: object = None
    sidecar = _sibling(path, _TRAINING_SUFFIX, _CONFIG_SUFFIX)
    if path.name.endswith(_TRAINING_SUFFIX) and sidecar.is_file():
        try:
            config = json.loads(sidecar.read_bytes()[:CONFIG_MAX_BYTES])
        except (ValueError, UnicodeDecodeError):
            config = None  # Its own report says what is wrong.
    overrides = config if isinstance(config, dict) else {}
    backend = str(overrides.get("backend") or settings.backend).strip().lower()
    mode = str(overrides.get("tuning_mode") or settings.tuning_mode).strip().lower()
    rationales = str(overrides.get("rationales") or "teacher").strip().lower()
    if backend != "gemini" or mode != "supervised" or rationales != "teacher":
        return None
    teacher = str(overrides.get("teacher_model") or settings.labeling_teacher_model)
    return {
        "mode": "labels_and_rationales",
        "teacher_model": teacher,
        "note": (
            f"the {training.examples:,} examples have no answers: a gemini job has the teacher "
            f"{teacher} label and explain every one (a batch prediction job, billed by its "
            "tokens) before tuning; `distillery plan` shows the estimate"
        ),
    }


def _check_file(path: Path) -> None:
    """Raise :class:`UsageError` unless ``path`` is an existing regular file."""
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory; give a .jsonl or .config.json file")
    if not path.is_file():
        raise UsageError(f"{path}: not a regular file")


def _validate_jsonl_file(path: Path, kind: DatasetKind) -> JsonlValidation:
    """Validate the JSON Lines file at ``path``. Raises :class:`UsageError` if unreadable."""
    _check_file(path)
    try:
        with path.open("rb") as stream:
            return validate_jsonl(stream, kind=kind, source=str(path))
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read: {exc.strerror or exc}") from exc


def _validate_config_file(path: Path, has_eval: bool) -> ValidationReport:
    """Validate the config sidecar at ``path``. Raises :class:`UsageError` if unreadable."""
    _check_file(path)
    try:
        with path.open("rb") as stream:
            data = stream.read(CONFIG_MAX_BYTES)
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    return validate_config(
        data, source=str(path), has_eval=has_eval, backend=_deployment_backend()
    ).report


def _deployment_backend() -> str:
    """The backend a sidecar is judged for: ``DISTILLERY_BACKEND``, as the deployment judges it.

    Raises:
        UsageError: ``DISTILLERY_BACKEND`` names no backend.
    """
    from distillery.core.settings import BACKENDS, DEFAULT_BACKEND, Settings

    backend = os.environ.get(Settings.env_name("backend"), "").strip() or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise UsageError(
            f"{Settings.env_name('backend')} must be one of {', '.join(BACKENDS)}, got {backend!r}"
        )
    return backend


def _sibling(path: Path, suffix: str, new_suffix: str) -> Path:
    return path.with_name(path.name[: -len(suffix)] + new_suffix)


def _validate_path(path: Path, *, as_eval: bool) -> list[ValidationReport]:
    """Every report for ``path``: itself, then its eval set and config sidecar if a training set.

    Raises:
        UsageError: a file cannot be validated (missing, a directory, unreadable) or the
            options contradict the name.
    """
    name = path.name
    if name.endswith(_CONFIG_SUFFIX):
        if as_eval:
            raise UsageError(f"{path}: --eval does not apply to a config sidecar")
        _check_file(path)
        has_eval = _sibling(path, _CONFIG_SUFFIX, _EVAL_SUFFIX).is_file()
        return [_validate_config_file(path, has_eval)]
    if as_eval or name.endswith(_EVAL_SUFFIX):
        return [_validate_jsonl_file(path, DatasetKind.EVAL).report]
    if name.endswith(_GOLDEN_SUFFIX):
        return [_validate_jsonl_file(path, DatasetKind.GOLDEN).report]

    if not name.endswith(_TRAINING_SUFFIX):
        return [_validate_jsonl_file(path, DatasetKind.TRAINING).report]
    eval_path = _sibling(path, _TRAINING_SUFFIX, _EVAL_SUFFIX)
    config_path = _sibling(path, _TRAINING_SUFFIX, _CONFIG_SUFFIX)
    return validate_files(
        path,
        eval_path if eval_path.is_file() else None,
        config_path if config_path.is_file() else None,
    )


def validate_files(
    training: Path, evaluation: Path | None = None, config: Path | None = None
) -> list[ValidationReport]:
    """The reports of a training set, its eval set and its config sidecar (when given), checked
    together as the bucket function checks them (train/eval overlap, eval-only parameters).

    Raises:
        UsageError: a file is missing, a directory or unreadable.
    """
    trained = _validate_jsonl_file(training, DatasetKind.TRAINING)
    reports = [trained.report]
    if evaluation is not None:
        evaluated = _validate_jsonl_file(evaluation, DatasetKind.EVAL)
        add_overlap_findings(trained, evaluated.input_digests, eval_source=str(evaluation))
        reports.append(evaluated.report)
    if config is not None:
        reports.append(_validate_config_file(config, evaluation is not None))
    return reports
