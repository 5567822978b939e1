"""Benchmark upload → SUBMITTED latency and track_status throughput against bare functions.

Everything runs on one ephemeral local stack (free ports, its own temporary state directory,
stopped at the end even on error) whose functions source is ``bench/_latency_functions.py``: the
product's ``functions/main.py`` entry points, unchanged, beside two bare functions of
``bench/_bare_functions.py``:

- ``receipt``, routed like ``validate_dataset`` (storage object finalized: its own bridge
  subscription on the same notifications topic), appends the object's name, generation and the
  wall-clock time it received the event to a file, and does nothing else;
- ``bare``, a CloudEvent function that returns at once.

The script reads and writes the product's data through the library: Firestore records with the
library's record store, job records made as the launcher makes them (``distillery.core.jobs``:
created REQUESTED, moved to SUBMITTED, announced), pipeline events as the Vertex AI emulator
emits them (``distillery.local.emulator.log_entry``) wrapped as the bridge wraps them.

1. Upload → SUBMITTED (``--uploads N`` timed runs). Each run uploads a fresh small training set
   (``example_data.generate``, another seed each time) under ``datasets/`` of the stack's bucket,
   after its config sidecar ``datasets/<name>.config.json`` = ``{"train_steps": 1}`` (uploaded
   first and its own validation waited for, untimed). The latency is from the upload returning to
   the SUBMITTED entry in the history of the job whose ``request_id`` is the dataset record's id
   (written by launch_job, or by track_status when the pipeline's first event outran it; the
   time is taken just before the transaction that writes it). A run whose job never gets there
   (REJECTED_BY_POLICY, FAILED, or nothing within two minutes) counts as failed, never as fast.
2. The baseline, interleaved with them (the order alternates every run): a tiny object uploaded
   outside ``datasets/`` and the time ``receipt`` received its event — fake-gcs-server
   notification → Pub/Sub → the bridge → an HTTP function, the path ``validate_dataset`` gets its
   events on, minus the function's work. Printed: median and p95 of both, and their ratios.
   ``receipt`` also receives every training set's own event, so where the time goes is
   printed too, from the timestamps the product records (verdict, launch published, job created,
   SUBMITTED), with the slowest run's job history; and how many deliveries the bridge saw fail
   meanwhile (any function; they are redelivered, so they show as stalls, not as errors).

   Both times are wall-clock times taken inside the functions (the stack runs on this machine), so
   this script's polling interval is in neither. Before each timed upload the stack is let settle
   (no delivery in flight in the bridge); after each run the pipeline job is cancelled on the local
   Vertex AI API and its record waited for until it is final, so no training runs under the next
   measurement (``--no-cancel`` lets every job train its one step instead).
3. Status-handler throughput (``--jobs N``): N job records are made in SUBMITTED as the launcher
   makes them (created REQUESTED, moved to SUBMITTED, both announced) but with no
   ``pipeline_job`` — so ``reconcile`` does not poll Vertex AI for them, and the figure is
   track_status alone. Their pipeline state LogEntries (PENDING, RUNNING, then FAILED, CANCELLED
   or nothing, in turn; SUCCEEDED is left out: it would measure the Vertex AI read and
   ``promote_model`` instead) plus 20% duplicates are shuffled and POSTed as the messagePublished
   CloudEvents the bridge makes (binary content mode, ``--concurrency`` at once, a non-2xx answer
   re-POSTed as Pub/Sub would redeliver it) to the real ``track_status``. The baseline is the same
   events POSTed the same way to ``bare``, once before and once after. Then every job's
   record must be in its last forward state with a forward-only history and no failure recorded:
   PASS or FAIL; FAIL exits 1.

Untimed warm-ups first (one baseline upload, one dataset, a few events to each function). Exit
status: 0; 1 when the final-state check failed or a timed run failed; 2 when it could not run.
Usage: ``python bench/latency.py [--uploads N] [--jobs N] [--concurrency N] [--no-cancel]
[--keep-logs DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import math
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _bare_functions import RECEIPTS_VARIABLE
from _local import BENCH_DIR, library, request, upload

if TYPE_CHECKING:
    from distillery.core.runtime import Dependencies
    from distillery.core.settings import Settings
    from distillery.local.stack import Stack, StackConfig

#: The stack's functions: the product's entry points and the two bare ones.
FUNCTIONS_SOURCE = BENCH_DIR / "_latency_functions.py"
RECEIPT_TARGET = "receipt"
NOOP_TARGET = "bare"
#: The topic of the ``bare`` route (never published to: it is only POSTed to directly).
NOOP_TOPIC = "bench-latency-noop"
RECEIPTS_FILE = "receipts.jsonl"
#: Where the baseline's objects go: outside ``datasets/``, so validate_dataset ignores them.
PING_PREFIX = "bench-latency/"
CONFIG_SIDECAR = b'{"train_steps": 1}\n'
TRAIN_EXAMPLES = 20
#: Seconds to wait for a delivery, a job's SUBMITTED, a job's end, a quiet bridge.
DELIVERY_TIMEOUT = 60.0
SUBMIT_TIMEOUT = 120.0
FINISH_TIMEOUT = 120.0
SETTLE_TIMEOUT = 60.0
#: How often this script looks (the figures never depend on it: the functions take the times).
POLL_SECONDS = 0.05
RECEIPT_POLL_SECONDS = 0.01
#: Status-handler throughput: share of duplicated events, POST attempts per event, pause between.
DUPLICATE_SHARE = 0.2
MAX_ATTEMPTS = 20
RETRY_PAUSE = 0.05
SEED = 11
#: (pipeline state sequence, the job state it must end in), in turn over the jobs.
SEQUENCES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING", "PIPELINE_STATE_FAILED"), "FAILED"),
    (("PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING", "PIPELINE_STATE_CANCELLED"), "CANCELLED"),
    (("PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING"), "RUNNING"),
)
FAILURE_MESSAGE = "bench/latency.py: the replica ran out of memory"
#: google.rpc.Code INTERNAL, as a failed pipeline job's error carries it.
FAILURE_CODE = 13


class BenchmarkError(Exception):
    """The benchmark itself cannot run (the stack or a baseline failed)."""


class RunFailedError(Exception):
    """One timed run failed: the event never arrived, or the job never reached SUBMITTED."""


def _terminate(signum: int, _frame: Any) -> None:
    """SIGTERM → SystemExit, so the ``finally`` that stops the stack runs."""
    raise SystemExit(128 + signum)


# --- Helpers ----------------------------------------------------------------------------------


def _wait(
    probe: Callable[[], Any], timeout: float, what: str, interval: float = POLL_SECONDS
) -> Any:
    """Call ``probe`` until it returns something (not None); that value.

    Raises:
        RunFailedError: ``timeout`` seconds passed first.
    """
    from distillery.commands.watch import wait_until

    try:
        return wait_until(probe, what, timeout, interval)
    except TimeoutError as exc:
        raise RunFailedError(str(exc)) from None


def _epoch(iso: str | None) -> float | None:
    """An ISO 8601 time the product recorded, as seconds since the epoch."""
    if not iso:
        return None
    moment = datetime.fromisoformat(iso)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _relative(iso: str | None, origin: float) -> float | None:
    """Seconds from ``origin`` (epoch seconds) to the ISO 8601 time ``iso`` (None: no time)."""
    moment = _epoch(iso)
    return None if moment is None else moment - origin


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` 0.95: p95) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.0f}"


# --- The stack and its bits -------------------------------------------------------------------


class Receipts:
    """The file ``receipt`` appends to: (object name, generation) → when it got the event."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._seen: dict[tuple[str, str], float] = {}

    def _read(self) -> None:
        try:
            with self.path.open("rb") as source:
                source.seek(self._offset)
                chunk = source.read()
        except FileNotFoundError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            entry = json.loads(line)
            # The first delivery counts (a redelivery would come later).
            self._seen.setdefault((str(entry["name"]), str(entry["generation"])), entry["at"])

    def get(self, name: str, generation: str) -> float | None:
        """When the event of ``name#generation`` arrived (epoch seconds), if it has."""
        self._read()
        return self._seen.get((name, generation))

    def wait(self, name: str, generation: str, timeout: float = DELIVERY_TIMEOUT) -> float:
        """When the event of ``name#generation`` arrived, waiting for it.

        Raises:
            RunFailedError: it did not arrive within ``timeout`` seconds.
        """
        received: float = _wait(
            lambda: self.get(name, generation),
            timeout,
            f"{RECEIPT_TARGET} to receive {name}#{generation}",
            interval=RECEIPT_POLL_SECONDS,
        )
        return received


