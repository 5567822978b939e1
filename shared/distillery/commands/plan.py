"""``distillery plan``: show what the launch policy would submit for a dataset, offline.

``distillery plan DATASET [--eval EVAL] [--set KEY=VALUE ...] [--json]``

- A local ``DATASET`` (``news.jsonl``) is validated like an upload and its examples counted; a
  sibling ``news.eval.jsonl`` is taken as the eval set (unless ``--eval`` names one) and a sibling
  ``news.config.json`` as the overrides, as the bucket does. The planned ``dataset_uri`` is the
  validated copy the bucket would launch: ``gs://BUCKET/<validated prefix><sha256>/news.jsonl``.
- A ``gs://`` ``DATASET`` is planned as given: nothing is read, so its size must be given with
  ``--examples N`` (and the eval set's, optionally, with ``--eval-examples N``).
- ``--set key=value`` overrides a job parameter (after the sidecar); the value is read as JSON
  when it parses (``train_steps=500``, ``enable_early_stopping=false``), else as a string.
- ``--set backend=gemini`` (or ``DISTILLERY_BACKEND=gemini``) plans a Vertex AI tuning job: a
  local dataset is validated and converted for it (its ``contents`` copy's tokens are counted
  for the planning cost) and the request printed is the ``tuningJobs.create`` body. A training
  set without answers (or ``--set rationales=teacher``) is labeled by the teacher first: the plan
  shows the labeling stage (teacher, mode, examples, estimated tokens and cost, the labeled
  fraction it needs, the rationale mixture, where its files go) and the
  ``batchPredictionJobs.create`` body. A ``gs://`` dataset's labeling is said with
  ``--labeling unlabeled`` (default: labeled).

The project and bucket come from ``--project`` / ``--bucket``, else ``GOOGLE_CLOUD_PROJECT`` /
``DISTILLERY_BUCKET``; else the project gcloud is configured with (``gcloud config get-value
project``, given a few seconds), else placeholders (``your-project``, ``your-bucket``: names the
request's checks accept, so the plan is the one a real project gets but for those names). Whatever
was not given is said so, in the text and under ``assumed`` in the JSON. No network call is made
(gcloud reads its local configuration). The printed ``job_id`` is the one this plan gets for
``--request-id`` with the dataset's content as its identity (whatever the plan resolves); the
bucket flow derives its own from the uploaded object's generation.

Exit codes: 0 the plan is accepted, 1 the dataset/eval/config is invalid or the policy refuses
(every reason is printed), 2 usage or configuration errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from distillery import policy
from distillery.commands.cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from distillery.core.models import LaunchRequest
from distillery.core.settings import BACKENDS, Settings
from distillery.facts import DEFAULT_GEMINI_TUNING_MODE, GEMINI_TUNING_MODES

DEFAULT_REQUEST_ID = "cli-plan"
#: What the plan uses for a setting it was not given (valid names, so every check still runs).
PLACEHOLDERS: dict[str, str] = {"project": "your-project", "bucket": "your-bucket"}
#: Seconds ``gcloud config get-value project`` may take before the placeholder is used instead.
GCLOUD_TIMEOUT = 5.0

logger = logging.getLogger(__name__)


class _UsageProblem(Exception):
    """A command-line mistake: reported, exit code 2."""


class _InvalidInput(Exception):
    """An invalid dataset, eval set or config sidecar: reported, exit code 1."""

    def __init__(self, what: str, problems: list[str]) -> None:
        super().__init__(what)
        self.what = what
        self.problems = problems


@dataclass(frozen=True)
class Assumed:
    """A setting the plan was not given: the value it used, where from, and what to do."""

    value: str
    #: ``"gcloud config"`` or ``"placeholder"``.
    source: str
    note: str

    def to_json(self) -> dict[str, str]:
        """``{"value", "source", "note"}``."""
        return {"value": self.value, "source": self.source, "note": self.note}


@dataclass(frozen=True)
class _Dataset:
    """A dataset as the plan sees it: where it would be launched from and its size."""

    uri: str
    examples: int | None
    identity: str
    #: What the user named (a path or URI), for the printout.
    label: str = ""
    sidecar: Path | None = None
    #: Tokens counted by validation (gemini backend, a local file); None: not counted.
    tokens: int | None = None
    #: The report's ``labeling`` (``unlabeled``: the teacher labels it), as the record says it.
    labeling: str | None = None


def register(subparsers: Any) -> None:
    """Add the ``plan`` subcommand to ``subparsers`` (from ``add_subparsers``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "plan",
        help="resolve a dataset's job under the launch policy and print it (no network call)",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
    )
    parser.add_argument("dataset", metavar="DATASET", help="a local .jsonl file or a gs:// URI")
    parser.add_argument("--eval", dest="eval_dataset", metavar="EVAL", help="the eval set")
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a job parameter (repeatable; the value is JSON when it parses)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--project",
        help="the Google Cloud project (else GOOGLE_CLOUD_PROJECT, else gcloud's, else a "
        "placeholder)",
    )
    parser.add_argument(
        "--bucket", help="the datasets bucket (else DISTILLERY_BUCKET, else a placeholder)"
    )
    parser.add_argument("--region", help="the pipeline region (else DISTILLERY_REGION)")
    parser.add_argument("--examples", type=int, help="examples in a gs:// DATASET")
    parser.add_argument("--eval-examples", type=int, help="examples in a gs:// eval set")
    parser.add_argument(
        "--labeling",
        choices=("labeled", "unlabeled"),
        help="whether a gs:// DATASET holds answers (default labeled; a local file is read)",
    )
    parser.add_argument(
        "--request-id", default=DEFAULT_REQUEST_ID, help="the request id the job_id is derived from"
    )
    parser.add_argument(
        "--running-jobs", type=int, default=0, help="assume this many active jobs (policy check)"
    )
    parser.add_argument(
        "--hours-today",
        type=float,
        default=0.0,
        help="assume this many accelerator-hours already spent today (budget check)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Plan the job ``args`` describes and print it; returns the exit code.

    Raises:
        ConfigurationError: a setting in the environment is malformed (the CLI maps it to 2).
    """
    try:
        settings, assumed = _settings(args)
        assignments = _assignments(args.assignments)
        backend = _backend(args, settings, assignments)
        mode = _tuning_mode(args, settings, assignments)
        dataset = _dataset(args, settings, backend, mode)
        evaluation = _eval_dataset(args, settings, dataset, backend)
        overrides = _sidecar_overrides(dataset, has_eval=evaluation is not None, backend=backend)
        overrides.update(assignments)
        request = LaunchRequest(
            dataset_uri=dataset.uri,
            eval_dataset_uri=evaluation.uri if evaluation else None,
            overrides=overrides,
            request_id=args.request_id,
        )
    except _UsageProblem as exc:
        _error(str(exc))
        return EXIT_USAGE
    except ValidationError as exc:
        _error(f"not a valid request: {exc.errors()[0]['msg']}")
        return EXIT_USAGE
    except _InvalidInput as exc:
        _error(f"{exc.what} is invalid:")
        for problem in exc.problems:
            _error(f"  - {problem}", prefix=False)
        return EXIT_INVALID

    assert dataset.examples is not None
    job_id = policy.job_id(
        source_identity=dataset.identity, request_id=args.request_id, dataset_name=dataset.uri
    )
    plan = policy.resolve(
        request,
        settings,
        dataset_examples=dataset.examples,
        eval_examples=evaluation.examples if evaluation else None,
        usage=policy.PolicyUsage(
            running_jobs=args.running_jobs, accelerator_hours_today=args.hours_today
        ),
        job_id=job_id,
        dataset_tokens=dataset.tokens,
        dataset_labeling=dataset.labeling,
    )
    if args.json:
        print(json.dumps(_json_output(plan, job_id, assumed), indent=2))
    else:
        inputs = [f"dataset: {args.dataset}"]
        inputs += [f"{name}: {given.value} ({given.note})" for name, given in assumed.items()]
        if evaluation is not None:
            inputs.append(f"eval set: {evaluation.label}")
        if dataset.sidecar is not None:
            inputs.append(f"overrides from: {dataset.sidecar}")
        if args.assignments:
            inputs.append(f"overrides set: {' '.join(args.assignments)}")
        print(_human_output(plan, job_id, inputs))
    return EXIT_OK if plan.accepted else EXIT_INVALID


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` → ``(key, value)``; the value is JSON when it parses, else the raw string.

    Raises:
        ValueError: ``text`` has no ``=`` or an empty key.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--set wants KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def _assignments(texts: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for text in texts:
        try:
            key, value = parse_assignment(text)
        except ValueError as exc:
            raise _UsageProblem(str(exc)) from None
        values[key] = value
    return values


def _backend(args: argparse.Namespace, settings: Settings, assignments: dict[str, Any]) -> str:
    """The backend the dataset is validated for: ``--set backend``, else the sidecar's
    ``backend``, else ``DISTILLERY_BACKEND``. A value that names no backend is left to the
    policy, which refuses it in the override schema's words."""
    chosen = _chosen(args, assignments, "backend")
    if isinstance(chosen, str) and chosen.strip().lower() in BACKENDS:
        return chosen.strip().lower()
    return settings.backend


def _tuning_mode(args: argparse.Namespace, settings: Settings, assignments: dict[str, Any]) -> str:
    """The gemini tuning mode the dataset is validated for (``distillation``: prompts only), as
    the backend is chosen: ``--set tuning_mode``, the sidecar's, ``DISTILLERY_TUNING_MODE``."""
    chosen = _chosen(args, assignments, "tuning_mode")
    if isinstance(chosen, str) and chosen.strip().lower() in GEMINI_TUNING_MODES:
        return chosen.strip().lower()
    return settings.tuning_mode


def _chosen(args: argparse.Namespace, assignments: dict[str, Any], key: str) -> Any:
    """``--set key``, else the local dataset's sidecar's ``key`` (None: neither gives it)."""
    chosen = assignments.get(key)
    if chosen is None and not args.dataset.startswith("gs://"):
        path = Path(args.dataset)
        sidecar = path.with_name(f"{_stem(path)}.config.json")
        if sidecar.is_file():
            try:
                config = json.loads(sidecar.read_bytes())
            except (ValueError, UnicodeDecodeError):
                config = None  # The sidecar's validation reports it.
            if isinstance(config, dict):
                chosen = config.get(key)
    return chosen


def _settings(args: argparse.Namespace) -> tuple[Settings, dict[str, Assumed]]:
    """The settings to plan with, and what of the project and bucket was assumed (by name).

    Raises:
        ConfigurationError: a setting in the environment is malformed.
    """
    explicit = {
        name: value
        for name, value in (
            ("project", args.project),
            ("bucket", args.bucket),
            ("region", args.region),
        )
        if value
    }
    settings = Settings.from_env(**explicit)
    assumed: dict[str, Assumed] = {}
    if not settings.project:
        configured = gcloud_project()
        if configured:
            assumed["project"] = Assumed(
                configured, "gcloud config", "from gcloud config: pass --project for another"
            )
    for name, placeholder in PLACEHOLDERS.items():
        if not getattr(settings, name) and name not in assumed:
            assumed[name] = Assumed(placeholder, "placeholder", f"placeholder: pass --{name}")
    if assumed:
        settings = dataclasses.replace(
            settings,
            project=assumed["project"].value if "project" in assumed else settings.project,
            bucket=assumed["bucket"].value if "bucket" in assumed else settings.bucket,
        )
    return settings, assumed


def gcloud_project(timeout: float | None = None) -> str | None:
    """The project ``gcloud config get-value project`` answers; None when gcloud is absent, has
    no project set, fails, or takes longer than ``timeout`` seconds (:data:`GCLOUD_TIMEOUT`).

    Raises nothing: the plan falls back to a placeholder.
    """
    program = shutil.which("gcloud")
    if program is None:
        return None
    try:
        completed = subprocess.run(
            [program, "config", "get-value", "project", "--quiet"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GCLOUD_TIMEOUT if timeout is None else timeout,
            env={**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"},
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("gcloud config get-value project failed: %s", exc)
        return None
    lines = completed.stdout.strip().splitlines()
    value = lines[-1].strip() if lines else ""
    # An unset property reads "(unset)" (on stderr, on some versions on stdout).
    if completed.returncode != 0 or not value or value == "(unset)" or " " in value:
        return None
    return value


def _dataset(
    args: argparse.Namespace, settings: Settings, backend: str, tuning_mode: str
) -> _Dataset:
    source: str = args.dataset
    if source.startswith("gs://"):
        if args.examples is None:
            raise _UsageProblem(
                "a gs:// DATASET is not read: give its number of examples with --examples N"
            )
        return _Dataset(
            uri=source,
            examples=args.examples,
            identity=source,
            label=source,
            labeling=args.labeling,
        )
    if args.labeling is not None:
        raise _UsageProblem("--labeling is only for a gs:// DATASET; a local file is read")
    if args.examples is not None:
        raise _UsageProblem("--examples is only for a gs:// DATASET; a local file is counted")
    path = Path(source)
    if not path.is_file():
        raise _UsageProblem(f"no such file: {source}")
    examples, sha256, tokens, labeling = _validate_local(
        path, settings, eval_set=False, backend=backend, tuning_mode=tuning_mode
    )
    stem = _stem(path)
    uri = f"gs://{settings.bucket}/{settings.validated_prefix}{sha256}/{stem}.jsonl"
    sidecar = path.with_name(f"{stem}.config.json")
    return _Dataset(
        uri=uri,
        examples=examples,
        identity=f"sha256:{sha256}",
        label=source,
        sidecar=sidecar if sidecar.is_file() else None,
        tokens=tokens,
        labeling=labeling if backend == "gemini" else None,
    )


def _eval_dataset(
    args: argparse.Namespace, settings: Settings, dataset: _Dataset, backend: str
) -> _Dataset | None:
    source: str | None = args.eval_dataset
    if source is None and dataset.identity.startswith("sha256:"):
        sibling = Path(args.dataset).with_name(f"{_stem(Path(args.dataset))}.eval.jsonl")
        source = str(sibling) if sibling.is_file() else None
    if source is None:
        if args.eval_examples is not None:
            raise _UsageProblem("--eval-examples needs an eval set (--eval)")
        return None
    if source.startswith("gs://"):
        return _Dataset(uri=source, examples=args.eval_examples, identity=source, label=source)
    if args.eval_examples is not None:
        raise _UsageProblem("--eval-examples is only for a gs:// eval set; a local file is counted")
    path = Path(source)
    if not path.is_file():
        raise _UsageProblem(f"no such file: {source}")
    examples, sha256, _, _ = _validate_local(path, settings, eval_set=True, backend=backend)
    name = f"{_stem(path).removesuffix('.eval')}.eval.jsonl"
    uri = f"gs://{settings.bucket}/{settings.validated_prefix}{sha256}/{name}"
    return _Dataset(uri=uri, examples=examples, identity=f"sha256:{sha256}", label=source)


def _validate_local(
    path: Path,
    settings: Settings,
    *,
    eval_set: bool,
    backend: str,
    tuning_mode: str = DEFAULT_GEMINI_TUNING_MODE,
) -> tuple[int, str, int | None, str | None]:
    """Validate a local JSONL file like an upload for ``backend``; returns (examples, sha256,
    tokens, labeling). For gemini the sha256 is the converted copy's and the tokens are counted
    (the default base model's limits apply); for the pipeline the tokens are None. ``labeling``
    is the report's (``labeled``, ``unlabeled``)."""
    from distillery.validation import DatasetKind, validate_jsonl, validated_copy

    kind = DatasetKind.EVAL if eval_set else DatasetKind.TRAINING
    with path.open("rb") as reader:
        if backend == "gemini":
            copy = validated_copy(
                reader,
                backend=backend,
                kind=kind,
                source=str(path),
                max_findings_per_rule=settings.max_findings_per_rule,
                tuning_mode=tuning_mode,
            )
            report = copy.drain().report
            if not report.valid:
                raise _InvalidInput(str(path), _problems(report))
            return int(report.examples), copy.sha256, copy.dataset_tokens, report.labeling
        result = validate_jsonl(
            reader,
            kind=kind,
            source=str(path),
            max_findings_per_rule=settings.max_findings_per_rule,
        )
    report = result.report
    if not report.valid:
        raise _InvalidInput(str(path), _problems(report))
    return int(report.examples), str(report.sha256), None, report.labeling


def _sidecar_overrides(dataset: _Dataset, *, has_eval: bool, backend: str) -> dict[str, Any]:
    """The sidecar's overrides, judged for ``backend`` (the one planned)."""
    if dataset.sidecar is None:
        return {}
    from distillery.validation import validate_config

    result = validate_config(
        dataset.sidecar.read_bytes(),
        source=str(dataset.sidecar),
        has_eval=has_eval,
        backend=backend,
    )
    if not result.report.valid:
        raise _InvalidInput(str(dataset.sidecar), _problems(result.report))
    return dict(result.overrides)


def _problems(report: Any) -> list[str]:
    """One line per listed error finding of a validation report, then what was left unlisted."""
    problems: list[str] = []
    for rule in report.errors:
        for finding in rule.findings:
            parts = []
            if finding.line is not None:
                parts.append(f"line {finding.line}")
            if finding.field:
                parts.append(f"field {finding.field}")
            where = ", ".join(parts)
            problems.append(f"{where}: {finding.message}" if where else str(finding.message))
        omitted = rule.count - len(rule.findings)
        if omitted > 0:
            problems.append(f"... and {omitted} more: {rule.summary}")
    return problems or ["(the validator gave no details)"]


def _stem(path: Path) -> str:
    return path.name.removesuffix(".jsonl") if path.name.endswith(".jsonl") else path.stem


def _error(message: str, *, prefix: bool = True) -> None:
    print(f"distillery plan: {message}" if prefix else message, file=sys.stderr)


def _json_output(plan: policy.Plan, job_id: str, assumed: dict[str, Assumed]) -> dict[str, Any]:
    return {
        "spec": plan.spec_dict(),
        "reasons": plan.reasons,
        "refusals": plan.refusals,
        "request": plan.request_body,
        "labeling": plan.labeling,
        "labeling_request": plan.labeling_body,
        "job_id": job_id,
        "assumed": {name: given.to_json() for name, given in assumed.items()},
    }


def _human_output(plan: policy.Plan, job_id: str, inputs: list[str]) -> str:
    spec = plan.spec_dict()
    width = max(len(key) for key in spec)
    verdict = "ACCEPTED" if plan.accepted else "REFUSED by policy"
    lines = [f"Plan: {verdict}", f"  {'job_id'.ljust(width)} : {job_id}"]
    lines += [f"  {line}" for line in inputs]
    lines += ["", "Spec:"]
    shown = {
        key: "(see Labeling)" if key == "labeling" and value else value
        for key, value in spec.items()
    }
    lines += [f"  {key.ljust(width)} : {_render(value)}" for key, value in shown.items()]
    lines += ["", "Reasons:"] + [f"  - {reason}" for reason in plan.reasons]
    if plan.refusals:
        lines += ["", "Refusals:"] + [f"  - {refusal}" for refusal in plan.refusals]
    region = plan.location
    collection = (
        "tuningJobs" if plan.backend == "gemini" else f"pipelineJobs?pipelineJobId={job_id}"
    )
    endpoint = (
        f"POST https://{region}-aiplatform.googleapis.com/{plan.api_version}/projects/"
        f"{plan.spec.project}"
        f"/locations/{region}/{collection}"
    )
    if plan.labeling is not None and plan.labeling_body is not None:
        lines += ["", *_labeling_lines(plan.labeling, plan.labeling_body, plan.spec.project)]
    lines += ["", f"Request ({endpoint}):", json.dumps(plan.request_body, indent=2)]
    return "\n".join(lines)


def _labeling_lines(labeling: dict[str, Any], body: dict[str, Any], project: str) -> list[str]:
    """The labeling stage: what the teacher does, what it costs, where its files go, the body."""
    from distillery import facts

    examples = int(labeling["source_examples"])
    fraction = float(labeling["min_labeled_fraction"])
    mixture = float(labeling["rationale_mixture"])
    estimate = "" if facts.GEMINI_TEACHER_PRICES_VERIFIED else " (an estimate: unverified prices)"
    rows = [
        ("teacher", f"{labeling['teacher_model']} (batch prediction in {labeling['location']})"),
        ("mode", str(labeling["mode"])),
        ("examples", f"{examples:,} from {labeling['source_uri']}"),
        (
            "tokens",
            f"{int(labeling['estimated_input_tokens']):,} in, "
            f"{int(labeling['estimated_output_tokens']):,} out (thinking included)",
        ),
        ("cost", f"${float(labeling['estimated_cost_usd']):,.2f}{estimate}"),
        (
            "threshold",
            f"at least {fraction:g} labeled ({-(-round(fraction * examples * 1e6) // 1_000_000):,}"
            f" of {examples:,}), else FAILED with every failed line listed",
        ),
        (
            "mixture",
            f"{mixture:g}: label task {labeling['label_task_prefix']!r} on every example, "
            f"rationale task {labeling['rationale_task_prefix']!r} on "
            f"{round(mixture * examples):,}",
        ),
        ("requests", str(labeling["input_uri"])),
        ("output", str(labeling["output_prefix"])),
        ("labeled set", f"{labeling['labeled_uri']} (lineage {labeling['lineage_uri']})"),
        ("training file", str(labeling["training_uri"])),
    ]
    width = max(len(name) for name, _ in rows)
    region = labeling["location"]
    endpoint = (
        f"POST https://{region}-aiplatform.googleapis.com/v1/projects/{project}"
        f"/locations/{region}/batchPredictionJobs"
    )
    return [
        "Labeling (state LABELING, before the tuning job):",
        *(f"  {name.ljust(width)} : {value}" for name, value in rows),
        "",
        f"Labeling request ({endpoint}):",
        json.dumps(body, indent=2),
    ]


def _render(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
