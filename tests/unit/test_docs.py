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
