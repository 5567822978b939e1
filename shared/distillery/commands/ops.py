"""The operator's commands: ``submit``, ``jobs``, ``show``, ``watch``, ``rerun``, ``rollback``,
``predict``.

They talk to the project the environment names (``GOOGLE_CLOUD_PROJECT``, ``DISTILLERY_BUCKET``
and the rest of the settings), through the same clients as the functions; with the emulators'
variables set (``eval "$(distillery dev env)"``) they talk to the local stack. Exit codes (as
``distillery.commands.cli`` says): 0 success, 1 the thing asked about is bad or ended badly (an
invalid dataset, an unknown job, a job that FAILED or was REJECTED), 2 usage or configuration
errors, 3 a service could not be reached, 4 a wait timed out.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distillery.commands.cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from distillery.commands.watch import wait_until
from distillery.core.errors import ConfigurationError, ObjectNotFoundError, PermanentError
from distillery.core.models import JobState, LaunchRequest
from distillery.core.runtime import Dependencies, google_dependencies
from distillery.core.settings import Settings

EXIT_TIMEOUT = 4
_DEV_ENV_HINT = 'for the local stack run: eval "$(distillery dev env)"'


class _Usage(Exception):
    """The command line asks for something that cannot be done as given (exit 2)."""


class _Invalid(Exception):
    """What the command was given or asked about is bad (exit 1); the message says why."""


def register(subparsers: Any) -> None:
    """Add the operator's commands to the ``distillery`` command."""
    submit = subparsers.add_parser(
        "submit",
        help="validate a dataset here, then upload it to the bucket (which launches a job)",
        description="Validate a training set (and its eval set and config) on this machine, "
        "then upload them under the bucket's datasets/ folder: the eval set and config first, "
        "the training set last, since the training set's upload starts validation and launch. "
        "Nothing is uploaded when a file is invalid.",
    )
    submit.add_argument("path", type=Path, help="the training set (JSON Lines)")
    submit.add_argument("--eval", dest="eval_path", type=Path, help="its evaluation set")
    submit.add_argument("--config", dest="config_path", type=Path, help="its config sidecar")
    submit.add_argument(
        "--name",
        help="the dataset's name in the bucket: datasets/NAME.jsonl (default: the file's name)",
    )
    _add_watch_options(submit, "then follow the job it launches until it ends")
    submit.set_defaults(handler=_run, action=_submit)

    jobs = subparsers.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--state", choices=[s.value for s in JobState], help="only jobs in STATE")
    jobs.add_argument("--limit", type=_positive, default=20, help="at most N jobs (%(default)s)")
    jobs.add_argument("--json", dest="as_json", action="store_true", help="a JSON array")
    jobs.set_defaults(handler=_run, action=_jobs)

    show = subparsers.add_parser("show", help="one job: request, spec, history, metrics, decision")
    show.add_argument("job_id", metavar="JOB")
    show.add_argument("--json", dest="as_json", action="store_true", help="the record as JSON")
    show.set_defaults(handler=_run, action=_show)

    watch = subparsers.add_parser(
        "watch",
        help="follow a job (or every job) live: states in order, training progress",
        description="Subscribe to the status topic and print every state a job reaches, in "
        "order, with its training progress (step, loss, eval accuracy) while it runs. With JOB, "
        "exit when the job ends: 0 when PROMOTED (or later rolled back), 1 when it ended "
        "otherwise, 4 on --timeout. Without JOB, follow every job until interrupted.",
    )
    watch.add_argument("job_id", metavar="JOB", nargs="?")
    _add_follow_options(watch)
    watch.set_defaults(handler=_run, action=_watch)

    rerun = subparsers.add_parser(
        "rerun",
        help="launch a job again on the same dataset, with some parameters changed",
        description="Publish a LaunchRequest with rerun_of=JOB: the job's dataset and "
        "parameters, with --set values on top (job parameters of the config sidecar, or "
        "promotion gates such as min_eval_accuracy).",
    )
    rerun.add_argument("job_id", metavar="JOB")
    rerun.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter (VALUE read as JSON when it parses, else as text); repeatable",
    )
    rerun.add_argument(
        "--request-id",
        help="the request's idempotency key (default: a new one); the same key never "
        "launches twice",
    )
    _add_watch_options(rerun, "then follow the job it launches until it ends")
    rerun.set_defaults(handler=_run, action=_rerun)

    rollback = subparsers.add_parser(
        "rollback",
        help="give a model family's endpoint back to its previous champion",
        description="Send all of the family's endpoint traffic back to the previous champion, "
        "undeploy the current one and mark its job ROLLED_BACK (announced on the status topic).",
    )
    rollback.add_argument("family", metavar="FAMILY", help="the model family (its display name)")
    rollback.add_argument(
        "--job",
        help="roll back only if JOB's model is the champion (safe to repeat: a second call "
        "changes nothing)",
    )
    rollback.add_argument("--json", dest="as_json", action="store_true", help="the family as JSON")
    rollback.set_defaults(handler=_run, action=_rollback)

    predict = subparsers.add_parser(
        "predict",
        help="ask an endpoint to answer prompts",
        description="Send prompts to a Vertex AI endpoint (text-model instances) and print one "
        "answer a line. ENDPOINT is a resource name, an endpoint id, or a model family (the "
        "endpoint named after it in DISTILLERY_REGION).",
    )
    predict.add_argument("endpoint", metavar="ENDPOINT")
    predict.add_argument("text", metavar="TEXT", nargs="+", help="prompts; - reads one a line")
    predict.add_argument("--json", dest="as_json", action="store_true", help="answers as JSON")
    predict.set_defaults(handler=_run, action=_predict)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value


