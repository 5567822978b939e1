"""Keeping a function server alive: restart it when it dies, as Cloud Run starts a new instance.

``python -m distillery.local.stack.supervisor --status FILE -- ARGV...`` runs ``ARGV`` as its
child, in its own process group (the stack starts the supervisor in a new session, so stopping
the stack signals the supervisor and the function together). When the child dies while nobody
is stopping it, whatever is left of it in the group (a gunicorn worker outlives its killed
arbiter and would keep serving, or hold the port) is killed, and the same command line is
started again, on the same port, with its output appended to the same log (the supervisor's own
stdout). A child that keeps dying (more than ``--max-restarts`` restarts within
``--window-seconds``) is not restarted again: the supervisor exits with the child's exit code, so
``distillery dev status`` shows the service down instead of a restart loop.

The status file (JSON: ``pid``, ``start_time``, ``restarts``) names the current child, so tools
and tests can find the function's process and its restart count.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distillery.local.stack.processes import SupervisedStatus, process_start_time

logger = logging.getLogger(__name__)

#: Restarts allowed within :data:`DEFAULT_WINDOW_SECONDS` before the supervisor gives up.
DEFAULT_MAX_RESTARTS = 5
DEFAULT_WINDOW_SECONDS = 60.0
#: A pause before a restart, so a port the dead child held is released.
RESTART_DELAY_SECONDS = 0.2

_PROC = Path("/proc")


class RestartBudget:
    """At most ``max_restarts`` restarts within any ``window_seconds`` (a sliding window)."""

    def __init__(self, max_restarts: int, window_seconds: float) -> None:
        """
        Raises:
            ValueError: ``max_restarts`` is negative or ``window_seconds`` not positive.
        """
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, not {max_restarts}")
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be > 0, not {window_seconds}")
        self.max_restarts = max_restarts
        self.window_seconds = window_seconds
        self._restarts: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Whether a restart at ``now`` (monotonic seconds) is allowed; if so, it is counted."""
        while self._restarts and now - self._restarts[0] >= self.window_seconds:
            self._restarts.popleft()
        if len(self._restarts) >= self.max_restarts:
            return False
        self._restarts.append(now)
        return True


class Supervisor:
    """Runs ``argv`` and restarts it when it dies, within ``budget``, until :meth:`stop`."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        status_path: Path,
        budget: RestartBudget,
        restart_delay: float = RESTART_DELAY_SECONDS,
    ) -> None:
        if not argv:
            raise ValueError("the supervised command line is empty")
        self.argv = list(argv)
        self.status_path = status_path
        self.budget = budget
        self.restart_delay = restart_delay
        self.restarts = 0
        self.stopping = False
        self._child: subprocess.Popen[bytes] | None = None

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop supervising: the child gets ``signum`` and is not restarted when it exits."""
        self.stopping = True
        child = self._child
        if child is not None and child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    def run(self) -> int:
        """Run the child until it exits while stopping, or dies too often; its exit code.

        Raises:
            OSError: the command could not be executed.
        """
        while True:
            child = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL)
            self._child = child
            SupervisedStatus(child.pid, process_start_time(child.pid), self.restarts).write(
                self.status_path
            )
            if self.stopping:  # a stop that came while starting: do not leave the child behind
                self.stop()
            code = child.wait()
            if self.stopping:
                kill_group_members()
                return code
            # What the dead child left in our group (its workers) must not outlive it.
            kill_group_members()
            if not self.budget.allow(time.monotonic()):
                logger.error(
                    "%s exited with code %s; %d restarts within %.0f s, not restarting",
                    self.argv[0],
                    code,
                    self.budget.max_restarts,
                    self.budget.window_seconds,
                )
                return code if code > 0 else 1
            self.restarts += 1
            logger.warning(
                "supervised process %s exited with code %s; restarting (restart %d)",
                child.pid,
                code,
                self.restarts,
            )
            time.sleep(self.restart_delay)
            if self.stopping:
                return code


def group_members(pgid: int, *, exclude: int) -> list[int]:
    """The live PIDs of process group ``pgid`` other than ``exclude`` (Linux ``/proc``)."""
    members: list[int] = []
    if not _PROC.is_dir():
        return members
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def kill_group_members() -> None:
    """SIGKILL every other process of this process's group (what a dead child left behind).

    Only when this process leads its group (the stack starts it in a new session): a group
    shared with anything else (a shell's pipeline, a test runner) is left alone.
    """
    me = os.getpid()
    if os.getpgid(0) != me:
        return
    for pid in group_members(me, exclude=me):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def main(argv: Sequence[str] | None = None) -> int:
    """The supervisor's command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m distillery.local.stack.supervisor")
    parser.add_argument("--status", required=True, type=Path, help="the status file to write")
    parser.add_argument("--max-restarts", type=int, default=DEFAULT_MAX_RESTARTS)
    parser.add_argument("--window-seconds", type=float, default=DEFAULT_WINDOW_SECONDS)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- ARGV of the child")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to supervise (give it after --)")
    logging.basicConfig(level=logging.INFO, format="supervisor: %(levelname)s %(message)s")
    supervisor = Supervisor(
        command,
        status_path=args.status,
        budget=RestartBudget(args.max_restarts, args.window_seconds),
    )

    def _stop(signum: int, _frame: Any) -> None:
        supervisor.stop(signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        return supervisor.run()
    except OSError as exc:
        logger.error("could not run %s: %s", command[0], exc)
        return 127


if __name__ == "__main__":
    sys.exit(main())
