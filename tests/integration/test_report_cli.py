"""``distillery report JOB`` against the local stack: the page and the JSON from fake-gcs-server.

The report is written as the promoter writes it (the JSON, and the page rendered from it, under
``reports/decisions/``); the command fetches it through the same storage adapter as every
command, writes the page where it is asked, and refuses a job without one by its uri.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from distillery.commands.cli import main
from distillery.core.jobs import new_record
from distillery.core.models import JobState
from distillery.core.runtime import Dependencies
from distillery.reports import decision_report_paths, render_decision_html
from tests.helpers import EVENTS

pytestmark = pytest.mark.integration

JOB = "news-0123abcd"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_report_fetches_the_page_and_the_json_from_the_bucket(
    stack: Any, stack_deps: Dependencies, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = json.loads((EVENTS / "decision_report.json").read_text())
    page = render_decision_html(report)
    bucket = stack_deps.settings.bucket
    json_name, html_name = decision_report_paths(JOB, stack_deps.settings.reports_prefix)
    stack_deps.objects.write_bytes(
        bucket, json_name, json.dumps(report).encode(), content_type="application/json"
    )
    stack_deps.objects.write_bytes(
        bucket, html_name, page.encode(), content_type="text/html; charset=utf-8"
    )
    stack_deps.records.set(
        stack_deps.settings.jobs_collection,
        JOB,
        new_record(JOB, JobState.REJECTED, stack_deps.clock(), {}),
    )

    out = tmp_path / "page.html"
    code, printed, err = _cli(capsys, "report", JOB, "--out", str(out), "--no-open")
    assert code == 0, err
    assert out.read_text(encoding="utf-8") == page
    assert f"report {out.resolve()}" in printed
    assert f"gs://{bucket}/reports/decisions/{JOB}.html" in printed

    code, printed, err = _cli(capsys, "report", JOB, "--json")
    assert code == 0, err
    assert json.loads(printed) == report

    # A job the bucket has no report of: the uri looked for, and the ids it may have meant.
    code, printed, err = _cli(capsys, "report", "news-0123", "--no-open")
    assert code == 1 and printed == ""
    assert f"no decision report at gs://{bucket}/reports/decisions/news-0123.html" in err
    assert f"did you mean {JOB}?" in err
