"""The operator's commands before they reach a service: usage, local validation, configuration."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from distillery.commands import ops
from distillery.commands.cli import main
from distillery.commands.ops._common import run


def test_submit_refuses_an_invalid_dataset_and_uploads_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)  # no service is needed to refuse
    dataset = tmp_path / "news.jsonl"
    dataset.write_text('{"input_text": "a", "output_text": "b"}\n{"input_text": ""}\n')
    assert main(["submit", str(dataset)]) == 1
    err = capsys.readouterr().err
    assert "line 2" in err and "nothing was uploaded" in err


def test_submit_checks_the_config_against_the_eval_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = tmp_path / "news.jsonl"
    dataset.write_text('{"input_text": "a", "output_text": "b"}\n')
    config = tmp_path / "other.json"
    config.write_text('{"min_eval_accuracy": 0.9}')
    assert main(["submit", str(dataset), "--config", str(config)]) == 1
    assert "min_eval_accuracy needs an eval set" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["submit", "missing.jsonl"], "no such file"),
        (["rerun", "job-1", "--set", "warp_speed=9"], "not a parameter a rerun can set"),
        (["rerun", "job-1", "--set", "novalue"], "KEY=VALUE"),
        (["predict", "news", "-"], "no prompt to send"),
    ],
)
def test_usage_errors_exit_2_with_the_reason(
    argv: list[str],
    fragment: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err


def test_commands_say_how_to_point_at_the_local_stack_when_unconfigured(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    assert main(["jobs"]) == 2
    err = capsys.readouterr().err
    assert "GOOGLE_CLOUD_PROJECT" in err and 'eval "$(distillery dev env)"' in err


def test_submit_refuses_a_name_of_an_eval_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = tmp_path / "news.eval.jsonl"
    dataset.write_text('{"input_text": "a", "output_text": "b"}\n')
    assert main(["submit", str(dataset)]) == 2
    assert "give the training set" in capsys.readouterr().err


def test_ops_register_adds_the_operator_commands_in_help_order() -> None:
    parser = argparse.ArgumentParser(prog="distillery")
    ops.register(parser.add_subparsers(dest="command", required=True))
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert list(commands) == [
        "submit",
        "jobs",
        "show",
        "watch",
        "rerun",
        "rollback",
        "golden",
        "cancel",
        "predict",
    ]
    for name, command in commands.items():
        assert command.get_default("handler") is not None, name
        assert callable(command.get_default("action")), name


def test_ops_timeout_error_exits_4_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    def waits(args: argparse.Namespace) -> int:
        raise TimeoutError("timed out after 1 s waiting for the launcher")

    assert run(argparse.Namespace(command="watch", action=waits)) == 4
    assert (
        capsys.readouterr().err
        == "distillery watch: timed out after 1 s waiting for the launcher\n"
    )
