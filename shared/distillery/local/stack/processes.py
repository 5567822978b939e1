"""Starting, probing and stopping the stack's processes — exactly the ones it started.

Every service runs in its own session (so its process group is its PID) and writes to its own log
file. A process is recognised by its PID *and* its start time, so a recycled PID is never signalled.
Stopping sends SIGTERM to the process group, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distillery.local.stack.errors import PortInUseError, ServiceStartError

logger = logging.getLogger(__name__)

#: The only interface the stack binds.
HOST = "127.0.0.1"

_PROC = Path("/proc")


@dataclass(frozen=True)
class ServiceRecord:
    """A started service: what to probe, which process to stop, where it logs."""

    name: str
    pid: int
    port: int
    #: ``http://127.0.0.1:PORT``; the probe is a GET of ``url + probe_path``.
    url: str
    probe_path: str
    #: HTTP statuses that mean "ready" (a functions-framework server answers GET / with 405).
    probe_statuses: tuple[int, ...]
    log: str
    #: The kernel's start time of the process (Linux), to tell it from a recycled PID.
    start_time: str | None
    #: The supervisor's status file when the service is supervised (restarted when it dies).
    status_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        """This record as a JSON-ready dict."""
        data = asdict(self)
        data["probe_statuses"] = list(self.probe_statuses)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServiceRecord:
        """The record :meth:`to_json` wrote.

        Raises:
            KeyError, TypeError, ValueError: ``data`` is not such a record.
        """
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            port=int(data["port"]),
            url=str(data["url"]),
            probe_path=str(data["probe_path"]),
            probe_statuses=tuple(int(s) for s in data["probe_statuses"]),
            log=str(data["log"]),
            start_time=None if data.get("start_time") is None else str(data["start_time"]),
            status_file=None if data.get("status_file") is None else str(data["status_file"]),
        )


@dataclass(frozen=True)
class SupervisedStatus:
    """What the status file says: the current child and how often it was restarted."""

    pid: int
    start_time: str | None
    restarts: int

    def to_json(self) -> dict[str, Any]:
        """This status as a JSON-ready dict."""
        return {"pid": self.pid, "start_time": self.start_time, "restarts": self.restarts}

    @classmethod
    def read(cls, path: Path) -> SupervisedStatus | None:
        """The status at ``path``, or None when it is missing or unreadable (being replaced)."""
        try:
            data = json.loads(path.read_text())
            start = data.get("start_time")
            return cls(
                pid=int(data["pid"]),
                start_time=None if start is None else str(start),
                restarts=int(data["restarts"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, path: Path) -> None:
        """Write the status atomically (a reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(self.to_json()))
        temporary.replace(path)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


#: Where :func:`free_port_run` looks: below Linux's default ephemeral range (32768 to 60999), which
#: the kernel hands to outgoing connections, so a run of ports found free stays free.
_RUN_RANGE = (20000, 32000)


def free_port_run(count: int, *, attempts: int = 200) -> int:
    """The first of ``count`` consecutive ports of 127.0.0.1 that are all free right now (the
    functions take one port each from ``--functions-port`` up).

    Raises:
        OSError: no such run was found in ``attempts`` tries.
    """
    low, high = _RUN_RANGE
    chooser = random.Random()
    for _ in range(attempts):
        base = chooser.randrange(low, high - count)
        if all(port_is_free(base + offset) for offset in range(count)):
            return base
    raise OSError(f"no {count} consecutive free ports between {low} and {high}")


