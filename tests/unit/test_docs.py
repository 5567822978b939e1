"""The README tells the truth about settings and commands."""

from __future__ import annotations

from pathlib import Path

from distillery.commands.cli import build_parser
from distillery.core.settings import ENVIRONMENT

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_readme_documents_every_environment_variable() -> None:
    missing = [name for name in ENVIRONMENT if f"`{name}`" not in README]
    assert missing == []


def test_readme_commands_exist() -> None:
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for command in ("validate", "plan", "dev"):
        assert command in commands
        assert f"distillery {command}" in README
    for script in ("scripts/demo", "scripts/test", "scripts/check"):
        assert (Path(__file__).resolve().parents[2] / script).is_file()
        assert script in README


def _words(text: str) -> str:
    return " ".join(text.split())


def test_readme_quotes_the_teachers_instruction_and_hint_as_they_are_sent() -> None:
    from distillery.labeling import GIVEN_ANSWER_HINT, LINE_LABEL_KEY, STEP_BY_STEP_INSTRUCTION

    # The README wraps the instruction's long first line: compare the words.
    assert _words(STEP_BY_STEP_INSTRUCTION) in _words(README)
    assert _words(GIVEN_ANSWER_HINT.format(label="LABEL")) in _words(README)
    assert f"`{LINE_LABEL_KEY}`" in README


def test_readme_names_the_labeling_artifacts_and_prefixes_the_code_uses() -> None:
    from distillery.labeling import (
        DEFAULT_LABEL_TASK_PREFIX,
        DEFAULT_RATIONALE_TASK_PREFIX,
        labeling_paths,
    )

    paths = labeling_paths("b", "validated/", "JOB")
    assert "`validated/labeled/<job_id>/`" in README
    for uri in (paths.input_uri, paths.labeled_uri, paths.lineage_uri, paths.training_uri):
        assert f"`{uri.rsplit('/', 1)[-1]}`" in README
    assert f"`{paths.output_prefix.rsplit('/', 1)[-1]}/`" in README
    assert f"`{DEFAULT_LABEL_TASK_PREFIX}`" in README
    assert f"`{DEFAULT_RATIONALE_TASK_PREFIX}`" in README


def test_readme_predict_options_exist() -> None:
    parser = build_parser()
    predict = parser._subparsers._group_actions[0].choices["predict"]  # type: ignore[union-attr]
    options = {option for action in predict._actions for option in action.option_strings}
    for option in ("--raw", "--generate", "--json"):
        assert option in options
        assert option in README