def _add_follow_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", dest="as_json", action="store_true", help="one JSON object a line"
    )
    parser.add_argument(
        "--timeout", type=_seconds, default=None, help="stop waiting after SECONDS (exit 4)"
    )
    parser.add_argument(
        "--interval",
        type=_seconds,
        default=1.0,
        help="seconds between looks at progress (%(default)s)",
    )


def _add_watch_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--watch", action="store_true", help=what)
    _add_follow_options(parser)


# --- plumbing ------------------------------------------------------------------------------------


def _settings(*required: str) -> Settings:
    settings = Settings.from_env()
    missing = [Settings.env_name(name) for name in required if not getattr(settings, name)]
    if missing:
        raise ConfigurationError(f"not set: {', '.join(missing)} ({_DEV_ENV_HINT})")
    return settings


def dependencies(*required: str) -> Dependencies:
    """The Google Cloud adapters the environment points at (emulators included).

    Raises:
        ConfigurationError: the project, or a setting of ``required``, is not set.
    """
    # The library logs for Cloud Logging; a command reports in its own words.
    library = logging.getLogger("distillery")
    if not any(isinstance(h, logging.NullHandler) for h in library.handlers):
        library.addHandler(logging.NullHandler())
    return google_dependencies(_settings("project", *required))


def _run(args: argparse.Namespace) -> int:
    """Run the command's ``action``, mapping this module's errors to exit codes."""
    command = f"distillery {args.command}"
    try:
        code: int = args.action(args)
    except _Usage as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _Invalid as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except TimeoutError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    return code


def _json(document: Any) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True, default=str))


def _job_record(deps: Dependencies, job_id: str) -> dict[str, Any]:
    record = deps.records.get(deps.settings.jobs_collection, job_id)
    if record is None:
        known = [
            r["job_id"]
            for r in deps.records.list(deps.settings.jobs_collection)
            if str(r.get("job_id", "")).startswith(job_id)
        ]
        hint = f"; did you mean {', '.join(sorted(known)[:3])}?" if known else ""
        raise _Invalid(f"there is no job {job_id!r}{hint}")
    return record


# --- submit --------------------------------------------------------------------------------------


def _dataset_name(args: argparse.Namespace) -> str:
    name = str(args.name or args.path.name)
    for suffix in (".eval.jsonl", ".config.json", ".jsonl"):
        if name.endswith(suffix):
            if suffix != ".jsonl":
                raise _Usage(f"{name} is named like an {suffix} file; give the training set")
            name = name[: -len(suffix)]
            break
    if not name or name.startswith("/") or ".." in name.split("/"):
        raise _Usage(f"not a dataset name: {name!r}")
    return name