@dataclass
class Bench:
    """The running stack, the library's adapters on it, uploads and waiting for quiet."""

    stack: Stack
    deps: Dependencies
    receipts: Receipts
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _counter: int = 0

    @property
    def settings(self) -> Settings:
        """The product settings of the stack (what its functions run with)."""
        return self.deps.settings

    def unique(self, prefix: str) -> str:
        """A name no other object or job of this run uses."""
        self._counter += 1
        return f"{prefix}-{self.token}-{self._counter}"

    def upload(self, name: str, data: bytes, content_type: str) -> tuple[str, float]:
        """Upload ``data`` as ``name`` (JSON API media upload): its generation, and the wall-clock
        time the upload returned."""
        resource = upload(self.stack.storage_url, self.settings.bucket, name, data, content_type)
        returned = time.time()
        return str(resource["generation"]), returned

    def document(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        return self.deps.records.get(collection, doc_id)

    def job_of(self, request_id: str) -> dict[str, Any] | None:
        """The job record whose ``request_id`` is ``request_id`` (None while there is none)."""
        found = self.deps.records.list(
            self.settings.jobs_collection, where={"request_id": request_id}
        )
        return found[0] if found else None

    def bridge_failures(self) -> int:
        """Deliveries the bridge saw fail (non-2xx or no answer: redelivered later) so far."""
        status, body = request("GET", f"{self.stack.bridge_url}/healthz")
        return int(json.loads(body).get("failed", 0)) if status == 200 else 0

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait until the bridge has had no delivery in flight on two looks 100 ms apart."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 2 and time.monotonic() < deadline:
            status, body = request("GET", f"{self.stack.bridge_url}/healthz")
            quiet = quiet + 1 if status == 200 and json.loads(body).get("inflight") == 0 else 0
            time.sleep(0.1)
        if quiet < 2:
            print(f"  (the bridge still had deliveries in flight after {timeout:.0f} s)")

    def cancel(self, pipeline_job: str) -> None:
        """Ask the local Vertex AI API to cancel ``pipeline_job`` (a finished job: no-op)."""
        request("POST", f"{self.stack.vertex_url}/v1/{pipeline_job}:cancel", payload={})


def stack_config(state_dir: Path, receipts: Path) -> StackConfig:
    """The product's routes plus the two baselines', on free ports."""
    from distillery.local.stack import (
        ROUTES,
        MessagePublished,
        Route,
        StackConfig,
        StorageFinalized,
    )

    routes = (
        *ROUTES,
        Route(RECEIPT_TARGET, StorageFinalized()),
        Route(NOOP_TARGET, MessagePublished(topic=NOOP_TOPIC)),
    )
    return StackConfig.ephemeral(
        state_dir,
        routes=routes,
        functions_source=FUNCTIONS_SOURCE,
        function_env={RECEIPTS_VARIABLE: str(receipts)},
        startup_timeout=120.0,
    )


# --- 1 and 2: upload latency ------------------------------------------------------------------


@dataclass
class DatasetRun:
    """One dataset's timings, in seconds after its training set's upload returned."""

    submitted: float = 0.0
    seen: float = 0.0
    delivered: float | None = None
    validated: float | None = None
    published: float | None = None
    recorded: float | None = None
    job_id: str = ""
    final_state: str = ""
    #: The job's history at the end of the run: (state, seconds after the upload returned).
    history: list[tuple[str, float | None]] = field(default_factory=list)
    error: str | None = None


def measure_ping(bench: Bench) -> float:
    """Upload a tiny object outside ``datasets/``; seconds until ``receipt`` had its event.

    Raises:
        RunFailedError: the event did not arrive.
    """
    name = f"{PING_PREFIX}{bench.unique('ping')}.txt"
    bench.settle()
    generation, returned = bench.upload(name, b"ping\n", "text/plain")
    return bench.receipts.wait(name, generation) - returned


def measure_dataset(bench: Bench, seed: int, cancel: bool) -> DatasetRun:
    """Upload a config sidecar, then a training set; time the training set's job to SUBMITTED."""
    from distillery.core.jobs import TERMINAL
    from distillery.core.models import JobState
    from distillery.local.example_data import generate
    from distillery.services.datasets import dataset_id

    settings = bench.settings
    bucket = settings.bucket
    run = DatasetRun()
    stem = f"{settings.datasets_prefix}{bench.unique('latency')}"
    train, _ = generate(TRAIN_EXAMPLES, 0, seed=seed)
    data = "".join(example.to_json() + "\n" for example in train).encode()
    try:
        # The sidecar first, and its own validation out of the way before the timed upload.
        config_name = f"{stem}.config.json"
        generation, _ = bench.upload(config_name, CONFIG_SIDECAR, "application/json")
        config_id = dataset_id(bucket, config_name, int(generation))
        _wait(
            lambda: (bench.document(settings.datasets_collection, config_id) or {}).get("status"),
            DELIVERY_TIMEOUT,
            f"the validation of {config_name}",
        )
        bench.settle()

        name = f"{stem}.jsonl"
        generation, returned = bench.upload(name, data, "application/jsonl")
        record_id = dataset_id(bucket, name, int(generation))

        def submitted() -> dict[str, Any] | None:
            job = bench.job_of(record_id)
            return job if job and job.get("state") != JobState.REQUESTED.value else None

        job = _wait(submitted, SUBMIT_TIMEOUT, f"a job for request {record_id}")
        run.seen = time.time() - returned
        run.job_id = str(job.get("job_id"))
        at = {entry["state"]: entry.get("at") for entry in job.get("history", [])}
        if JobState.SUBMITTED.value not in at:
            raise RunFailedError(f"job {run.job_id} is {job.get('state')}: {job.get('reason')}")
        run.submitted = (_epoch(at[JobState.SUBMITTED.value]) or 0.0) - returned
        run.recorded = _relative(job.get("created_at"), returned)
        dataset = bench.document(settings.datasets_collection, record_id) or {}
        run.validated = _relative(dataset.get("validated_at"), returned)
        run.published = _relative((dataset.get("launch") or {}).get("published_at"), returned)
        delivered = bench.receipts.wait(name, generation)
        run.delivered = delivered - returned

        if cancel and job.get("pipeline_job"):
            bench.cancel(job["pipeline_job"])
            finals = {state.value for state in TERMINAL}

            def finished() -> str | None:
                state = (bench.document(settings.jobs_collection, run.job_id) or {}).get("state")
                return state if state in finals else None

            try:
                run.final_state = _wait(finished, FINISH_TIMEOUT, f"job {run.job_id} to end")
            except RunFailedError as exc:  # not the measurement's fault: say so, carry on
                print(f"  ({exc})")
            job = bench.document(settings.jobs_collection, run.job_id) or job
        run.history = [
            (entry["state"], _relative(entry.get("at"), returned))
            for entry in job.get("history", [])
        ]
    except RunFailedError as exc:
        run.error = str(exc)
    return run


@dataclass
class LatencyResults:
    """The interleaved runs of part 1 and 2."""

    pings: list[float] = field(default_factory=list)
    ping_errors: list[str] = field(default_factory=list)
    datasets: list[DatasetRun] = field(default_factory=list)
    #: Deliveries that failed in the bridge during the timed runs (any function).
    bridge_failures: int = 0

    @property
    def good(self) -> list[DatasetRun]:
        return [run for run in self.datasets if run.error is None]


def measure_latency(bench: Bench, uploads: int, cancel: bool) -> LatencyResults:
    """``uploads`` baseline and dataset runs, interleaved; the order alternates each run."""
    results = LatencyResults()
    failures_before = bench.bridge_failures()

    def ping() -> str:
        try:
            results.pings.append(measure_ping(bench))
            return f"baseline {results.pings[-1] * 1000:.0f} ms"
        except RunFailedError as exc:
            results.ping_errors.append(str(exc))
            return "baseline FAILED"

    def dataset(number: int) -> str:
        run = measure_dataset(bench, seed=1000 + number, cancel=cancel)
        results.datasets.append(run)
        if run.error is not None:
            return "SUBMITTED FAILED"
        ended = f", ended {run.final_state}" if run.final_state else ""
        return f"SUBMITTED {run.submitted * 1000:.0f} ms{ended}"

    for number in range(1, uploads + 1):
        # Evaluated left to right: odd runs time the baseline first, even runs the dataset.
        parts = [ping(), dataset(number)] if number % 2 else [dataset(number), ping()]
        print(f"upload {number}/{uploads}: " + ", ".join(parts), flush=True)
    results.bridge_failures = bench.bridge_failures() - failures_before
    if not cancel:
        # Whatever still trains must not run under the throughput measurement: cancel it all and
        # wait until every job's record is final (their events handled).
        from distillery.core.jobs import TERMINAL

        for run in results.good:
            record = bench.document(bench.settings.jobs_collection, run.job_id) or {}
            if record.get("pipeline_job"):
                bench.cancel(record["pipeline_job"])
        finals = {state.value for state in TERMINAL}
        jobs = bench.settings.jobs_collection
        deadline = time.monotonic() + FINISH_TIMEOUT

        def ended(job_id: str) -> bool | None:
            return True if (bench.document(jobs, job_id) or {}).get("state") in finals else None

        for run in results.good:
            with contextlib.suppress(RunFailedError):
                _wait(
                    functools.partial(ended, run.job_id),
                    max(0.0, deadline - time.monotonic()),
                    f"job {run.job_id} to end",
                )
    return results


def report_latency(results: LatencyResults, uploads: int) -> None:
    """Print medians, p95s, their ratios and the breakdown."""
    good = results.good
    print()
    print(
        f"upload → function, milliseconds over {uploads} interleaved upload(s) each "
        "(p95: nearest rank)"
    )
    header = f"{'':<46}{'median':>9}{'p95':>9}{'ok':>8}"
    print(header)
    print("-" * len(header))
    pings, submitted = results.pings, [run.submitted for run in good]
    rows = [
        ("baseline: upload → receipt got it", pings, len(results.pings)),
        ("upload → job SUBMITTED", submitted, len(good)),
    ]
    for label, values, ok in rows:
        if values:
            print(
                f"{label:<46}{_ms(statistics.median(values)):>9}"
                f"{_ms(percentile(values, 0.95)):>9}{f'{ok}/{uploads}':>8}"
            )
        else:
            print(f"{label:<46}{'—':>9}{'—':>9}{f'0/{uploads}':>8}")
    if pings and submitted:
        median_ratio = statistics.median(submitted) / statistics.median(pings)
        p95_ratio = percentile(submitted, 0.95) / percentile(pings, 0.95)
        print(f"{'ratio SUBMITTED / baseline':<46}{median_ratio:>8.1f}x{p95_ratio:>8.1f}x")
    if good:
        print()
        print("where the time goes: median ms after the training set's upload returned")
        stages: list[tuple[str, Callable[[DatasetRun], float | None]]] = [
            ("the same event reached receipt", lambda run: run.delivered),
            ("validate_dataset recorded its verdict", lambda run: run.validated),
            ("the LaunchRequest was published", lambda run: run.published),
            ("launch_job created the job (REQUESTED)", lambda run: run.recorded),
            ("the job was recorded SUBMITTED", lambda run: run.submitted),
            ("this script's poll saw it", lambda run: run.seen),
        ]
        slowest = max(good, key=lambda run: run.submitted)
        print(f"{'':<46}{'median':>9}{'slowest':>9}")
        for label, value in stages:
            values = [v for v in (value(run) for run in good) if v is not None]
            median = statistics.median(values) if values else None
            print(f"  {label:<44}{_ms(median):>9}{_ms(value(slowest)):>9}")
        steps = ", ".join(f"{state} {_ms(at)}" for state, at in slowest.history)
        print(f"  the slowest run's job {slowest.job_id}, history (ms): {steps}")
    failures = [f"baseline: {error}" for error in results.ping_errors] + [
        f"dataset: {run.error}" for run in results.datasets if run.error is not None
    ]
    if failures:
        print()
        print("failed runs (excluded from the figures):")
        for failure in failures:
            print(f"  {failure}")
    if results.bridge_failures:
        print()
        print(
            f"meanwhile {results.bridge_failures} deliveries by the bridge failed (a function "
            "answered non-2xx or not at all) and were redelivered; --keep-logs DIR keeps the "
            "functions' logs"
        )


# --- 3: status-handler throughput -------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One event, encoded once: the headers and body of its POST."""

    job_id: str
    state: str
    headers: Mapping[str, str]
    body: bytes


@dataclass
class Pass:
    """One pass of every delivery to one function."""

    target: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    retries: int = 0
    failed: list[str] = field(default_factory=list)

    def rate(self, events: int) -> float:
        return events / self.seconds if self.seconds else 0.0


def job_events(bench: Bench, jobs: int) -> tuple[dict[str, str], list[Delivery]]:
    """Job id → the state it must end in, and its shuffled, 20%-duplicated deliveries."""
    from cloudevents.conversion import to_binary

    from distillery.local.emulator import FAILED, StateChange, log_entry
    from distillery.local.stack import ROUTES
    from distillery.local.stack.eventarc import InboundMessage, message_published_event

    settings = bench.settings
    track_status = next(route for route in ROUTES if route.target == "track_status")
    expected: dict[str, str] = {}
    deliveries: list[Delivery] = []
    for index in range(jobs):
        job_id = bench.unique("throughput")
        sequence, final = SEQUENCES[index % len(SEQUENCES)]
        expected[job_id] = final
        previous: str | None = None
        for state in sequence:
            # The LogEntry the emulator publishes for this change, as the log sink delivers it.
            entry = log_entry(
                StateChange(
                    name=(
                        f"projects/{settings.project}/locations/{settings.region}"
                        f"/pipelineJobs/{job_id}"
                    ),
                    job_id=job_id,
                    project=settings.project,
                    location=settings.region,
                    display_name=job_id,
                    state=state,
                    previous_state=previous,
                    at=datetime.now(UTC),
                    error=(
                        {"code": FAILURE_CODE, "message": FAILURE_MESSAGE}
                        if state == FAILED
                        else None
                    ),
                )
            )
            message = InboundMessage(
                message_id=uuid.uuid4().hex,
                data=json.dumps(entry, separators=(",", ":")).encode(),
                attributes={"logging.googleapis.com/timestamp": entry["timestamp"]},
            )
            event = message_published_event(
                message,
                project=settings.project,
                topic=settings.job_events_topic,
                subscription=track_status.subscription,
            )
            headers, body = to_binary(event)
            raw = body if isinstance(body, bytes) else str(body).encode()
            deliveries.append(Delivery(job_id, state, dict(headers), raw))
            previous = state
    rng = random.Random(SEED)
    # A duplicate is the very same message again, as a Pub/Sub redelivery is.
    deliveries += rng.sample(deliveries, k=round(len(deliveries) * DUPLICATE_SHARE))
    rng.shuffle(deliveries)
    return expected, deliveries


def create_job_records(bench: Bench, job_ids: Sequence[str]) -> None:
    """Make the jobs as the launcher does — created REQUESTED, moved to SUBMITTED, announced on
    the status topic — minus the pipeline job (``pipeline_job`` stays None)."""
    from distillery.core.jobs import announce, new_record, transition
    from distillery.core.models import JobState

    deps, settings = bench.deps, bench.settings
    for job_id in job_ids:
        now = deps.clock()
        fields: dict[str, Any] = {
            "request": {
                "dataset_uri": f"gs://{settings.bucket}/{settings.validated_prefix}bench/x.jsonl",
                "request_id": job_id,
                "requested_by": "bench/latency.py",
            },
            "request_id": job_id,
            "rerun_of": None,
            "dataset_id": None,
            "spec": {},
            "reasons": [],
            "location": settings.region,
            "estimated_accelerator_hours": 0.0,
            "pipeline_job": None,
            "submitted_day": now.date().isoformat(),
        }
        record = new_record(job_id, JobState.REQUESTED, now, fields)
        if not deps.records.create(settings.jobs_collection, job_id, record):
            raise BenchmarkError(f"job {job_id} already exists")
        announce(deps, transition(deps, job_id, JobState.SUBMITTED).record)


def _post(url: str, delivery: Delivery) -> int:
    """POST one delivery (a new connection each time, as the bridge does); the HTTP status."""
    message = urllib.request.Request(
        url, data=delivery.body, headers=dict(delivery.headers), method="POST"
    )
    try:
        with urllib.request.urlopen(message, timeout=120) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def deliver_all(url: str, target: str, deliveries: Sequence[Delivery], concurrency: int) -> Pass:
    """POST every delivery to ``url``, ``concurrency`` at once; a non-2xx is POSTed again."""
    result = Pass(target)
    lock = threading.Lock()

    def one(delivery: Delivery) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            started = time.perf_counter()
            status = _post(url, delivery)
            if 200 <= status < 300:
                with lock:
                    result.latencies.append(time.perf_counter() - started)
                    result.retries += attempt - 1
                return
            time.sleep(RETRY_PAUSE)
        with lock:
            result.retries += MAX_ATTEMPTS - 1
            result.failed.append(f"{delivery.job_id} {delivery.state}: last answer {status}")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, deliveries))
    result.seconds = time.perf_counter() - started
    return result


