"""``distillery cancel``: stop a job that has not finished."""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from distillery.commands.cli import EXIT_OK
from distillery.commands.ops._common import Invalid, dependencies, job_record, print_json, run
from distillery.core.errors import PermanentError


def register(subparsers: Any) -> None:
    """Add ``cancel`` to the ``distillery`` command."""
    cancel = subparsers.add_parser(
        "cancel",
        help="stop a job that has not finished",
        description="A REQUESTED or LABELING job ends CANCELLED at once and its teacher's batch "
        "prediction job is cancelled (a cancel Vertex AI did not take is tried again by "
        "reconcile). A gemini job that is SUBMITTED or RUNNING has its tuning job asked to stop; "
        "the job is CANCELLED once the service has stopped it. A job that has ended is left as "
        "it is (safe to repeat).",
    )
    cancel.add_argument("job_id", metavar="JOB")
    cancel.add_argument("--json", dest="as_json", action="store_true", help="the job as JSON")
    cancel.set_defaults(handler=run, action=_cancel)


def _cancel(args: argparse.Namespace) -> int:
    from distillery.services.labeling import cancel_job

    deps = dependencies()
    job_record(deps, args.job_id)  # an unknown job: say so, with the ids it may have meant
    try:
        record = cancel_job(args.job_id, deps, by=getpass.getuser())
    except PermanentError as exc:
        raise Invalid(str(exc)) from exc
    if args.as_json:
        print_json(record)
        return EXIT_OK
    line = f"{record['job_id']}: {record['state']}"
    if record.get("batch_cancel_pending"):
        line += " (its batch prediction job is still to be cancelled: reconcile retries it)"
    elif record["state"] in ("SUBMITTED", "RUNNING"):
        line += f" (its tuning job {record.get('tuning_job')} was asked to stop)"
    print(line)
    return EXIT_OK