def _submit(args: argparse.Namespace) -> int:
    from distillery.commands.validate import UsageError, validate_files
    from distillery.services.datasets import dataset_id
    from distillery.validation import render_text

    name = _dataset_name(args)
    try:
        reports = validate_files(args.path, args.eval_path, args.config_path)
    except UsageError as exc:
        raise _Usage(str(exc)) from None
    invalid = [report for report in reports if not report.valid]
    if invalid:
        sys.stderr.write("\n".join(render_text(report) for report in invalid))
        raise _Invalid(
            f"{', '.join(r.source for r in invalid)} not valid: nothing was uploaded "
            "(`distillery validate` shows every report)"
        )
    deps = dependencies("bucket")
    settings = deps.settings
    bucket = settings.bucket
    prefix = f"{settings.datasets_prefix}{name}"
    notes = []
    for given, suffix, what in (
        (args.eval_path, ".eval.jsonl", "eval set"),
        (args.config_path, ".config.json", "config"),
    ):
        if given is None and deps.objects.find(bucket, prefix + suffix) is not None:
            notes.append(
                f"gs://{bucket}/{prefix}{suffix} is already in the bucket: it is used as the "
                f"{what} (upload another with --{what.split()[0]}, or delete it)"
            )
    uploads = [
        (args.eval_path, ".eval.jsonl"),
        (args.config_path, ".config.json"),
        (args.path, ".jsonl"),
    ]
    uploaded: list[dict[str, Any]] = []
    for path, suffix in uploads:
        if path is None:
            continue
        content_type = "application/json" if suffix == ".config.json" else "application/jsonl"
        info = deps.objects.write_bytes(
            bucket, prefix + suffix, path.read_bytes(), content_type=content_type
        )
        uploaded.append({"uri": info.uri, "generation": info.generation})
    training = uploaded[-1]
    record_id = dataset_id(bucket, prefix + ".jsonl", int(training["generation"]))
    if args.as_json:
        print(json.dumps({"dataset_id": record_id, "uploaded": uploaded, "notes": notes}))
    else:
        for note in notes:
            print(f"note: {note}")
        for item in uploaded:
            print(f"uploaded {item['uri']} (generation {item['generation']})")
        print(f"dataset {record_id}: validation and launch follow in the bucket's functions")
    if not args.watch:
        return EXIT_OK
    record = wait_until(
        lambda: _validated(deps, record_id), "the dataset to be validated", args.timeout
    )
    if record["status"] != "valid":
        raise _Invalid(f"the bucket's validation found the dataset {record['status']}")
    return _watch_request(deps, record_id, args)


def _validated(deps: Dependencies, record_id: str) -> dict[str, Any] | None:
    record = deps.records.get(deps.settings.datasets_collection, record_id)
    if not record or not record.get("status"):
        return None
    launch = (record.get("launch") or {}).get("state")
    return (
        record if record["status"] != "valid" or launch in ("published", "not_applicable") else None
    )


def _watch_request(deps: Dependencies, request_id: str, args: argparse.Namespace) -> int:
    """Wait for the launcher's job of ``request_id``, then follow it."""

    def launched() -> str | None:
        found = deps.records.list(deps.settings.jobs_collection, where={"request_id": request_id})
        return str(found[0]["job_id"]) if found else None

    job_id = wait_until(launched, "the launcher to record the job", args.timeout)
    return _follow(deps, job_id, args)


# --- jobs, show ----------------------------------------------------------------------------------