def check_final_states(bench: Bench, expected: Mapping[str, str]) -> list[str]:
    """What is wrong with the jobs' records (empty: every job is where it must be)."""
    from distillery.core.jobs import STATE_RANK
    from distillery.core.models import JobState

    settings = bench.settings
    problems: list[str] = []
    for job_id, final in expected.items():
        record = bench.document(settings.jobs_collection, job_id)
        if record is None:
            problems.append(f"{job_id}: the record is gone")
            continue
        history = [entry["state"] for entry in record.get("history", [])]
        ranks = [STATE_RANK[JobState(state)] for state in history]
        if record.get("state") != final:
            problems.append(f"{job_id}: {record.get('state')}, expected {final} ({history})")
        elif history[-1:] != [final]:
            problems.append(f"{job_id}: its history does not end in {final}: {history}")
        elif history[:2] != ["REQUESTED", "SUBMITTED"]:
            problems.append(f"{job_id}: its history lost its beginning: {history}")
        elif any(later <= earlier for earlier, later in itertools.pairwise(ranks)):
            problems.append(f"{job_id}: its history goes backwards or repeats: {history}")
        elif final == "FAILED" and record.get("reason") != FAILURE_MESSAGE:
            problems.append(f"{job_id}: FAILED without its reason ({record.get('reason')!r})")
    for failure in bench.deps.records.list(settings.failures_collection):
        text = json.dumps(failure, default=str)
        if any(job_id in text for job_id in expected):
            problems.append(f"a failure was recorded for an event of these jobs: {text[:300]}")
    return problems


