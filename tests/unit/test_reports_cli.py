"""``distillery report JOB`` on the in-memory fakes: fetch, write, print, open; clear refusals."""

from __future__ import annotations

import json
import webbrowser
from pathlib import Path

import pytest

from distillery.commands import report as report_command
from distillery.commands.cli import build_parser, main
from distillery.core.jobs import new_record
from distillery.core.models import JobState
from distillery.core.runtime import Dependencies
from tests.helpers import BUCKET, EVENTS, fake_dependencies

JOB = "news-0123abcd"
PAGE = b"<!DOCTYPE html><html><body>the page of news-0123abcd</body></html>\n"
REPORT = (EVENTS / "decision_report.json").read_bytes()


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Dependencies:
    """Fakes with job JOB's record and report; the command uses them; browsers recorded."""
    deps = fake_dependencies()
    deps.records.set("jobs", JOB, new_record(JOB, JobState.PROMOTED, deps.clock(), {}))
    folder = "reports/decisions"  # the default reports prefix
    deps.objects.write_bytes(BUCKET, f"{folder}/{JOB}.html", PAGE, content_type="text/html")
    deps.objects.write_bytes(BUCKET, f"{folder}/{JOB}.json", REPORT)
    monkeypatch.setattr(report_command, "dependencies", lambda *required: deps)
    return deps


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The uris the command asked the browser to open (as if a browser opened each)."""
    uris: list[str] = []

    def open_in_browser(uri: str) -> bool:
        uris.append(uri)
        return True

    monkeypatch.setattr(webbrowser, "open", open_in_browser)
    return uris


def test_report_writes_the_page_prints_where_and_opens_it(
    world: Dependencies, opened: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine.html"
    assert main(["report", JOB, "--out", str(out)]) == 0
    assert out.read_bytes() == PAGE
    printed = capsys.readouterr().out
    assert f"report {out.resolve()}" in printed
    assert f"gs://{BUCKET}/reports/decisions/{JOB}.html" in printed
    assert opened == [out.resolve().as_uri()]


def test_report_writes_job_html_in_the_current_directory_by_default(
    world: Dependencies,
    opened: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", JOB, "--no-open"]) == 0
    assert (tmp_path / f"{JOB}.html").read_bytes() == PAGE
    assert opened == []
    assert str((tmp_path / f"{JOB}.html").resolve()) in capsys.readouterr().out


@pytest.mark.parametrize("browser", ["none", "broken"])
def test_report_never_fails_without_a_browser(
    browser: str,
    world: Dependencies,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def open_in_browser(uri: str) -> bool:
        if browser == "broken":
            raise webbrowser.Error("could not locate runnable browser")
        return False

    monkeypatch.setattr(webbrowser, "open", open_in_browser)
    out = tmp_path / "r.html"
    assert main(["report", JOB, "--out", str(out)]) == 0
    assert out.read_bytes() == PAGE
    assert f"no browser could be opened: open {out.resolve()} yourself" in capsys.readouterr().out


def test_report_json_prints_the_json_report_and_writes_nothing(
    world: Dependencies,
    opened: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", JOB, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(REPORT)
    assert list(tmp_path.iterdir()) == [] and opened == []


def test_report_of_an_unknown_job_names_the_uri_and_the_jobs_it_may_mean(
    world: Dependencies, opened: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "news-0123"]) == 1
    err = capsys.readouterr().err
    assert "no decision report at gs://bkt-test/reports/decisions/news-0123.html" in err
    assert f"did you mean {JOB}?" in err
    assert opened == []


def test_report_of_a_job_without_one_says_the_job_s_state(
    world: Dependencies, capsys: pytest.CaptureFixture[str]
) -> None:
    world.records.set("jobs", "news-9", new_record("news-9", JobState.RUNNING, world.clock(), {}))
    assert main(["report", "news-9", "--json"]) == 1
    err = capsys.readouterr().err
    assert "no decision report at gs://bkt-test/reports/decisions/news-9.json" in err
    assert "job news-9 is RUNNING" in err


def test_report_refuses_a_report_that_is_not_json(
    world: Dependencies, capsys: pytest.CaptureFixture[str]
) -> None:
    world.objects.write_bytes(BUCKET, f"reports/decisions/{JOB}.json", b"{oops")
    assert main(["report", JOB, "--json"]) == 1
    assert f"reports/decisions/{JOB}.json is not JSON" in capsys.readouterr().err


def test_report_reads_under_the_reports_prefix_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deps = fake_dependencies(reports_prefix="elsewhere/")
    deps.objects.write_bytes(BUCKET, f"elsewhere/decisions/{JOB}.html", PAGE)
    monkeypatch.setattr(report_command, "dependencies", lambda *required: deps)
    assert main(["report", JOB, "--no-open", "--out", str(tmp_path / "p.html")]) == 0
    assert (tmp_path / "p.html").read_bytes() == PAGE
    assert f"gs://{BUCKET}/elsewhere/decisions/{JOB}.html" in capsys.readouterr().out


@pytest.mark.parametrize("job_id", ["../etc", "a/b"])
def test_report_refuses_what_is_not_a_job_id_before_any_service(
    job_id: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)  # no service is needed to refuse
    assert main(["report", job_id]) == 2
    assert f"not a job id: {job_id!r}" in capsys.readouterr().err


def test_report_says_why_it_cannot_write_the_page(
    world: Dependencies, opened: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing-folder" / "r.html"
    assert main(["report", JOB, "--out", str(out)]) == 2
    assert f"cannot write the report to {out}" in capsys.readouterr().err
    assert opened == []


def test_report_is_a_command_of_distillery() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert "report" in commands
