"""Benchmark each Cloud Function's cold start against bare functions-framework functions.

A cold start is the time from spawning ``python -m functions_framework --source functions/main.py
--target NAME --signature-type cloudevent`` (with the local stack's environment) to the first 2xx
answer to a real event that makes the function do its real work. Two baselines from
``bench/_bare_functions.py`` are measured the same way, interleaved with the functions in the same
run:

- ``bare``: a CloudEvent function that returns at once. Targets are ratios to its median.
- ``bare_validate_clients`` / ``bare_launch_clients``: a bare function that builds the same Google
  clients as ``validate_dataset`` / ``launch_job`` (Firestore, Cloud Storage and Pub/Sub; Firestore,
  the Vertex AI ``PipelineServiceClient`` over REST and Pub/Sub) and makes one request with each to
  the emulators, and nothing of ours. The function's ratio to it is the overhead that is ours (our
  imports and our work), apart from what the Google clients cost any function that uses them.

One ephemeral local stack (emulators, Vertex AI emulator, no routes) serves the whole run. Before
timing, one untimed warm-up start of each process fills the page cache and validates the dataset
the ``launch_job`` runs launch. Each timed run then:

1. prepares its events (``validate_dataset``: a new dataset uploaded under ``datasets/`` and the
   storage-finalized CloudEvent of that exact generation; ``launch_job``: a LaunchRequest for the
   validated dataset with a new ``request_id``);
2. spawns a fresh process, polls its port, POSTs the event in binary content mode (re-POSTing only
   on connection errors) and takes the time of the first 2xx — the cold start;
3. POSTs a second real event to the same process (its time is the warm handling time);
4. stops the process, then checks that both events did their work (the dataset record is valid
   with its launch published; the job record is SUBMITTED and the pipeline job exists). A run whose
   answer was not 2xx or whose work is missing counts as failed, never as a fast start.

Then the import cost of the modules involved is measured in fresh interpreters, so a regression can
be located. Usage: ``python bench/coldstart.py [--runs N] [--no-imports]``.
"""

from __future__ import annotations

import argparse
import ast
import base64
import contextlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only the standard library at load: the --child-imports runs time imports in this very script.
from _local import BENCH_DIR, library, request, upload

if TYPE_CHECKING:
    from cloudevents.http import CloudEvent

    from distillery.core.runtime import Dependencies
    from distillery.local.stack import Stack

HOST = "127.0.0.1"
BARE_SOURCE = BENCH_DIR / "_bare_functions.py"
BASELINE = "bare baseline"
#: Function → the name of its bare-with-the-same-clients case.
CLIENT_BASELINES: dict[str, str] = {
    "validate_dataset": "bare + validate clients",
    "launch_job": "bare + launch clients",
}
#: Where the bare client functions' object lives (read, never validated: no function is routed).
BARE_OBJECT = "bench-coldstart/bare.jsonl"
#: Target → the largest accepted ratio of its median cold start to the baseline's.
TARGETS: dict[str, float] = {
    "validate_dataset": 1.5,
    "launch_job": 2.5,
    "track_status": 1.5,
    "promote_model": 2.5,
}
#: Seconds a process may take to answer its first event.
START_TIMEOUT = 60.0
#: Pause between processes so one run's leftovers (e.g. the Vertex AI emulator running the job
#: just created) do not land in the next measurement.
SETTLE_SECONDS = 0.4
TRAIN_EXAMPLES, EVAL_EXAMPLES = 120, 20

