"""``distillery validate``: exit codes, sibling files, text and JSON output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from distillery.commands import validate as validation_cli
from distillery.commands.cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from distillery.validation import DatasetKind, Finding, ValidationReport, render_text
from distillery.validation._rules import BLANK_LINE, CRLF_LINE_ENDINGS, INVALID_JSON


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def examples(first: int, last: int) -> list[dict[str, Any]]:
    return [
        {
            "input_text": f"question: What is {i} plus {i}? context: drill {i}",
            "output_text": str(2 * i),
        }
        for i in range(first, last + 1)
    ]


def run(argv: list[str]) -> int:
    """Run ``validate`` through a parser holding only this subcommand."""
    parser = argparse.ArgumentParser(prog="distillery")
    validation_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def test_validate_cli_valid_training_set_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(tmp_path / "support.jsonl", examples(1, 120))
    assert run(["validate", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith(f"VALID: {path} (training) — 0 errors, 0 warnings")


def test_validate_cli_invalid_training_set_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "support.jsonl"
    path.write_bytes(b'{"input_text": 42}\n')
    assert run(["validate", str(path)]) == EXIT_INVALID
    out = capsys.readouterr().out
    assert out.startswith("INVALID:")
    assert "line 1, field input_text [input_text_not_string]: input_text is a number (42)" in out


def test_validate_cli_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "support.jsonl"
    path.write_bytes(b"not json\n")
    assert run(["validate", str(path), "--json"]) == EXIT_INVALID
    document = json.loads(capsys.readouterr().out)
    assert document["valid"] is False
    assert [r["kind"] for r in document["reports"]] == ["training"]
    assert document["reports"][0]["errors"][0]["rule"] == "invalid_json"


def test_validate_cli_picks_up_eval_and_config_siblings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTILLERY_BACKEND", "pipeline")  # the sidecar's keys are the pipeline's
    path = write_jsonl(tmp_path / "support.jsonl", examples(1, 120))
    write_jsonl(tmp_path / "support.eval.jsonl", examples(100, 119) + examples(500, 509))
    (tmp_path / "support.config.json").write_text('{"evaluation_interval": 10, "train_steps": 50}')
    assert run(["validate", str(path), "--json"]) == EXIT_OK
    document = json.loads(capsys.readouterr().out)
    assert document["valid"] is True
    training, evaluation, config = document["reports"]
    assert (training["kind"], evaluation["kind"], config["kind"]) == ("training", "eval", "config")
    overlap = training["warnings"][0]
    assert overlap["rule"] == "train_eval_overlap" and overlap["count"] == 20
    assert config["valid"] is True


def test_validate_cli_judges_a_sidecar_for_the_deployment_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "support.config.json"
    config.write_text('{"train_steps": 50}')
    monkeypatch.delenv("DISTILLERY_BACKEND", raising=False)
    assert run(["validate", str(config)]) == EXIT_INVALID  # the default backend is gemini
    assert "config_not_for_backend" in capsys.readouterr().out
    monkeypatch.setenv("DISTILLERY_BACKEND", "pipeline")
    assert run(["validate", str(config)]) == EXIT_OK
    config.write_text('{"backend": "pipeline", "train_steps": 50}')  # the sidecar's own backend
    monkeypatch.setenv("DISTILLERY_BACKEND", "gemini")
    assert run(["validate", str(config)]) == EXIT_OK
    monkeypatch.setenv("DISTILLERY_BACKEND", "palm")
    assert run(["validate", str(config)]) == EXIT_USAGE
    assert "DISTILLERY_BACKEND must be one of" in capsys.readouterr().err


def test_validate_cli_invalid_eval_sibling_makes_the_result_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(tmp_path / "support.jsonl", examples(1, 120))
    write_jsonl(tmp_path / "support.eval.jsonl", examples(500, 503))
    assert run(["validate", str(path)]) == EXIT_INVALID
    out = capsys.readouterr().out
    assert "eval_too_few_examples" in out
    assert f"Overall: INVALID ({tmp_path / 'support.eval.jsonl'} not valid)" in out


def test_validate_cli_config_without_eval_set_rejects_eval_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTILLERY_BACKEND", "pipeline")  # early stopping is the pipeline's
    config = tmp_path / "support.config.json"
    config.write_text('{"enable_early_stopping": true}')
    assert run(["validate", str(config)]) == EXIT_INVALID
    assert "config_needs_eval" in capsys.readouterr().out
    write_jsonl(tmp_path / "support.eval.jsonl", examples(1, 20))
    assert run(["validate", str(config)]) == EXIT_OK


def test_validate_cli_eval_flag_and_eval_name_validate_as_eval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = write_jsonl(tmp_path / "held_out.jsonl", examples(1, 300))
    assert run(["validate", str(plain)]) == EXIT_OK
    assert run(["validate", "--eval", str(plain)]) == EXIT_INVALID
    assert "eval_too_many_examples" in capsys.readouterr().out
    named = write_jsonl(tmp_path / "x.eval.jsonl", examples(1, 300))
    assert run(["validate", str(named)]) == EXIT_INVALID


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.jsonl", "no such file"),
        (lambda tmp: tmp, "is a directory"),
    ],
)
def test_validate_cli_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any, message: str
) -> None:
    assert run(["validate", str(make(tmp_path))]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err


def test_validate_cli_eval_flag_on_a_config_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "a.config.json"
    config.write_text("{}")
    assert run(["validate", "--eval", str(config)]) == EXIT_USAGE
    assert "--eval does not apply" in capsys.readouterr().err


def test_validate_cli_unreadable_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", examples(1, 3))

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)
    assert run(["validate", str(path)]) == EXIT_USAGE
    assert "cannot be read: Permission denied" in capsys.readouterr().err


def test_validate_cli_through_the_distillery_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from distillery.commands.cli import main

    path = write_jsonl(tmp_path / "support.jsonl", examples(1, 120))
    assert main(["validate", str(path), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["valid"] is True


def _section(text: str, title: str) -> list[str]:
    """The lines of the ``title`` section of a rendered report (up to the next blank line)."""
    lines = text.splitlines()
    start = lines.index(title) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i]), len(lines))
    return lines[start:end]


def test_render_text_lists_findings_by_line_with_their_rule_codes() -> None:
    report = ValidationReport(source="s.jsonl", kind=DatasetKind.TRAINING)
    report.add(INVALID_JSON, Finding(line=4, message="four"), Finding(line=2, message="two"))
    report.add(BLANK_LINE, Finding(line=3, message="three"))
    report.add_error("eval_set_invalid", "the eval set must be valid", "the whole file")
    report.add(CRLF_LINE_ENDINGS, Finding(line=9, message="nine"))
    report.add_warning("custom", "a warning", "five", line=5, field="input_text")

    text = render_text(report)

    assert _section(text, "Errors, by line:") == [
        "  [eval_set_invalid]: the whole file",
        "  line 2 [invalid_json]: two",
        "  line 3 [blank_line]: three",
        "  line 4 [invalid_json]: four",
    ]
    assert _section(text, "Warnings, by line:") == [
        "  line 5, field input_text [custom]: five",
        "  line 9 [crlf_line_endings]: nine",
    ]
    # Each rule is still summed up once, errors before warnings.
    headers = [
        line.split(" (")[0] for line in text.splitlines() if line.startswith(("ERROR", "WARN"))
    ]
    assert headers == [
        "ERROR invalid_json",
        "ERROR blank_line",
        "ERROR eval_set_invalid",
        "WARNING crlf_line_endings",
        "WARNING custom",
    ]


def test_render_text_findings_without_lines_are_not_called_by_line() -> None:
    report = ValidationReport(source="c.config.json", kind=DatasetKind.CONFIG)
    report.add_error("config_unknown_key", "documented keys only", "unknown b", field="b")
    report.add_error("config_unknown_key", "documented keys only", "unknown a", field="a")

    text = render_text(report)

    assert "by line" not in text
    assert _section(text, "Errors:") == [
        "  field b [config_unknown_key]: unknown b",
        "  field a [config_unknown_key]: unknown a",
    ]


def test_validate_cli_text_lists_errors_in_line_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "support.jsonl"
    good = json.dumps(examples(1, 1)[0])
    # invalid_json on lines 2 and 4, input_text_not_string on line 3, blank_line on line 5.
    path.write_text(
        f'{good}\nnot json\n{{"input_text": 42, "output_text": "x"}}\n{{oops\n\n{good}\n'
    )

    assert run(["validate", str(path)]) == EXIT_INVALID

    found = _section(capsys.readouterr().out, "Errors, by line:")
    assert [line.split(" [")[0] for line in found] == [
        "  line 2",
        "  line 3, field input_text",
        "  line 4",
        "  line 5",
    ]
    assert [line.split("[")[1].split("]")[0] for line in found] == [
        "invalid_json",
        "input_text_not_string",
        "invalid_json",
        "blank_line",
    ]
