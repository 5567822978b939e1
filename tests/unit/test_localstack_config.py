"""The local stack's configuration: the functions' backend and the tuning-job poll interval."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillery.core.errors import ConfigurationError
from distillery.local.stack import POLL_TUNING_JOBS_VARIABLE, ROUTES, Route, Stack, StackConfig
from distillery.local.stack.control import (
    BRIDGE,
    FUNCTION_PREFIX,
    GCS,
    PUBSUB,
    default_poll_tuning_jobs_seconds,
)


def _route(target: str) -> Route:
    return next(route for route in ROUTES if route.target == target)


def test_the_functions_run_the_default_backend_unless_told_otherwise(tmp_path: Path) -> None:
    assert StackConfig(state_dir=tmp_path).settings({}).backend == "gemini"
    exported = {"DISTILLERY_BACKEND": "pipeline"}
    assert StackConfig(state_dir=tmp_path).settings(exported).backend == "pipeline"
    # The config's own backend wins over the calling shell's.
    chosen = StackConfig(state_dir=tmp_path, backend="gemini")
    assert chosen.settings(exported).backend == "gemini"
    assert StackConfig(state_dir=tmp_path, backend="pipeline").settings({}).backend == "pipeline"


def test_the_stack_environment_names_its_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISTILLERY_BACKEND", raising=False)
    assert Stack(StackConfig(state_dir=tmp_path)).env["DISTILLERY_BACKEND"] == "gemini"
    monkeypatch.setenv("DISTILLERY_BACKEND", "pipeline")
    assert Stack(StackConfig(state_dir=tmp_path)).env["DISTILLERY_BACKEND"] == "pipeline"
    with pytest.raises(ConfigurationError, match="DISTILLERY_BACKEND"):
        Stack(StackConfig(state_dir=tmp_path, backend="palm"))


def test_poll_tuning_jobs_runs_every_minute_unless_shortened(tmp_path: Path) -> None:
    poll, reconcile = _route("poll_tuning_jobs"), _route("reconcile")
    default = StackConfig(state_dir=tmp_path)
    assert default.every_seconds(poll) == 60
    short = StackConfig(state_dir=tmp_path, poll_tuning_jobs_seconds=2)
    assert short.every_seconds(poll) == 2
    assert short.every_seconds(reconcile) == 30  # only the poll
    with pytest.raises(ValueError, match="launch_job is not scheduled"):
        short.every_seconds(_route("launch_job"))


def test_the_bridge_calls_poll_tuning_jobs_at_the_configured_interval(tmp_path: Path) -> None:
    stack = Stack(StackConfig(state_dir=tmp_path, poll_tuning_jobs_seconds=3))
    # The ports a started stack would have picked (nothing is started here).
    stack.ports = {PUBSUB: 1, GCS: 2, BRIDGE: 3}
    stack.ports.update({FUNCTION_PREFIX + r.target: 10 + i for i, r in enumerate(ROUTES)})
    schedules = {s.target: s.every_seconds for s in stack.bridge_config().schedules}
    assert schedules == {"reconcile": 30, "poll_tuning_jobs": 3}


@pytest.mark.parametrize(("value", "expected"), [(None, 0), ("", 0), ("5", 5), (" 1 ", 1)])
def test_the_poll_interval_variable(value: str | None, expected: int) -> None:
    environ = {} if value is None else {POLL_TUNING_JOBS_VARIABLE: value}
    assert default_poll_tuning_jobs_seconds(environ) == expected


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "soon"])
def test_the_poll_interval_variable_refuses_what_is_no_interval(value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{POLL_TUNING_JOBS_VARIABLE} must be"):
        default_poll_tuning_jobs_seconds({POLL_TUNING_JOBS_VARIABLE: value})