#: Modules timed alone, each in a fresh interpreter.
STANDALONE_MODULES: tuple[str, ...] = (
    "functions_framework",
    "cloudevents.http",
    "pydantic",
    "distillery.core.models",
    "distillery.core.runtime",
    "distillery.validation",
    "distillery.services.datasets",
    "distillery.policy",
    "distillery.services.launcher",
    "distillery.adapters",
    "google.auth.transport.requests",
    "grpc",
    "google.cloud.storage",
    "google.cloud.firestore",
    "google.cloud.pubsub_v1",
    "google.cloud.aiplatform_v1.services.pipeline_service",
)
#: What every Google client imports first (credentials, HTTP, errors, gRPC): timed apart so the
#: clients' own cost shows.
_GOOGLE_FOUNDATIONS = ("google.auth.transport.requests", "grpc", "google.api_core.exceptions")
#: What main.py imports when the process starts (before the port opens).
_MAIN_IMPORTS = ("functions_framework", "cloudevents.http", "distillery.core.runtime")
#: Per function: the imports of one process in the order it makes them (main.py, then the
#: handler's lazy imports on the first event); each step is timed on top of the previous ones.
IMPORT_CHAINS: dict[str, tuple[str, ...]] = {
    "validate_dataset": (
        *_MAIN_IMPORTS,
        "distillery.services.datasets",
        "distillery.adapters",
        "distillery.adapters.vertex",
        *_GOOGLE_FOUNDATIONS,
        "google.cloud.firestore",
        "google.cloud.storage",
        "google.cloud.pubsub_v1",
    ),
    "launch_job": (
        *_MAIN_IMPORTS,
        "distillery.services.launcher",
        "distillery.adapters",
        "distillery.adapters.vertex",
        *_GOOGLE_FOUNDATIONS,
        "google.cloud.firestore",
        "google.cloud.aiplatform_v1.services.pipeline_service",
        "google.cloud.pubsub_v1",
    ),
}


class BenchmarkError(Exception):
    """The benchmark itself cannot run (the stack or the baseline failed)."""


class RunFailedError(Exception):
    """One timed run failed: no 2xx, or the function did not do its work."""