@dataclass
class ThroughputResults:
    """The passes of part 3 and the check of the final states."""

    jobs: int
    events: int
    duplicates: int
    concurrency: int
    passes: list[Pass]
    finals: dict[str, int]
    problems: list[str]


def measure_throughput(bench: Bench, jobs: int, concurrency: int) -> ThroughputResults:
    """Warm up, then the baseline, track_status and the baseline again; then the check."""
    stack = bench.stack
    warm_expected, warm = job_events(bench, 1)
    create_job_records(bench, list(warm_expected))
    for delivery in warm:
        _post(stack.function_url("track_status"), delivery)
        _post(stack.function_url(NOOP_TARGET), delivery)

    expected, deliveries = job_events(bench, jobs)
    create_job_records(bench, list(expected))
    duplicates = round(len(deliveries) / (1 + DUPLICATE_SHARE) * DUPLICATE_SHARE)
    passes: list[Pass] = []
    for target in (NOOP_TARGET, "track_status", NOOP_TARGET):
        bench.settle()
        one = deliver_all(stack.function_url(target), target, deliveries, concurrency)
        passes.append(one)
        print(
            f"{target}: {len(deliveries)} events in {one.seconds:.2f} s "
            f"({one.rate(len(deliveries)):.1f} events/s, {one.retries} re-POSTs)",
            flush=True,
        )
    problems = check_final_states(bench, expected)
    problems += [f"{one.target}: never took {failure}" for one in passes for failure in one.failed]
    finals: dict[str, int] = {}
    for final in expected.values():
        finals[final] = finals.get(final, 0) + 1
    return ThroughputResults(
        jobs=jobs,
        events=len(deliveries),
        duplicates=duplicates,
        concurrency=concurrency,
        passes=passes,
        finals=finals,
        problems=problems,
    )


