"""The local-stack chaos scenarios' bookkeeping, without a stack: how their counts fold into the
summary line, a fault that missed its window, and waiting for a quiet stack before a reset.

The scenarios themselves run on a real stack (``tests/integration/test_localstack_kill.py`` and
``bench/chaos.py --stack``).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distillery.local import chaos, chaos_stack
from distillery.local.chaos import Counts, Result
from distillery.local.chaos_stack import StackChaos, StackCounts, WindowMissed

BENCH = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


def test_chaos_stack_counts_a_missed_window_as_not_held() -> None:
    counts = StackCounts()
    assert counts.held
    counts.miss("window missed: the kill came late")
    assert not counts.held
    assert counts.notes == ["window missed: the kill came late"]
    assert (counts.duplicate_jobs, counts.lost_events, counts.wrong_champions) == (0, 0, 0)


def test_chaos_stack_summary_folds_stack_results_into_the_fakes_line() -> None:
    results = [
        Result("fake scenario", Counts()),
        Result("stack: held", StackCounts()),
        Result("stack: duplicate", StackCounts(duplicate_jobs=1, lost_events=2)),
        Result("stack: missed", StackCounts(missed=True)),
    ]
    assert chaos.summary(results) == (
        "chaos: 4 scenarios, 2 held, duplicate jobs 1, lost events 2, wrong champions 0"
    )


def test_chaos_stack_count_outcome_counts_duplicates_and_losses() -> None:
    counts = StackCounts()
    chaos_stack.count_outcome("pipeline jobs", ["a"], counts=counts)
    assert counts.held and counts.notes == []
    chaos_stack.count_outcome("pipeline jobs", ["b", "a", "c"], counts=counts)
    assert counts.duplicate_jobs == 2
    assert counts.notes == ["3 pipeline jobs instead of 1: a, b, c"]
    chaos_stack.count_outcome("job records", [], counts=counts)
    assert counts.lost_events == 1
    assert counts.notes[-1] == "0 job records instead of 1"


def test_chaos_stack_launched_means_past_requested() -> None:
    assert not chaos_stack.launched({"state": "REQUESTED"})
    assert not chaos_stack.launched({})
    for state in ("SUBMITTED", "FAILED", "REJECTED_BY_POLICY"):
        assert chaos_stack.launched({"state": state})
    assert not chaos_stack._all_launched({})  # no job at all is not a launched one
    assert not chaos_stack._all_launched({"a": {"state": "SUBMITTED"}, "b": {"state": "REQUESTED"}})
    record = {"history": [{"state": "REQUESTED"}, {"state": "SUBMITTED"}]}
    assert chaos_stack.history(record) == ["REQUESTED", "SUBMITTED"]


def test_chaos_stack_wait_for_gives_up_with_none() -> None:
    values = iter([0, 0, 5])
    assert chaos_stack.wait_for(lambda: next(values), timeout=5, interval=0) == 5
    assert chaos_stack.wait_for(lambda: None, timeout=0.05, interval=0.01) is None


class _Harness:
    def __init__(self) -> None:
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1


class _ScriptedStack(StackChaos):
    """A stack whose bridge, jobs and pipeline jobs answer from scripts (the last answer stays)."""

    def __init__(
        self,
        inflight: list[int],
        jobs: list[dict[str, dict[str, Any]]] | None = None,
        running: list[list[str]] | None = None,
    ) -> None:
        self.scripted_harness = _Harness()
        super().__init__(self.scripted_harness)  # type: ignore[arg-type]
        self._inflight = self._script(inflight)
        self._jobs = self._script(jobs or [{}])
        self._running = self._script(running or [[]])
        self.polls = 0

    @staticmethod
    def _script(answers: list[Any]) -> Iterator[Any]:
        yield from answers
        while True:
            yield answers[-1]

    def bridge(self) -> dict[str, Any]:
        self.polls += 1
        return {"inflight": next(self._inflight), "delivered": 0, "failed": 0}

    def jobs(self) -> dict[str, dict[str, Any]]:
        return dict(next(self._jobs))

    def unfinished_pipeline_jobs(self) -> list[str]:
        return list(next(self._running))


def test_chaos_stack_quiet_waits_for_deliveries_and_requested_jobs() -> None:
    requested = {"job-1": {"state": "REQUESTED"}}
    stack = _ScriptedStack(
        inflight=[1, 1, 0, 1, 0],
        jobs=[requested] * 5 + [{"job-1": {"state": "FAILED"}}],
        running=[["pj-1"]] * 7 + [[]],
    )
    assert stack.wait_quiet(timeout=10, quiet=0.3) is None
    # Not before the 8th poll (the last pipeline job finished), then quiet for 0.3 s more.
    assert stack.polls >= 8 + 2


def test_chaos_stack_quiet_names_what_never_finished() -> None:
    stack = _ScriptedStack(inflight=[0], jobs=[{"job-1": {"state": "REQUESTED"}}])
    unfinished = stack.wait_quiet(timeout=0.5, quiet=0.1)
    assert unfinished is not None
    assert "jobs REQUESTED: job-1" in unfinished
    busy = _ScriptedStack(inflight=[2], running=[["pj-7"]]).wait_quiet(timeout=0.5, quiet=0.1)
    assert busy is not None
    assert "2 deliveries in flight" in busy and "pipeline jobs unfinished: pj-7" in busy


def test_chaos_stack_scenario_runs_only_from_a_quiet_reset_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chaos_stack, "QUIET_SECONDS", 0.05)
    monkeypatch.setattr(chaos_stack, "QUIET_TIMEOUT_SECONDS", 0.5)
    ran: list[str] = []

    def scenario(stack: StackChaos) -> StackCounts:
        ran.append("ran")
        return StackCounts()

    busy = _ScriptedStack(inflight=[1])
    result = chaos_stack.run_scenario(busy, "busy", scenario)
    assert not result.counts.held
    assert "not quiet before the scenario" in result.counts.notes[0]
    assert ran == [] and busy.scripted_harness.resets == 0

    quiet = _ScriptedStack(inflight=[0])
    assert chaos_stack.run_scenario(quiet, "quiet", scenario).counts.held
    assert ran == ["ran"] and quiet.scripted_harness.resets == 1


def test_chaos_stack_scenario_that_missed_or_broke_did_not_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chaos_stack, "QUIET_SECONDS", 0.05)

    def missed(stack: StackChaos) -> StackCounts:
        raise WindowMissed("the kill came after the answer")

    def broke(stack: StackChaos) -> StackCounts:
        raise KeyError("createTime")

    for scenario, note in ((missed, "window missed: the kill came after the answer"),
                           (broke, "KeyError: 'createTime'")):  # fmt: skip
        result = chaos_stack.run_scenario(_ScriptedStack(inflight=[0]), "s", scenario)
        assert not result.counts.held
        assert result.counts.notes == [note]


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_chaos", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chaos_bench_stack_option_folds_the_stack_scenarios_into_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(chaos, "run_all", lambda **_: [Result("fake", Counts())])
    stack_results = [
        Result("stack: kill", StackCounts()),
        Result("stack: late", StackCounts(missed=True, notes=["window missed: too late"])),
    ]
    monkeypatch.setattr(chaos_stack, "run_all", lambda **_: stack_results)
    bench = _bench()
    assert bench.main(["--stack"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == (
        "chaos: 3 scenarios, 2 held, duplicate jobs 0, lost events 0, wrong champions 0"
    )
    assert "FAILED  stack: late  (window missed: too late)" in "\n".join(lines)
    assert bench.main([]) == 0  # without --stack, only the fakes
    assert capsys.readouterr().out.splitlines()[-1].startswith("chaos: 1 scenarios, 1 held")


def test_chaos_bench_reports_a_stack_that_did_not_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from distillery.local.stack.errors import MissingToolError

    def no_java(**_: Any) -> list[Result]:
        raise MissingToolError("java not found")

    monkeypatch.setattr(chaos, "run_all", lambda **_: [Result("fake", Counts())])
    monkeypatch.setattr(chaos_stack, "run_all", no_java)
    assert _bench().main(["--stack"]) == 2
    assert "the local stack did not start: java not found" in capsys.readouterr().err


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # bench/chaos.py turns logging off for its run; give the other tests their logs back.
    yield
    import logging

    logging.disable(logging.NOTSET)
    sys.modules.pop("bench_chaos", None)
