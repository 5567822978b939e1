"""The function supervisor: a dead function is restarted (within a budget), a stopped one is not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from distillery.local.stack.control import StackState
from distillery.local.stack.processes import ServiceRecord
from distillery.local.stack.supervisor import RestartBudget, SupervisedStatus, Supervisor

#: A child that sleeps until it is killed (and counts its starts in a file).
_SLEEPER = "import sys,time; open(sys.argv[1],'a').write('x'); time.sleep(120)"


def _wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_budget_allows_max_restarts_per_window_then_refuses() -> None:
    budget = RestartBudget(max_restarts=2, window_seconds=60.0)
    assert budget.allow(0.0)
    assert budget.allow(1.0)
    assert not budget.allow(2.0)
    # The first restart leaves the window at 60 s: one more is allowed, then none again.
    assert budget.allow(60.0)
    assert not budget.allow(60.5)


def test_budget_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_restarts"):
        RestartBudget(-1, 60.0)
    with pytest.raises(ValueError, match="window_seconds"):
        RestartBudget(1, 0.0)


def test_child_that_keeps_exiting_is_restarted_within_budget_then_given_up(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    status = tmp_path / "status.json"
    argv = [sys.executable, "-c", "import sys; open(sys.argv[1],'a').write('x'); sys.exit(3)"]
    supervisor = Supervisor(
        [*argv, str(starts)],
        status_path=status,
        budget=RestartBudget(2, 60.0),
        restart_delay=0.0,
    )
    assert supervisor.run() == 3
    assert starts.read_text() == "xxx"  # the first start and two restarts
    recorded = SupervisedStatus.read(status)
    assert recorded is not None and recorded.restarts == 2


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    """The supervisor's command line in its own session, as the stack runs it."""
    status = tmp_path / "status.json"
    starts = tmp_path / "starts"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distillery.local.stack.supervisor",
            "--status",
            str(status),
            "--max-restarts",
            "3",
            "--window-seconds",
            "60",
            "--",
            sys.executable,
            "-c",
            _SLEEPER,
            str(starts),
        ],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process, status, starts
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _current(status: Path) -> SupervisedStatus:
    _wait_for(lambda: SupervisedStatus.read(status) is not None)
    recorded = SupervisedStatus.read(status)
    assert recorded is not None
    return recorded


def test_killed_child_is_restarted_with_a_new_pid_and_counted(
    supervised: tuple[subprocess.Popen[bytes], Path, Path],
) -> None:
    process, status, starts = supervised
    first = _current(status)
    assert first.restarts == 0 and _alive(first.pid)
    _wait_for(lambda: starts.exists() and starts.read_text() == "x")  # the child is running
    os.kill(first.pid, signal.SIGKILL)
    _wait_for(lambda: _current(status).restarts == 1 and _alive(_current(status).pid))
    second = _current(status)
    assert second.pid != first.pid
    _wait_for(lambda: starts.exists() and starts.read_text() == "xx")
    assert process.poll() is None


def test_stopping_the_group_stops_everything_without_a_restart(
    supervised: tuple[subprocess.Popen[bytes], Path, Path],
) -> None:
    process, status, starts = supervised
    child = _current(status).pid
    # The child creates the file before it writes to it: wait for the write, not the file.
    _wait_for(lambda: starts.exists() and starts.read_text() == "x")
    os.killpg(process.pid, signal.SIGTERM)  # what `distillery dev down` sends
    assert process.wait(timeout=10) is not None
    _wait_for(lambda: not _alive(child))
    assert _current(status).restarts == 0
    assert starts.read_text() == "x"


def test_terminating_the_supervisor_alone_stops_its_child(
    supervised: tuple[subprocess.Popen[bytes], Path, Path],
) -> None:
    process, status, _starts = supervised
    child = _current(status).pid
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)
    _wait_for(lambda: not _alive(child))
    assert _current(status).restarts == 0


def test_what_the_dead_child_left_in_the_group_is_killed_before_the_restart(
    tmp_path: Path,
) -> None:
    """A child whose own child (a worker) outlives it: the worker must not keep running."""
    status = tmp_path / "status.json"
    worker_pid = tmp_path / "worker"
    script = (
        "import subprocess,sys,time;"
        "w=subprocess.Popen([sys.executable,'-c','import time; time.sleep(120)']);"
        "open(sys.argv[1],'a').write(str(w.pid)+' ');time.sleep(120)"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distillery.local.stack.supervisor",
            "--status",
            str(status),
            "--",
            sys.executable,
            "-c",
            script,
            str(worker_pid),
        ],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        first = _current(status)
        _wait_for(lambda: worker_pid.exists() and worker_pid.read_text().strip() != "")
        worker = int(worker_pid.read_text().split()[0])
        os.kill(first.pid, signal.SIGKILL)
        _wait_for(lambda: not _alive(worker))
        _wait_for(lambda: _current(status).restarts == 1)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_state_file_keeps_each_functions_supervisor_status(tmp_path: Path) -> None:
    """``distillery dev status`` reads the restart count through the recorded state."""
    status = tmp_path / "supervisor" / "launch_job.json"
    SupervisedStatus(pid=4242, start_time="77", restarts=2).write(status)
    record = ServiceRecord(
        name="function:launch_job",
        pid=1,
        port=8101,
        url="http://127.0.0.1:8101",
        probe_path="/",
        probe_statuses=(405,),
        log=str(tmp_path / "log"),
        start_time=None,
        status_file=str(status),
    )
    plain = replace(record, name="bridge", status_file=None)
    state = StackState(
        state_dir=tmp_path,
        project="p",
        bucket="b",
        env={},
        services={record.name: record, plain.name: plain},
    )
    state.save()
    loaded = StackState.load(tmp_path)
    assert loaded is not None
    assert loaded.services[record.name].status_file == str(status)
    assert loaded.supervised() == {
        record.name: SupervisedStatus(pid=4242, start_time="77", restarts=2)
    }
    status.unlink()
    assert loaded.supervised() == {record.name: None}