def report_throughput(results: ThroughputResults) -> None:
    """Print events/s of each pass, the ratio and the check."""
    events = results.events
    print()
    print(
        f"status handler throughput: {results.jobs} jobs, {events - results.duplicates} events "
        f"+ {results.duplicates} duplicates = {events}, shuffled, {results.concurrency} "
        "concurrent POSTs"
    )
    header = (
        f"{'':<24}{'events/s':>10}{'POST median ms':>16}{'p95 ms':>8}{'max ms':>8}{'re-POSTs':>10}"
    )
    print(header)
    print("-" * len(header))
    labels = [f"{NOOP_TARGET} (before)", "track_status", f"{NOOP_TARGET} (after)"]
    for label, one in zip(labels, results.passes, strict=True):
        latencies = one.latencies or [0.0]
        print(
            f"{label:<24}{one.rate(events):>10.1f}{_ms(statistics.median(latencies)):>16}"
            f"{_ms(percentile(latencies, 0.95)):>8}{_ms(max(latencies)):>8}{one.retries:>10}"
        )
    before, handler, after = results.passes
    baseline_seconds = (before.seconds + after.seconds) / 2
    if baseline_seconds and handler.seconds:
        baseline_rate = events / baseline_seconds
        ratio = handler.rate(events) / baseline_rate
        print(
            f"ratio track_status / {NOOP_TARGET} (mean of both passes, {baseline_rate:.1f} "
            f"events/s): {ratio:.3f}x"
        )
    print()
    finals = ", ".join(f"{count} {state}" for state, count in sorted(results.finals.items()))
    if results.problems:
        print(f"final states in Firestore: FAIL ({len(results.problems)} problem(s))")
        for problem in results.problems[:20]:
            print(f"  {problem}")
    else:
        print(
            f"final states in Firestore: PASS ({results.jobs} jobs: {finals}; every history "
            "forward-only, no failure recorded)"
        )


