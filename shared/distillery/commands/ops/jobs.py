"""``distillery jobs``, ``show`` and ``watch``: what the jobs are doing, listed, one in full, live.

:func:`follow` and :func:`watch_request` are also how ``submit --watch`` and ``rerun --watch``
follow the job they launch.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from distillery.commands.cli import EXIT_INVALID, EXIT_OK
from distillery.commands.ops._common import (
    Invalid,
    add_follow_options,
    dependencies,
    job_record,
    positive,
    print_json,
    run,
)
from distillery.commands.watch import wait_until
from distillery.core.errors import DistilleryError, ObjectNotFoundError
from distillery.core.models import JobState
from distillery.core.ports import Order
from distillery.core.runtime import Dependencies


def register(subparsers: Any) -> None:
    """Add ``jobs``, ``show`` and ``watch`` to the ``distillery`` command."""
    jobs = subparsers.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--state", choices=[s.value for s in JobState], help="only jobs in STATE")
    jobs.add_argument("--limit", type=positive, default=20, help="at most N jobs (%(default)s)")
    jobs.add_argument("--json", dest="as_json", action="store_true", help="a JSON array")
    jobs.set_defaults(handler=run, action=_jobs)

    show = subparsers.add_parser("show", help="one job: request, spec, history, metrics, decision")
    show.add_argument("job_id", metavar="JOB")
    show.add_argument("--json", dest="as_json", action="store_true", help="the record as JSON")
    show.set_defaults(handler=run, action=_show)

    watch = subparsers.add_parser(
        "watch",
        help="follow a job (or every job) live: states in order, training progress",
        description="Subscribe to the status topic and print every state a job reaches, in "
        "order, with its training progress (step, loss, eval accuracy) while it runs. With JOB, "
        "exit when the job ends: 0 when PROMOTED (or later rolled back), 1 when it ended "
        "otherwise, 4 on --timeout. Without JOB, follow every job until interrupted.",
    )
    watch.add_argument("job_id", metavar="JOB", nargs="?")
    add_follow_options(watch)
    watch.set_defaults(handler=run, action=_watch)


# --- jobs, show ----------------------------------------------------------------------------------


def _jobs(args: argparse.Namespace) -> int:
    deps = dependencies()
    where = {"state": args.state} if args.state else None
    # Newest first, ties by job id (the document id), read by Firestore up to the limit only.
    records = deps.records.list(
        deps.settings.jobs_collection,
        where=where,
        order_by=Order("created_at", descending=True),
        limit=args.limit,
    )
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
        print_json(rows)
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
    record = job_record(deps, args.job_id)
    if args.as_json:
        print_json(record)
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
    for key in ("pipeline_job", "batch_prediction_job", "tuning_job", "model", "endpoint"):
        if record.get(key):
            lines.append(f"{key.replace('_', ' '):<9} {record[key]}")
    lines.extend(_labeling_lines(record, deps))
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


#: The lines not labeled that ``show`` lists (the report in the bucket lists every one).
SHOWN_UNLABELED_LINES = 20


def _labeling_lines(record: dict[str, Any], deps: Dependencies) -> list[str]:
    """What ``show`` says of a job's labeling stage: the teacher, the counts, and the lines the
    teacher did not label, read from the labeling report (the first
    :data:`SHOWN_UNLABELED_LINES`)."""
    spec = record.get("labeling")
    if not spec:
        return []
    lines = [f"labeling  {spec.get('mode')} by {spec.get('teacher_model')}"]
    result = record.get("labeling_result")
    progress = record.get("labeling_progress")
    if not result:
        if progress:
            done = ", ".join(
                f"{key} {progress[key]}"
                for key in ("successful", "failed", "incomplete")
                if progress.get(key) is not None
            )
            state = f"  batch job {progress.get('batch_state')}"
            lines.append(f"{state}: {done}" if done else state)
        return lines
    counts = ", ".join(f"{k} {v}" for k, v in sorted((result.get("counts") or {}).items()) if v)
    lines.append(
        f"  {counts} of {result.get('source_examples')} examples "
        f"(labeled fraction {float(result.get('labeled_fraction') or 0):.3f})"
    )
    uri = str(result.get("report_uri") or "")
    if not uri:
        return lines
    lines.append(f"  report    {uri}")
    try:
        bucket, name = uri.removeprefix("gs://").split("/", 1)
        report = json.loads(deps.objects.read_bytes(bucket, name))
    except (DistilleryError, ValueError) as exc:
        lines.append(f"  (the report could not be read: {exc})")
        return lines
    unlabeled = report.get("lines") or []
    for entry in unlabeled[:SHOWN_UNLABELED_LINES]:
        lines.append(f"  line {entry.get('line')}: {entry.get('outcome')}: {entry.get('detail')}")
    if len(unlabeled) > SHOWN_UNLABELED_LINES:
        lines.append(f"  ... and {len(unlabeled) - SHOWN_UNLABELED_LINES} more lines in the report")
    return lines


def _render(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


# --- watch ---------------------------------------------------------------------------------------


def _watch(args: argparse.Namespace) -> int:
    deps = dependencies()
    if args.job_id is not None:
        job_record(deps, args.job_id)  # A clear error for an unknown job, before subscribing.
    return follow(deps, args.job_id, args)


def follow(deps: Dependencies, job_id: str | None, args: argparse.Namespace) -> int:
    """Report job ``job_id``'s states (every job's: None) as ``args`` asks; the exit code.

    0 when the job was PROMOTED (or later rolled back), 1 when it ended otherwise; always 0 when
    following every job.

    Raises:
        Invalid: the job has no record.
        TimeoutError: the job had not ended after ``args.timeout`` seconds.
    """
    from distillery.adapters.pubsub import TemporarySubscription
    from distillery.commands.watch import FINAL_STATES, Follower, JsonOutput, TextOutput

    output = JsonOutput() if args.as_json else TextOutput()
    with TemporarySubscription(deps.settings.project, deps.settings.status_topic) as feed:
        follower = Follower(deps, feed, output, job_id=job_id, poll_interval=args.interval)
        try:
            state = follower.follow(timeout=args.timeout)
        except ObjectNotFoundError as exc:
            raise Invalid(str(exc)) from None
    if job_id is None:
        return EXIT_OK
    if state not in FINAL_STATES:
        raise TimeoutError(f"job {job_id} is still {state} after {args.timeout:g} s")
    return EXIT_OK if state in (JobState.PROMOTED, JobState.ROLLED_BACK) else EXIT_INVALID


def watch_request(deps: Dependencies, request_id: str, args: argparse.Namespace) -> int:
    """Wait for the launcher's job of ``request_id``, then :func:`follow` it; the exit code.

    Raises:
        TimeoutError: no job was recorded, or it did not end, within ``args.timeout`` seconds.
        Invalid: the job's record went away.
    """

    def launched() -> str | None:
        found = deps.records.list(
            deps.settings.jobs_collection, where={"request_id": request_id}, limit=1
        )
        return str(found[0]["job_id"]) if found else None

    job_id = wait_until(launched, "the launcher to record the job", args.timeout)
    return follow(deps, job_id, args)