def port_is_free(port: int) -> bool:
    """Whether a service could listen on ``port`` of 127.0.0.1: nothing listens there.

    The check binds as the services do, with ``SO_REUSEADDR``: connections a stopped service
    left in TIME_WAIT (about a minute after ``distillery dev down``) do not keep its successor
    from listening, so they do not count; a live listener does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def check_ports_free(ports: Mapping[str, int]) -> None:
    """Fail when any of the named ports is taken.

    Raises:
        PortInUseError: naming every taken port and its service.
    """
    taken = [f"{name} port {port}" for name, port in ports.items() if not port_is_free(port)]
    if taken:
        raise PortInUseError(
            f"already in use on {HOST}: {', '.join(taken)}. Another local stack may be running "
            "(`distillery dev status` / `distillery dev down`), or choose other ports "
            "(--pubsub-port, --firestore-port, --gcs-port, --functions-port)."
        )


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str],
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session, stdout and stderr appended to ``log_path``.

    Raises:
        ServiceStartError: the program could not be executed.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise ServiceStartError(f"could not run {argv[0]}: {exc}") from exc


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux ``/proc``), or None when unknown or gone."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` from the state field on (index 0 = state), or None."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def is_running(record: ServiceRecord) -> bool:
    """Whether the process ``record`` started is still alive (not a zombie, not a recycled PID)."""
    if _PROC.is_dir():
        fields = _stat_fields(record.pid)
        if fields is None or fields[0] in ("Z", "X"):
            return False
        return record.start_time is None or fields[19] == record.start_time
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in process group ``pgid``."""
    if _PROC.is_dir():
        for entry in _PROC.iterdir():
            if not entry.name.isdigit():
                continue
            fields = _stat_fields(int(entry.name))
            if fields and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_services(
    records: Sequence[ServiceRecord],
    *,
    grace: float = 5.0,
    processes: Mapping[str, subprocess.Popen[bytes]] | None = None,
) -> None:
    """Stop the process groups ``records`` started, all at once.

    SIGTERM to each group, then SIGKILL to whatever is left after ``grace`` seconds. A PID that
    now belongs to another process (recycled) is left alone. Processes in ``processes`` (the
    Popen objects, by service name, when this process started them) are reaped.
    """
    processes = processes or {}
    groups: dict[int, ServiceRecord] = {}
    for record in records:
        if _recycled(record):
            logger.warning(
                "PID %s of %s now belongs to another process; not signalling it",
                record.pid,
                record.name,
            )
        elif _group_alive(record.pid):
            # With the leader gone, a group that still exists holds only its descendants:
            # the kernel never reuses a PID while a process group of that number exists.
            _signal_group(record.pid, signal.SIGTERM)
            groups[record.pid] = record
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        for record in records:
            _reap(processes.get(record.name), block=False)
        groups = {pgid: r for pgid, r in groups.items() if _group_alive(pgid)}
        if groups:
            time.sleep(0.05)
    for pgid, record in groups.items():
        logger.warning("%s (PID %s) did not stop in %.0f s; killing it", record.name, pgid, grace)
        _signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while groups and time.monotonic() < deadline:
        for record in records:
            _reap(processes.get(record.name), block=False)
        groups = {pgid: r for pgid, r in groups.items() if _group_alive(pgid)}
        if groups:
            time.sleep(0.05)
    for record in records:
        _reap(processes.get(record.name))


def _recycled(record: ServiceRecord) -> bool:
    """Whether ``record``'s PID now belongs to a different, live process."""
    leader = _stat_fields(record.pid)
    return (
        leader is not None
        and leader[0] not in ("Z", "X")
        and record.start_time is not None
        and leader[19] != record.start_time
    )


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _reap(process: subprocess.Popen[bytes] | None, *, block: bool = True) -> None:
    if process is None:
        return
    if block:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5.0)
    else:
        process.poll()


def probe(record: ServiceRecord, timeout: float = 2.0) -> bool:
    """Whether the service answers its readiness probe."""
    return http_status(record.url + record.probe_path, timeout=timeout) in record.probe_statuses


def http_status(url: str, *, timeout: float = 2.0) -> int | None:
    """The HTTP status of ``GET url``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def local_request(
    method: str, url: str, payload: Any = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    """An HTTP request to a local service: (status, body); status 0 when nothing answered.

    ``payload``, when given, is sent as JSON.
    """
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except OSError as exc:
        return 0, str(exc).encode()


def wait_ready(
    record: ServiceRecord,
    *,
    deadline: float,
    exited: Callable[[], int | None],
) -> None:
    """Poll ``record``'s probe until it answers, the process exits or ``deadline`` passes.

    ``deadline`` is a :func:`time.monotonic` value; ``exited`` returns the exit code once the
    process has exited (``Popen.poll``).

    Raises:
        ServiceStartError: the process exited or the deadline passed; with the log's tail.
    """
    delay = 0.05
    while True:
        if probe(record, timeout=1.0):
            logger.debug("%s ready on port %s", record.name, record.port)
            return
        code = exited()
        if code is not None:
            raise ServiceStartError(
                f"{record.name} exited with code {code} before it was ready "
                f"(log {record.log}):\n{log_tail(Path(record.log))}"
            )
        if time.monotonic() > deadline:
            raise ServiceStartError(
                f"{record.name} did not answer {record.url}{record.probe_path} in time "
                f"(log {record.log}):\n{log_tail(Path(record.log))}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def log_tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of the log at ``path`` (or a note that there is none)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - 16_384))
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return "    (no log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in tail) if tail else "    (empty log)"
