"""``distillery rerun``, ``rollback`` and ``golden``: a job launched again, a family's champion
given back, the golden set a family is judged on."""

from __future__ import annotations

import argparse
import getpass
import json
import time
import uuid
from typing import Any

from distillery.commands.cli import EXIT_OK
from distillery.commands.ops._common import (
    Invalid,
    Usage,
    add_watch_options,
    dependencies,
    job_record,
    print_json,
    run,
)
from distillery.commands.ops.jobs import watch_request
from distillery.core.models import LaunchRequest


def register(subparsers: Any) -> None:
    """Add ``rerun``, ``rollback`` and ``golden`` to the ``distillery`` command."""
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
    add_watch_options(rerun, "then follow the job it launches until it ends")
    rerun.set_defaults(handler=run, action=_rerun)

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
    rollback.set_defaults(handler=run, action=_rollback)

    golden = subparsers.add_parser(
        "golden",
        help="show a model family's golden set, or replace it (the champion is re-scored)",
        description="Without URI: the golden set the family's models are judged on. With URI "
        "(gs://BUCKET/OBJECT, a labeled JSONL of 10 to 250 examples): validate it, freeze it as "
        "the family's golden set, and score the champion on it; later jobs are judged on it.",
    )
    golden.add_argument("family", metavar="FAMILY", help="the model family (its display name)")
    golden.add_argument("uri", metavar="URI", nargs="?", help="the new golden set")
    golden.add_argument("--json", dest="as_json", action="store_true", help="the family as JSON")
    golden.set_defaults(handler=run, action=_golden)


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
            raise Usage(str(exc)) from None
        if key not in OVERRIDABLE_PARAMETERS:
            raise Usage(
                f"--set {key}: not a parameter a rerun can set (use one of: "
                f"{', '.join(OVERRIDABLE_PARAMETERS)})"
            )
        overrides[key] = value
    deps = dependencies()
    original = job_record(deps, args.job_id)
    request = original.get("request") or {}
    checked = validate_config(
        json.dumps({**(request.get("overrides") or {}), **overrides}).encode(),
        source="--set",
        has_eval=bool(request.get("eval_dataset_uri")),
        # The rerun runs on the backend its job ran on (unless --set backend names the other).
        backend=str(original.get("backend") or deps.settings.backend),
    )
    if not checked.report.valid:
        problems = [
            finding.message for rule in checked.report.errors for finding in rule.findings
        ] or [rule.summary for rule in checked.report.errors]
        raise Invalid("the rerun's parameters are invalid: " + "; ".join(problems))
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
    return watch_request(deps, message.request_id, args)


def _who() -> str | None:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return None


# --- rollback ------------------------------------------------------------------------------------


#: How long ``rollback`` waits for a family another decision holds (one that just finished
#: announces its state a moment before it lets the family go).
ROLLBACK_BUSY_WAIT_SECONDS = 20.0


def _rollback(args: argparse.Namespace) -> int:
    from distillery.services.promoter import FamilyBusyError, rollback

    deps = dependencies()
    deadline = time.monotonic() + ROLLBACK_BUSY_WAIT_SECONDS
    pause = 0.2
    while True:
        try:
            family = rollback(args.family, deps, from_job=args.job)
            break
        except FamilyBusyError:
            if time.monotonic() + pause > deadline:
                raise  # still busy: "try again later" (exit 3)
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
    if args.as_json:
        print_json(family)
        return EXIT_OK
    champion = family.get("champion") or {}
    rolled = (family.get("rolled_back") or [{}])[-1]
    print(
        f"model family {args.family}: job {champion.get('job_id')}'s model "
        f"{champion.get('model')} serves {champion.get('endpoint')} again "
        f"(job {rolled.get('job_id')} is ROLLED_BACK)"
    )
    return EXIT_OK


# --- golden --------------------------------------------------------------------------------------


def _golden(args: argparse.Namespace) -> int:
    from distillery.services.evaluation import GoldenSetError
    from distillery.services.promoter import NothingToRollBackError, replace_golden_set

    deps = dependencies()
    if args.uri:
        try:
            family = replace_golden_set(args.family, args.uri, deps)
        except (GoldenSetError, NothingToRollBackError) as exc:
            raise Invalid(str(exc)) from None
    else:
        family = deps.records.get(deps.settings.models_collection, args.family) or {}
        if not family:
            raise Invalid(f"model family {args.family!r} has no record")
    golden = family.get("golden") or {}
    if args.as_json:
        print_json({k: v for k, v in family.items() if k != "lease"})
        return EXIT_OK
    if not golden:
        print(
            f"model family {args.family} has no golden set yet: its first promoted job's eval "
            "set becomes it (or give one: distillery golden FAMILY gs://...)"
        )
        return EXIT_OK
    print(
        f"model family {args.family} is judged on {golden.get('uri')} "
        f"({golden.get('examples')} examples; {golden.get('source')}; frozen "
        f"{golden.get('frozen_at')})"
    )
    scores = (family.get("champion") or {}).get("golden_metrics") or {}
    if scores:
        figures = ", ".join(f"{k} {v:.4f}" for k, v in sorted(scores.items()))
        print(f"champion job {family['champion'].get('job_id')} on it: {figures}")
    return EXIT_OK
