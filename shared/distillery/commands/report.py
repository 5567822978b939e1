"""``distillery report JOB``: fetch a job's decision report from the bucket and open it.

The promoter writes every evaluation's report beside its JSON, under
``reports/decisions/`` (:func:`distillery.reports.decision_report_paths`). This command writes the
page to a local file, prints where it is (and its ``gs://`` uri), and opens it in the browser;
``--json`` prints the JSON report instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import webbrowser
from pathlib import Path
from typing import Any

from distillery.commands.cli import EXIT_OK
from distillery.commands.ops._common import (
    Invalid,
    Usage,
    dependencies,
    job_record,
    print_json,
    run,
)
from distillery.core.errors import ObjectNotFoundError
from distillery.core.runtime import Dependencies
from distillery.reports import decision_report_paths

logger = logging.getLogger(__name__)

#: The most of a report read from the bucket: pages carry their charts inline.
MAX_REPORT_BYTES = 64 << 20


def register(subparsers: Any) -> None:
    """Add ``report`` to the ``distillery`` command."""
    report = subparsers.add_parser(
        "report",
        help="fetch a job's decision report (HTML with charts) and open it",
        description="Fetch the decision report the promoter wrote for JOB "
        "(reports/decisions/JOB.html in the bucket), write it to a local file, print its path "
        "and gs:// uri, and open it in the browser. With --json, print the JSON report instead.",
    )
    report.add_argument("job_id", metavar="JOB")
    report.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="PATH",
        help="where to write the page (default: JOB.html in the current directory)",
    )
    report.add_argument(
        "--no-open", dest="open_page", action="store_false", help="do not open a browser"
    )
    report.add_argument(
        "--json", dest="as_json", action="store_true", help="print the JSON report instead"
    )
    report.set_defaults(handler=run, action=_report)


def _report(args: argparse.Namespace) -> int:
    try:
        decision_report_paths(args.job_id)  # A bad id is a usage error, before any service.
    except ValueError as exc:
        raise Usage(str(exc)) from None
    deps = dependencies("bucket")
    json_name, html_name = decision_report_paths(args.job_id, deps.settings.reports_prefix)
    if args.as_json:
        raw = _fetch(deps, args.job_id, json_name)
        try:
            document = json.loads(raw)
        except ValueError as exc:
            uri = f"gs://{deps.settings.bucket}/{json_name}"
            raise Invalid(f"the decision report {uri} is not JSON: {exc}") from None
        print_json(document)
        return EXIT_OK
    page = _fetch(deps, args.job_id, html_name)
    out: Path = args.out if args.out is not None else Path.cwd() / f"{args.job_id}.html"
    try:
        out.write_bytes(page)
    except OSError as exc:
        raise Usage(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    path = out.resolve()
    print(f"report {path}")
    print(f"from   gs://{deps.settings.bucket}/{html_name}")
    if args.open_page and not _open(path.as_uri()):
        print(f"no browser could be opened: open {path} yourself")
    return EXIT_OK


def _fetch(deps: Dependencies, job_id: str, name: str) -> bytes:
    """The object ``name`` of the bucket.

    Raises:
        Invalid: it is not there (the message names the uri; for an unknown job, the ids it may
            have meant); it is larger than :data:`MAX_REPORT_BYTES`.
    """
    bucket = deps.settings.bucket
    uri = f"gs://{bucket}/{name}"
    try:
        return deps.objects.read_bytes(bucket, name, limit=MAX_REPORT_BYTES)
    except ObjectNotFoundError:
        pass
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    try:
        record = job_record(deps, job_id)
    except Invalid as exc:
        raise Invalid(f"no decision report at {uri}: {exc}") from None
    raise Invalid(
        f"no decision report at {uri}: job {job_id} is {record.get('state')}; "
        "a report is written when the promoter evaluates a job that succeeded"
    )


def _open(uri: str) -> bool:
    """Open ``uri`` in the user's browser; False when there is none (never an error)."""
    try:
        return webbrowser.open(uri)
    except (webbrowser.Error, OSError) as exc:
        logger.debug("no browser for %s: %s", uri, exc)
        return False