# --- Main -------------------------------------------------------------------------------------


def benchmark(
    folder: Path, uploads: int, jobs: int, concurrency: int, cancel: bool
) -> tuple[LatencyResults, ThroughputResults]:
    """Start the stack, warm up, measure; stop the stack whatever happens.

    Raises:
        BenchmarkError: the stack could not start, or a warm-up failed.
    """
    from distillery.local.stack import LocalStackError, Stack

    receipts = folder / RECEIPTS_FILE
    stack = Stack(stack_config(folder / "stack", receipts))
    started = time.perf_counter()
    try:
        stack.start()
    except LocalStackError as exc:
        raise BenchmarkError(f"the local stack did not start: {exc}") from exc
    try:
        print(f"local stack ready in {time.perf_counter() - started:.1f} s", flush=True)
        bench = Bench(stack, library(stack), Receipts(receipts))
        try:
            ping = measure_ping(bench)
        except RunFailedError as exc:
            raise BenchmarkError(f"the baseline warm-up failed: {exc}") from exc
        warm = measure_dataset(bench, seed=1, cancel=True)
        if warm.error is not None:
            raise BenchmarkError(f"the dataset warm-up failed: {warm.error}")
        print(
            f"warm-up: baseline {ping * 1000:.0f} ms, SUBMITTED {warm.submitted * 1000:.0f} ms",
            flush=True,
        )
        latency = measure_latency(bench, uploads, cancel)
        report_latency(latency, uploads)
        print()
        throughput = measure_throughput(bench, jobs, concurrency)
        return latency, throughput
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=20, help="timed uploads (and baselines)")
    parser.add_argument("--jobs", type=int, default=50, help="jobs for the throughput part")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="POSTs in flight at once (the bridge's: 4)"
    )
    parser.add_argument(
        "--keep-logs",
        type=Path,
        metavar="DIR",
        help="keep the stack's state and logs in DIR (new or empty) instead of a temporary folder",
    )
    parser.add_argument(
        "--no-cancel",
        action="store_true",
        help="let every job train its one step instead of cancelling it once SUBMITTED",
    )
    args = parser.parse_args(argv)
    for name in ("uploads", "jobs", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")

    if args.keep_logs is not None and args.keep_logs.exists() and any(args.keep_logs.iterdir()):
        parser.error(f"--keep-logs {args.keep_logs} is not empty")

    signal.signal(signal.SIGTERM, _terminate)
    began = time.perf_counter()
    if args.keep_logs is not None:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
        holder: contextlib.AbstractContextManager[str] = contextlib.nullcontext(
            str(args.keep_logs.resolve())
        )
    else:
        holder = tempfile.TemporaryDirectory(prefix="distillery-latency-")
    with holder as folder:
        try:
            latency, throughput = benchmark(
                Path(folder), args.uploads, args.jobs, args.concurrency, not args.no_cancel
            )
        except BenchmarkError as exc:
            print(f"the benchmark could not run: {exc}", file=sys.stderr)
            return 2
    report_throughput(throughput)
    if args.keep_logs is not None:
        print(f"the stack's logs: {args.keep_logs / 'stack' / 'logs'}")
    print()
    print(f"benchmark took {time.perf_counter() - began:.0f} s")
    failed_runs = len(latency.ping_errors) + len(latency.datasets) - len(latency.good)
    if throughput.problems:
        return 1
    if failed_runs:
        print(f"{failed_runs} upload run(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