def _jobs(args: argparse.Namespace) -> int:
    deps = dependencies()
    where = {"state": args.state} if args.state else None
    records = deps.records.list(deps.settings.jobs_collection, where=where)
    records.sort(key=lambda r: (str(r.get("created_at", "")), r["job_id"]), reverse=True)
    records = records[: args.limit]
    rows = [
        {
            "job_id": r["job_id"],
            "state": r.get("state"),
            "created_at": r.get("created_at"),
            "updated_at": r.get("updated_at"),
            "dataset_uri": (r.get("request") or {}).get("dataset_uri"),
            "rerun_of": (r.get("request") or {}).get("rerun_of"),
            "model": r.get("model"),
            "endpoint": r.get("endpoint"),
        }
        for r in records
    ]
    if args.as_json:
        _json(rows)
        return EXIT_OK
    if not rows:
        print("no jobs" + (f" in state {args.state}" if args.state else ""))
        return EXIT_OK
    width = max(len(r["job_id"]) for r in rows)
    print(f"{'JOB':<{width}}  {'STATE':<18}  {'CREATED':<19}  DATASET")
    for row in rows:
        created = str(row["created_at"] or "")[:19].replace("T", " ")
        dataset = row["dataset_uri"] or ""
        if row["rerun_of"]:
            dataset = f"{dataset} (rerun of {row['rerun_of']})".strip()
        print(f"{row['job_id']:<{width}}  {row['state']:<18}  {created:<19}  {dataset}")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    deps = dependencies()
    record = _job_record(deps, args.job_id)
    if args.as_json:
        _json(record)
        return EXIT_OK
    request = record.get("request") or {}
    spec = record.get("spec") or {}
    lines = [
        f"job       {record['job_id']}",
        f"state     {record.get('state')}",
        f"dataset   {request.get('dataset_uri', '')}",
    ]
    if request.get("eval_dataset_uri"):
        lines.append(f"eval set  {request['eval_dataset_uri']}")
    if request.get("rerun_of"):
        lines.append(f"rerun of  {request['rerun_of']}")
    if request.get("overrides"):
        given = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(request["overrides"].items()))
        lines.append(f"overrides {given}")
    for key in ("pipeline_job", "model", "endpoint"):
        if record.get(key):
            lines.append(f"{key.replace('_', ' '):<9} {record[key]}")
    if spec:
        lines.append("spec")
        lines.extend(f"  {k:<34} {_render(v)}" for k, v in sorted(spec.items()))
    lines.append("history")
    for entry in record.get("history") or []:
        reason = f"  {entry['reason']}" if entry.get("reason") else ""
        lines.append(f"  {entry['at']}  {entry['state']}{reason}")
    if record.get("metrics"):
        lines.append("metrics")
        lines.extend(f"  {k:<45} {v:.4f}" for k, v in sorted(record["metrics"].items()))
    decision = record.get("promotion")
    if decision:
        lines.append(f"promotion {decision['decision']} (decided {decision.get('decided_at')})")
        for failure in decision.get("failures") or []:
            lines.append(f"  - {failure}")
        champion = decision.get("champion")
        if champion:
            lines.append(f"  champion then: job {champion.get('job_id')}")
    print("\n".join(lines))
    return EXIT_OK