# --- Processes --------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def spawn_function(
    source: Path, target: str, port: int, env: Mapping[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """Start functions-framework serving ``target`` of ``source`` in its own process group."""
    argv = [
        sys.executable, "-m", "functions_framework", "--source", str(source),
        "--target", target, "--signature-type", "cloudevent",
        "--host", HOST, "--port", str(port),
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            env=dict(env),
            cwd=source.parent,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Stop ``process`` and its group (the gunicorn worker): SIGTERM, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)
    # A worker that outlived its arbiter still holds the group id: end it too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def wait_for_port(process: subprocess.Popen[bytes], port: int, deadline: float) -> None:
    """Poll until ``port`` accepts connections.

    Raises:
        RunFailedError: the process exited or the deadline passed first.
    """
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            pass
        if process.poll() is not None:
            raise RunFailedError(f"the process exited with {process.returncode} before listening")
        if time.perf_counter() > deadline:
            raise RunFailedError("the port did not open in time")
        time.sleep(0.005)


def post_event(
    process: subprocess.Popen[bytes], port: int, event: CloudEvent, deadline: float
) -> int:
    """POST ``event`` (binary content mode) until something answers; the HTTP status.

    Only connection errors are retried: a timeout or an answer of any status ends it.

    Raises:
        RunFailedError: the process exited, or the deadline passed.
    """
    from cloudevents.conversion import to_binary

    headers, body = to_binary(event)
    while True:
        timeout = deadline - time.perf_counter()
        if timeout <= 0:
            raise RunFailedError("no answer in time")
        connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
        try:
            connection.request("POST", "/", body=body, headers=dict(headers))
            response = connection.getresponse()
            response.read()
            return int(response.status)
        except ConnectionError:
            if process.poll() is not None:
                raise RunFailedError(
                    f"the process exited with {process.returncode} before answering"
                ) from None
            time.sleep(0.005)
        except TimeoutError:
            raise RunFailedError("no answer in time") from None
        finally:
            connection.close()


# --- Events and checks ------------------------------------------------------------------------


@dataclass
class Work:
    """One real event and how to check, afterwards, that its work was done."""

    event: CloudEvent
    #: None when the work is there; otherwise what is missing.
    check: Callable[[], str | None] = lambda: None


class Environment:
    """The running stack, plus the uploads, events and checks the runs need."""

    def __init__(self, stack: Stack, deps: Dependencies) -> None:
        self.stack = stack
        self.deps = deps
        self.settings = deps.settings
        self.token = uuid.uuid4().hex[:8]
        self._counter = 0
        from distillery.local.example_data import generate

        train, evaluation = generate(TRAIN_EXAMPLES, EVAL_EXAMPLES)
        self.train = "".join(e.to_json() + "\n" for e in train).encode()
        self.evaluation = "".join(e.to_json() + "\n" for e in evaluation).encode()
        self.launchable: dict[str, Any] | None = None
        self._bare_object_uploaded = False

    def unique(self, prefix: str) -> str:
        """A name no other event of this benchmark uses."""
        self._counter += 1
        return f"{prefix}-{self.token}-{self._counter}"

    def upload(self, name: str, data: bytes) -> dict[str, Any]:
        """Upload ``data`` as ``name`` (JSON API media upload); the object resource it returns."""
        return upload(self.stack.storage_url, self.settings.bucket, name, data, "application/jsonl")

    # validate_dataset ----------------------------------------------------------------------

    def dataset_work(self) -> Work:
        """A new valid dataset (eval set first, then the training set) and its finalize event."""
        from cloudevents.http import CloudEvent

        from distillery.core.events import STORAGE_FINALIZED
        from distillery.services.datasets import dataset_id

        stem = f"{self.settings.datasets_prefix}{self.unique('coldstart')}"
        self.upload(f"{stem}.eval.jsonl", self.evaluation)
        resource = self.upload(f"{stem}.jsonl", self.train)
        bucket, name, generation = resource["bucket"], resource["name"], int(resource["generation"])
        event = CloudEvent(
            {
                "id": uuid.uuid4().hex,
                "type": STORAGE_FINALIZED,
                "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
                "subject": f"objects/{name}",
                "time": resource.get("updated") or _now(),
                "datacontenttype": "application/json",
            },
            resource,
        )
        record_id = dataset_id(bucket, name, generation)
        return Work(event, lambda: self._check_dataset(record_id))

    def _check_dataset(self, record_id: str) -> str | None:
        record = self._document(self.settings.datasets_collection, record_id)
        if record is None:
            return f"no record datasets/{record_id}"
        state = (record.get("launch") or {}).get("state")
        if record.get("status") != "valid" or state != "published":
            return f"datasets/{record_id} is {record.get('status')} with launch {state}"
        return None

    def remember_launchable(self, work: Work) -> None:
        """Keep the validated dataset of ``work`` (done and checked) for the launch_job runs."""
        from distillery.services.datasets import dataset_id

        data: dict[str, Any] = work.event.get_data() or {}
        record_id = dataset_id(data["bucket"], data["name"], int(data["generation"]))
        self.launchable = self._document(self.settings.datasets_collection, record_id)

    # launch_job ----------------------------------------------------------------------------

    def launch_work(self) -> Work:
        """A LaunchRequest with a new request_id for the validated dataset, as messagePublished.

        Raises:
            RunFailedError: no dataset was validated for launching (the warm-up failed).
        """
        from cloudevents.http import CloudEvent

        from distillery.core.events import PUBSUB_PUBLISHED
        from distillery.core.models import LaunchRequest

        if self.launchable is None:
            raise RunFailedError("no validated dataset to launch (the validate warm-up failed)")
        request_id = self.unique("coldstart-request")
        request = LaunchRequest(
            dataset_uri=self.launchable["validated_uri"],
            eval_dataset_uri=self.launchable.get("validated_eval_uri"),
            request_id=request_id,
            requested_by="bench/coldstart.py",
        )
        project, topic = self.settings.project, self.settings.launch_topic
        message_id = uuid.uuid4().hex
        message = {
            "data": base64.b64encode(request.to_bytes()).decode(),
            "attributes": {"request_id": request_id},
            "messageId": message_id,
            "publishTime": _now(),
        }
        event = CloudEvent(
            {
                "id": message_id,
                "type": PUBSUB_PUBLISHED,
                "source": f"//pubsub.googleapis.com/projects/{project}/topics/{topic}",
                "datacontenttype": "application/json",
            },
            {"message": message, "subscription": f"projects/{project}/subscriptions/coldstart"},
        )
        return Work(event, lambda: self._check_job(request_id))

    def _check_job(self, request_id: str) -> str | None:
        found = self.deps.records.list(
            self.settings.jobs_collection, where={"request_id": request_id}
        )
        if len(found) != 1:
            return f"{len(found)} job records for request {request_id}"
        record = found[0]
        if record.get("state") != "SUBMITTED" or not record.get("pipeline_job"):
            return (
                f"job {record.get('job_id', '?')} is {record.get('state')}: {record.get('reason')}"
            )
        status, _ = request("GET", f"{self.stack.vertex_url}/v1/{record['pipeline_job']}")
        if status != 200:
            return f"the Vertex AI emulator answers {status} for {record['pipeline_job']}"
        return None

    # baselines -----------------------------------------------------------------------------

    def baseline_work(self) -> Work:
        """Any CloudEvent: the baseline function ignores it."""
        return Work(_bench_event({"ping": True}))

    def validate_clients_work(self) -> Work:
        """An event asking ``bare_validate_clients`` for what validate_dataset asks of the same
        clients first: a dataset record, an object, a publish on the launch topic."""
        return Work(
            _bench_event(
                self._clients_data(self.settings.datasets_collection, self.settings.launch_topic)
            )
        )

    def launch_clients_work(self) -> Work:
        """An event asking ``bare_launch_clients`` for a job record, one page of the location's
        pipeline jobs and a publish on the status topic (what launch_job asks first)."""
        return Work(
            _bench_event(
                self._clients_data(self.settings.jobs_collection, self.settings.status_topic)
            )
        )

    def _clients_data(self, collection: str, topic: str) -> dict[str, str]:
        from _bare_functions import clients_event_data

        if not self._bare_object_uploaded:
            self.upload(BARE_OBJECT, self.train)
            self._bare_object_uploaded = True
        return clients_event_data(
            project=self.settings.project,
            bucket=self.settings.bucket,
            name=BARE_OBJECT,
            collection=collection,
            topic=topic,
            location=self.settings.region,
            vertex_endpoint=self.settings.vertex_api_endpoint,
        )

    def _document(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        return self.deps.records.get(collection, doc_id)


def _bench_event(data: dict[str, Any]) -> CloudEvent:
    """A CloudEvent of the benchmark's own type, carrying ``data``."""
    from cloudevents.http import CloudEvent

    attributes = {"id": uuid.uuid4().hex, "type": "dev.distillery.bench", "source": "bench"}
    return CloudEvent(attributes, data)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


# --- Measuring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A process to measure: a functions source, its target, and how to make its events."""

    name: str
    source: Path
    target: str
    work: Callable[[], Work]


@dataclass
class Run:
    """One timed start (seconds), or why it failed."""

    port_open: float = 0.0
    cold: float = 0.0
    warm: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Series:
    """All runs of one case."""

    case: Case
    runs: list[Run] = field(default_factory=list)

    @property
    def good(self) -> list[Run]:
        return [run for run in self.runs if run.ok]

    def values(self, attribute: str) -> list[float]:
        """One timing (``port_open``, ``cold`` or ``warm``) of every good run."""
        return [float(getattr(run, attribute)) for run in self.good]

    def median(self, attribute: str) -> float:
        return statistics.median(self.values(attribute))

    def minimum(self, attribute: str) -> float:
        return min(self.values(attribute))


def measure(case: Case, env: Mapping[str, str], logs: Path, label: str) -> tuple[Run, list[Work]]:
    """Spawn ``case`` once: time its first 2xx to a real event, then a second (warm) event."""
    run = Run()
    try:
        works = [case.work(), case.work()]
    except Exception as exc:
        run.error = f"could not prepare the events: {exc}"
        return run, []
    port = free_port()
    log = logs / f"{case.name.replace(' ', '-')}-{label}.log"
    started = time.perf_counter()
    process = spawn_function(case.source, case.target, port, env, log)
    try:
        deadline = started + START_TIMEOUT
        wait_for_port(process, port, deadline)
        run.port_open = time.perf_counter() - started
        status = post_event(process, port, works[0].event, deadline)
        run.cold = time.perf_counter() - started
        if not 200 <= status < 300:
            raise RunFailedError(f"the first event was answered {status}")
        warm_started = time.perf_counter()
        status = post_event(process, port, works[1].event, time.perf_counter() + START_TIMEOUT)
        run.warm = time.perf_counter() - warm_started
        if not 200 <= status < 300:
            raise RunFailedError(f"the second event was answered {status}")
    except RunFailedError as exc:
        run.error = f"{exc}; log {log.name}: {_tail(log)}"
    finally:
        stop_process(process)
    if run.ok:
        for number, work in enumerate(works, start=1):
            missing = work.check()
            if missing is not None:
                run.error = f"event {number} got a 2xx but its work is missing: {missing}"
                break
    return run, works


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip()[:200] for line in text[-lines:]) or "(empty)"


def implemented_targets(source: Path) -> set[str]:
    """The top-level function names defined in the functions source."""
    tree = ast.parse(source.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def benchmark(runs: int, state_dir: Path) -> list[Series]:
    """Start the stack, warm up, then time ``runs`` interleaved starts of every case.

    Raises:
        BenchmarkError: the stack could not start, or the baseline never answered.
    """
    from distillery.local.stack import (
        LocalStackError,
        Stack,
        StackConfig,
        default_functions_source,
    )

    functions_source = default_functions_source()
    logs = state_dir / "function-logs"
    logs.mkdir()

    stack = Stack(StackConfig.ephemeral(state_dir / "stack", routes=()))
    started = time.perf_counter()
    try:
        stack.start()
    except LocalStackError as exc:
        raise BenchmarkError(f"the local stack did not start: {exc}") from exc
    try:
        print(f"local stack ready in {time.perf_counter() - started:.1f} s", flush=True)
        environment = Environment(stack, library(stack))
        env = {**os.environ, **stack.env, "PYTHONUNBUFFERED": "1"}
        validate_clients = CLIENT_BASELINES["validate_dataset"]
        launch_clients = CLIENT_BASELINES["launch_job"]
        cases = [
            Case(BASELINE, BARE_SOURCE, "bare", environment.baseline_work),
            Case(
                validate_clients,
                BARE_SOURCE,
                "bare_validate_clients",
                environment.validate_clients_work,
            ),
            Case(
                "validate_dataset", functions_source, "validate_dataset", environment.dataset_work
            ),
            Case(
                launch_clients, BARE_SOURCE, "bare_launch_clients", environment.launch_clients_work
            ),
            Case("launch_job", functions_source, "launch_job", environment.launch_work),
        ]
        series = [Series(case) for case in cases]

        # Warm-up (untimed): page cache, and the dataset the launch_job runs launch.
        for case in cases:
            run, works = measure(case, env, logs, "warmup")
            if case.name == "validate_dataset" and run.ok:
                environment.remember_launchable(works[0])
            status = "ok" if run.ok else f"FAILED: {run.error}"
            print(f"warm-up {case.name}: {run.cold * 1000:.0f} ms, {status}", flush=True)
            time.sleep(SETTLE_SECONDS)

        for number in range(1, runs + 1):
            for one in series:
                run, _ = measure(one.case, env, logs, f"run{number}")
                one.runs.append(run)
                time.sleep(SETTLE_SECONDS)
            print(
                f"run {number}/{runs}: "
                + ", ".join(
                    f"{one.case.name} "
                    + (f"{one.runs[-1].cold * 1000:.0f} ms" if one.runs[-1].ok else "FAILED")
                    for one in series
                ),
                flush=True,
            )
        if not series[0].good:
            raise BenchmarkError(f"the baseline never answered: {series[0].runs[-1].error}")
        return series
    finally:
        stack.stop()


# --- Import times -----------------------------------------------------------------------------


def import_times(modules: Sequence[str], cwd: Path) -> list[tuple[str, float]]:
    """Import ``modules`` in order in a fresh interpreter; each one's seconds on top of the last."""
    completed = subprocess.run(
        [sys.executable, __file__, "--child-imports", *modules],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return [(str(name), float(seconds)) for name, seconds in json.loads(completed.stdout)]


def _child_imports(modules: Sequence[str]) -> None:
    import importlib

    timings = []
    for module in modules:
        started = time.perf_counter()
        importlib.import_module(module)
        timings.append((module, time.perf_counter() - started))
    print(json.dumps(timings))


def report_imports(cwd: Path, repeats: int = 2) -> None:
    """Print the import cost of each module alone and of each function's import chain."""
    print()
    print(f"import time, each module alone in a fresh interpreter (best of {repeats}):")
    for module in STANDALONE_MODULES:
        best = min(import_times([module], cwd)[0][1] for _ in range(repeats))
        print(f"  {module:<56}{best * 1000:>7.0f} ms")
    for function, chain in IMPORT_CHAINS.items():
        runs = [import_times(chain, cwd) for _ in range(repeats)]
        print()
        print(f"{function}: its process's imports in order, each on top of the previous")
        print(f"  (best of {repeats}; the first {len(_MAIN_IMPORTS)} before the port opens):")
        total = 0.0
        for index, module in enumerate(chain):
            best = min(run[index][1] for run in runs)
            total += best
            print(f"  {module:<56}{best * 1000:>7.0f} ms")
        print(f"  {'total':<56}{total * 1000:>7.0f} ms")


# --- Report -----------------------------------------------------------------------------------


def report(series: list[Series], runs: int, implemented: set[str]) -> None:
    """Print the cold-start table: each case against the bare function, and each function
    against the bare function with the same clients."""
    baseline = series[0]
    base_median, base_min = baseline.median("cold"), baseline.minimum("cold")
    by_name = {one.case.name: one for one in series}
    print()
    print(
        f"cold start = spawn → first 2xx to a real event; milliseconds over {runs} run(s) each; "
        "ratio = case / bare baseline (med: of medians, min: of minima); vs clients = function / "
        "bare + the same clients (of medians)"
    )
    name_width = max(len(one.case.name) for one in series) + 2
    header = (
        f"{'case':<{name_width}}{'ok':>5}{'port open':>11}{'cold med':>10}{'cold min':>10}"
        f"{'warm med':>10}{'ratio med':>11}{'ratio min':>11}{'vs clients':>12}{'target':>9}  result"
    )
    blank = len(header) - name_width - 5 - 9 - len("  result")
    print(header)
    print("-" * len(header))
    for one in series:
        name = one.case.name
        ok = f"{len(one.good)}/{len(one.runs)}"
        if not one.good:
            wanted = f"≤ {TARGETS[name]}x" if name in TARGETS else ""
            print(f"{name:<{name_width}}{ok:>5}{'':>{blank}}{wanted:>9}  FAIL (every run failed)")
            continue
        cold_median, cold_min = one.median("cold"), one.minimum("cold")
        row = (
            f"{name:<{name_width}}{ok:>5}{one.median('port_open') * 1000:>11.0f}"
            f"{cold_median * 1000:>10.0f}{cold_min * 1000:>10.0f}{one.median('warm') * 1000:>10.0f}"
        )
        if name == BASELINE:
            print(f"{row}{'1.00x':>11}{'1.00x':>11}{'':>12}{'':>9}  (reference)")
            continue
        ratio, ratio_min = cold_median / base_median, cold_min / base_min
        if name not in TARGETS:  # a bare function with clients: a reference too
            print(f"{row}{ratio:>10.2f}x{ratio_min:>10.2f}x{'1.00x':>12}{'':>9}  (reference)")
            continue
        clients = by_name.get(CLIENT_BASELINES.get(name, ""))
        versus = (
            f"{cold_median / clients.median('cold'):>11.2f}x"
            if clients is not None and clients.good
            else f"{'—':>12}"
        )
        target = TARGETS[name]
        result = "PASS" if ratio <= target else "FAIL"
        if len(one.good) < len(one.runs):
            result += f" ({len(one.runs) - len(one.good)} run(s) failed)"
        print(f"{row}{ratio:>10.2f}x{ratio_min:>10.2f}x{versus}{f'≤ {target}x':>9}  {result}")
    measured = {one.case.name for one in series}
    for name, target in TARGETS.items():
        if name in measured:
            continue
        note = (
            "not implemented yet"
            if name not in implemented
            else "in functions/main.py but not benchmarked yet"
        )
        print(f"{name:<{name_width}}{'—':>5}{'':>{blank}}{f'≤ {target}x':>9}  {note}")
    failures = [(one.case.name, run.error) for one in series for run in one.runs if not run.ok]
    if failures:
        print()
        print("failed runs (excluded from the figures):")
        for name, error in failures:
            print(f"  {name}: {error}")
    print()
    print(
        "port open: the server listens (main.py imported); warm med: a second real event "
        "to the same process."
    )
    print(
        "bare + validate clients: the Firestore, Cloud Storage and Pub/Sub clients, one request "
        "each;\nbare + launch clients: the Firestore, Vertex AI PipelineServiceClient (REST) and "
        "Pub/Sub clients, one request each;\nvs clients: the overhead that is ours."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed starts of each function")
    parser.add_argument("--no-imports", action="store_true", help="skip the import breakdown")
    parser.add_argument("--child-imports", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_imports:
        _child_imports(args.child_imports)
        return 0
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    from distillery.local.stack import default_functions_source

    source = default_functions_source()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="distillery-coldstart-") as folder:
        try:
            series = benchmark(args.runs, Path(folder))
        except BenchmarkError as exc:
            print(f"the benchmark could not run: {exc}", file=sys.stderr)
            return 2
    report(series, args.runs, implemented_targets(source))
    if not args.no_imports:
        report_imports(source.parent)
    print()
    print(f"benchmark took {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