def _render(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


# --- watch ---------------------------------------------------------------------------------------


def _watch(args: argparse.Namespace) -> int:
    deps = dependencies()
    if args.job_id is not None:
        _job_record(deps, args.job_id)  # A clear error for an unknown job, before subscribing.
    return _follow(deps, args.job_id, args)


def _follow(deps: Dependencies, job_id: str | None, args: argparse.Namespace) -> int:
    from distillery.adapters.pubsub import TemporarySubscription
    from distillery.commands.watch import FINAL_STATES, Follower, JsonOutput, TextOutput

    output = JsonOutput() if args.as_json else TextOutput()
    with TemporarySubscription(deps.settings.project, deps.settings.status_topic) as feed:
        follower = Follower(deps, feed, output, job_id=job_id, poll_interval=args.interval)
        try:
            state = follower.follow(timeout=args.timeout)
        except ObjectNotFoundError as exc:
            raise _Invalid(str(exc)) from None
    if job_id is None:
        return EXIT_OK
    if state not in FINAL_STATES:
        raise TimeoutError(f"job {job_id} is still {state} after {args.timeout:g} s")
    return EXIT_OK if state in (JobState.PROMOTED, JobState.ROLLED_BACK) else EXIT_INVALID


# --- rerun ---------------------------------------------------------------------------------------


def _rerun(args: argparse.Namespace) -> int:
    from distillery.commands.plan import parse_assignment
    from distillery.policy import OVERRIDABLE_PARAMETERS
    from distillery.validation import validate_config

    overrides: dict[str, Any] = {}
    for text in args.assignments:
        try:
            key, value = parse_assignment(text)
        except ValueError as exc:
            raise _Usage(str(exc)) from None
        if key not in OVERRIDABLE_PARAMETERS:
            raise _Usage(
                f"--set {key}: not a parameter a rerun can set (use one of: "
                f"{', '.join(OVERRIDABLE_PARAMETERS)})"
            )
        overrides[key] = value
    deps = dependencies()
    original = _job_record(deps, args.job_id)
    request = original.get("request") or {}
    checked = validate_config(
        json.dumps({**(request.get("overrides") or {}), **overrides}).encode(),
        source="--set",
        has_eval=bool(request.get("eval_dataset_uri")),
    )
    if not checked.report.valid:
        problems = [
            finding.message for rule in checked.report.errors for finding in rule.findings
        ] or [rule.summary for rule in checked.report.errors]
        raise _Invalid("the rerun's parameters are invalid: " + "; ".join(problems))
    message = LaunchRequest(
        rerun_of=original["job_id"],
        overrides=overrides,
        request_id=args.request_id or f"rerun-{uuid.uuid4().hex}",
        requested_by=_who(),
    )
    deps.publisher.publish(
        deps.settings.launch_topic, message.to_bytes(), {"rerun_of": original["job_id"]}
    )
    if args.as_json:
        print(json.dumps({"request_id": message.request_id, "rerun_of": original["job_id"]}))
    else:
        print(
            f"rerun of {original['job_id']} requested on {deps.settings.launch_topic} "
            f"(request_id {message.request_id})"
        )
    if not args.watch:
        return EXIT_OK
    return _watch_request(deps, message.request_id, args)


def _who() -> str | None:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return None


# --- rollback, predict ---------------------------------------------------------------------------


def _rollback(args: argparse.Namespace) -> int:
    from distillery.services.promoter import rollback

    deps = dependencies()
    family = rollback(args.family, deps, from_job=args.job)
    if args.as_json:
        _json(family)
        return EXIT_OK
    champion = family.get("champion") or {}
    rolled = (family.get("rolled_back") or [{}])[-1]
    print(
        f"model family {args.family}: job {champion.get('job_id')}'s model "
        f"{champion.get('model')} serves {champion.get('endpoint')} again "
        f"(job {rolled.get('job_id')} is ROLLED_BACK)"
    )
    return EXIT_OK


def _prompts(texts: Sequence[str]) -> list[str]:
    prompts: list[str] = []
    for text in texts:
        if text == "-":
            prompts.extend(line.rstrip("\n") for line in sys.stdin if line.strip())
        else:
            prompts.append(text)
    if not prompts:
        raise _Usage("no prompt to send")
    return prompts


def _endpoint_name(deps: Dependencies, given: str) -> str:
    settings = deps.settings
    if given.startswith("projects/"):
        return given
    if given.isdigit():
        return f"projects/{settings.project}/locations/{settings.region}/endpoints/{given}"
    found = deps.require_endpoints().find_endpoint(given, settings.region)
    if found is None:
        raise _Invalid(
            f"no endpoint is named {given!r} in {settings.region} (a model family's endpoint is "
            "made when its first model is promoted)"
        )
    return str(found.name)


def _predict(args: argparse.Namespace) -> int:
    prompts = _prompts(args.text)
    deps = dependencies()
    endpoint = _endpoint_name(deps, args.endpoint)
    try:
        result = deps.require_endpoints().predict(endpoint, prompts)
    except ObjectNotFoundError:
        raise _Invalid(f"there is no endpoint {endpoint}") from None
    except PermanentError as exc:  # e.g. nothing deployed there receives traffic
        raise _Invalid(str(exc)) from None
    if args.as_json:
        _json(
            {
                "endpoint": endpoint,
                "deployed_model_id": result.deployed_model_id,
                "model": result.model,
                "predictions": [
                    {"prompt": p, "content": c}
                    for p, c in zip(prompts, result.contents, strict=False)
                ],
            }
        )
    else:
        for content in result.contents:
            print(content)
    return EXIT_OK
