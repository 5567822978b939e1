"""Chaos scenarios on a local stack: ``kill -9`` of a function process in the middle of an event.

The stack's supervisor starts the killed function again (as Cloud Run starts a new instance), the
bridge redelivers the event whose request died with it (as Eventarc does), and the outcome must be
as if the function had never died. The scenarios, each from a reset, quiet stack:

- ``kill -9 launch_job`` while its ``pipelineJobs.create`` is in flight (Vertex AI stored the job,
  the function has not answered): one pipeline job for the request, its record SUBMITTED or later;
- ``kill -9 validate_dataset`` with the upload's event in its hands: one validation record for the
  upload, one LaunchRequest, one job;
- one LaunchRequest published again many times at once while its first delivery is creating the
  job: one job.

They are counted as :mod:`distillery.local.chaos` counts (duplicate jobs, lost events, wrong
champions), so ``bench/chaos.py --stack`` folds them into one summary line. A scenario whose fault
missed its window (the kill came too late, or broke no delivery) proved nothing: it is reported
not held, with why, rather than passing.

The stack is an ephemeral one (free ports, a temporary state directory): its local Vertex AI API
answers ``pipelineJobs.create`` only seconds after storing the job, which opens the window that
matters, and it trains nothing (jobs fail after reading their data; no CPU spent on training).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from distillery.core.models import JobState, LaunchRequest
from distillery.local.chaos import Counts, Result
from distillery.local.example_data import Example, generate
from distillery.local.stack.control import Stack, StackConfig
from distillery.local.stack.errors import ServiceStartError, StackNotRunningError
from distillery.local.stack.harness import StackHarness
from distillery.local.stack.processes import local_request
from distillery.local.stack.supervisor import group_members

logger = logging.getLogger(__name__)

#: How long the local Vertex AI API holds back its answer to ``pipelineJobs.create``: the window
#: in which a kill finds the job stored at Vertex AI and not yet recorded by the function.
CREATE_DELAY_SECONDS = 8.0
#: Copies of one LaunchRequest published at once in the redelivery scenario.
DEFAULT_COPIES = 8
#: A stack is quiet once no delivery was in flight for this long (longer than the bridge's first
#: backoff, so a failed delivery waiting to come back is not mistaken for the end of the work).
QUIET_SECONDS = 3.0
#: How long a scenario's leftover work may take to finish before the stack counts as not quiet.
QUIET_TIMEOUT_SECONDS = 120.0
#: Job states that no longer wait for anything of the launcher.
_LAUNCHED_STATES = frozenset(state.value for state in JobState) - {JobState.REQUESTED.value}
#: Pipeline states after which Vertex AI changes nothing more (nor announces anything).
_FINAL_PIPELINE_STATES = frozenset(
    {"PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED"}
)

_T = TypeVar("_T")


@dataclass
class StackCounts(Counts):
    """:class:`~distillery.local.chaos.Counts` of a stack scenario, which may also miss its window.

    A scenario whose fault came too late (or broke nothing) proved nothing, so it did not hold
    even with every count at zero; its notes say why.
    """

    missed: bool = False

    @property
    def held(self) -> bool:
        return super().held and not self.missed

    def miss(self, why: str) -> None:
        """Record that the fault missed its window (or the scenario could not run) and why."""
        self.missed = True
        self.notes.append(why)


class WindowMissed(Exception):
    """The fault did not land where the scenario needed it; the scenario proved nothing."""


def killable_config(state_dir: Path, **changes: Any) -> StackConfig:
    """An ephemeral stack config with a slow ``pipelineJobs.create`` and no trainer."""
    settings: dict[str, Any] = {
        "startup_timeout": 180.0,
        "vertex_create_delay_seconds": CREATE_DELAY_SECONDS,
        "vertex_trainer": False,
        # The scenarios are the pipeline backend's (pipelineJobs.create is the slow call).
        "backend": "pipeline",
    }
    return StackConfig.ephemeral(state_dir, **{**settings, **changes})


# --- what the checks compare -----------------------------------------------------------------


def count_outcome(
    what: str, found: Iterable[str], *, expected: int = 1, counts: StackCounts
) -> None:
    """Count ``found`` (names of one kind of outcome) against the one expected.

    More than ``expected`` are duplicates; fewer are lost events. Each mismatch is noted.
    """
    names = sorted(found)
    if len(names) > expected:
        counts.duplicate_jobs += len(names) - expected
        counts.notes.append(f"{len(names)} {what} instead of {expected}: {', '.join(names)}")
    elif len(names) < expected:
        counts.lost_events += expected - len(names)
        counts.notes.append(f"{len(names)} {what} instead of {expected}")


def history(record: dict[str, Any]) -> list[str]:
    """The states a job record went through, oldest first."""
    return [str(entry.get("state")) for entry in record.get("history", [])]


def launched(record: dict[str, Any]) -> bool:
    """Whether a job record is past REQUESTED (submitted, or decided otherwise)."""
    return str(record.get("state")) in _LAUNCHED_STATES


def wait_for(probe: Callable[[], _T | None], *, timeout: float, interval: float = 0.2) -> _T | None:
    """Call ``probe`` until it returns something truthy; that value, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def _jsonl(examples: list[Example]) -> bytes:
    return "".join(example.to_json() + "\n" for example in examples).encode()


# --- the stack, observed ---------------------------------------------------------------------


class StackChaos:
    """A running stack (through its :class:`StackHarness`) as the scenarios see and hurt it."""

    def __init__(self, harness: StackHarness) -> None:
        self.harness = harness

    def pipeline_jobs(self, regions: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Pipeline jobs on the local Vertex AI API by resource name, in ``regions`` (default:
        the stack's region and every supported one).

        Raises:
            ServiceStartError: the local Vertex AI API did not answer as expected.
        """
        return self.harness.pipeline_jobs(regions)

    def unfinished_pipeline_jobs(self) -> list[str]:
        """The pipeline jobs not yet in a final state (their status events are still to come)."""
        return sorted(
            name
            for name, job in self.pipeline_jobs().items()
            if job.get("state") not in _FINAL_PIPELINE_STATES
        )

    def bridge(self) -> dict[str, Any]:
        """The bridge's status: deliveries ``inflight`` and ``delivered``/``failed`` so far.

        Raises:
            ServiceStartError: the bridge did not answer.
        """
        status, body = local_request("GET", f"{self.harness.bridge_url}/healthz")
        if status != 200:
            raise ServiceStartError(f"the bridge answered {status}: {body[:200]!r}")
        result: dict[str, Any] = json.loads(body)
        return result

    def records(self, collection: str) -> dict[str, dict[str, Any]]:
        """Every document of a Firestore collection, by id."""
        documents = self.harness.firestore_client().collection(collection).stream()
        return {document.id: document.to_dict() or {} for document in documents}

    def jobs(self) -> dict[str, dict[str, Any]]:
        """The job records, by job id."""
        return self.records(self.harness.settings.jobs_collection)

    def dead_lettered(self) -> list[str]:
        """Pull (and acknowledge) whatever reached a dead-letter topic: ``topic: message id``."""
        found: list[str] = []
        for dlq in self.harness.stack.dead_letter_subscriptions():
            handle = self.harness.dead_letters(dlq.removesuffix("-dlq"))
            found.extend(f"{dlq}: {m.message_id}" for m in handle.pull(100, timeout=1.0))
        return found

    def restarts(self, target: str) -> int:
        """How often the supervisor restarted function ``target``.

        Raises:
            StackNotRunningError: the function's supervisor reports no status.
        """
        status = self.harness.stack.state().supervised().get(f"function:{target}")
        if status is None:
            raise StackNotRunningError(f"function {target} has no supervisor status")
        return status.restarts

    def kill(self, target: str) -> None:
        """SIGKILL function ``target``'s server process (its supervisor then kills the rest)."""
        os.kill(self.harness.stack.function_pid(target), signal.SIGKILL)

    def wait_restarted(self, target: str, restarts: int, timeout: float = 60.0) -> bool:
        """Wait until ``target`` was restarted ``restarts`` times in all and answers again."""

        def ready() -> bool:
            if self.restarts(target) < restarts:
                return False
            # A function answers GET with 405 (it takes POSTed events only): it is serving.
            return local_request("GET", self.harness.function_url(target))[0] == 405

        return bool(wait_for(ready, timeout=timeout))

    def wait_quiet(self, timeout: float | None = None, quiet: float | None = None) -> str | None:
        """Wait until the work under way is finished; None, or what is still unfinished.

        Finished: for ``quiet`` seconds on end, no delivery in flight at the bridge, no job left
        REQUESTED (a launch still creating its pipeline job, or waiting to be redelivered) and no
        pipeline job unfinished (its state changes would still reach ``track_status``; a reset
        would cancel it and so make more work, after the reset). Defaults:
        :data:`QUIET_TIMEOUT_SECONDS` and :data:`QUIET_SECONDS`.
        """
        timeout = QUIET_TIMEOUT_SECONDS if timeout is None else timeout
        quiet = QUIET_SECONDS if quiet is None else quiet
        deadline = time.monotonic() + timeout
        idle_since: float | None = None
        unfinished = ""
        while time.monotonic() < deadline:
            inflight = int(self.bridge().get("inflight", 0))
            requested = sorted(job for job, record in self.jobs().items() if not launched(record))
            running = self.unfinished_pipeline_jobs()
            unfinished = (
                f"{inflight} deliveries in flight, jobs REQUESTED: {', '.join(requested) or 'none'}"
                f", pipeline jobs unfinished: {', '.join(running) or 'none'}"
            )
            now = time.monotonic()
            if inflight or requested or running:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= quiet:
                return None
            time.sleep(0.2)
        return f"after {timeout:.0f} s: {unfinished}"

    @contextmanager
    def frozen(self, target: str) -> Iterator[list[int]]:
        """Function ``target``'s processes stopped (SIGSTOP) inside the block; yields their PIDs.

        Requests reach the stopped function and stay unanswered. On leaving, whichever of them is
        still alive is continued (SIGCONT), so none stays stopped holding its port.

        Raises:
            WindowMissed: the function has no process to stop.
        """
        record = self.harness.stack.services[f"function:{target}"]
        # The supervisor leads the process group; its members are the function's processes.
        members = group_members(record.pid, exclude=record.pid)
        if not members:
            raise WindowMissed(f"{target} had no process to stop")
        for pid in members:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield members
        finally:
            for pid in members:
                with contextlib.suppress(ProcessLookupError):  # killed meanwhile
                    os.kill(pid, signal.SIGCONT)

    @contextmanager
    def status_events(self) -> Iterator[Callable[[str, str], bool]]:
        """A subscription on the status topic; yields ``seen(job_id, state)``, which pulls until
        that state of that job was announced (True) or a minute passed (False)."""
        subscription = self.harness.subscribe(self.harness.settings.status_topic)
        announced: set[tuple[str, str]] = set()

        def seen(job_id: str, state: str) -> bool:
            def pull() -> bool:
                for message in subscription.pull(5, timeout=2):
                    event = message.json()
                    announced.add((str(event.get("job_id")), str(event.get("state"))))
                return (job_id, state) in announced

            return bool(wait_for(pull, timeout=60, interval=0))

        try:
            yield seen
        finally:
            subscription.close()


# --- the scenarios ---------------------------------------------------------------------------


def _new_jobs(chaos: StackChaos, before: Iterable[str]) -> set[str]:
    """Pipeline jobs (in every region) that were not there ``before``."""
    return set(chaos.pipeline_jobs()) - set(before)


def _check_launched(chaos: StackChaos, before: Iterable[str], counts: StackCounts) -> None:
    """One job record, one new pipeline job, the job past REQUESTED, nothing dead-lettered."""
    dead = chaos.dead_lettered()
    if dead:
        counts.lost_events += len(dead)
        counts.notes.append(f"dead-lettered: {', '.join(dead)}")
    jobs = chaos.jobs()
    count_outcome("job records", jobs, counts=counts)
    count_outcome("pipeline jobs", _new_jobs(chaos, before), counts=counts)
    stuck = sorted(job_id for job_id, job in jobs.items() if not launched(job))
    if stuck:
        counts.lost_events += len(stuck)
        counts.notes.append(f"jobs never submitted: {', '.join(stuck)}")


def _all_launched(jobs: dict[str, dict[str, Any]]) -> bool:
    return bool(jobs) and all(launched(record) for record in jobs.values())


def _seconds_since(rfc3339: str) -> float:
    return (datetime.now(UTC) - datetime.fromisoformat(rfc3339)).total_seconds()


def kill_launch_job_mid_create(chaos: StackChaos) -> StackCounts:
    """kill -9 of launch_job while Vertex AI has stored the job and not yet answered.

    ``track_status`` is held (SIGSTOP) meanwhile, as a slow log sink would hold the job's state
    events: otherwise the PENDING event of the stored job could move the record to SUBMITTED
    before the kill, and the redelivery would have nothing left to do.

    Raises:
        WindowMissed: no pipeline job appeared, or the kill came after Vertex AI answered or
            after the job was recorded, or it broke no delivery.
    """
    counts = StackCounts()
    harness = chaos.harness
    before = set(chaos.pipeline_jobs())
    restarts = chaos.restarts("launch_job")
    failed = int(chaos.bridge()["failed"])
    train, evaluation = generate(240, 20)
    region = [harness.stack.config.region]
    with chaos.status_events() as seen:
        with chaos.frozen("track_status"):
            harness.upload("datasets/kill-launch.eval.jsonl", _jsonl(evaluation))
            harness.upload("datasets/kill-launch.jsonl", _jsonl(train))
            # The create is in flight: Vertex AI lists the job, launch_job waits for the answer.
            created = wait_for(
                lambda: {
                    name: job
                    for name, job in chaos.pipeline_jobs(region).items()
                    if name not in before
                },
                timeout=90,
                interval=0.05,
            )
            if not created:
                raise WindowMissed("no pipeline job appeared within 90 s of the upload")
            chaos.kill("launch_job")
            ages = [_seconds_since(job["createTime"]) for job in created.values()]
            records = chaos.jobs()
            if max(ages) >= CREATE_DELAY_SECONDS:
                raise WindowMissed(
                    f"the kill came {max(ages):.1f} s after Vertex AI stored the job, once its "
                    f"answer ({CREATE_DELAY_SECONDS:.0f} s) was sent"
                )
            recorded = {
                job_id: history(record)
                for job_id, record in records.items()
                if JobState.SUBMITTED.value in history(record)
            }
            if recorded:
                raise WindowMissed(f"the job was recorded SUBMITTED before the kill: {recorded}")
            if not chaos.wait_restarted("launch_job", restarts + 1):
                raise WindowMissed("launch_job was not restarted within 60 s")
            # Only the redelivery to launch_job can submit the job while track_status is held.
            if not wait_for(lambda: _all_launched(chaos.jobs()), timeout=120):
                counts.lost_events += 1
                counts.notes.append("the job was not SUBMITTED within 120 s of the restart")
        if int(chaos.bridge()["failed"]) <= failed:
            raise WindowMissed("the kill broke no delivery (none was redelivered)")
        quiet = chaos.wait_quiet()
        _check_launched(chaos, before, counts)
        for job_id, record in chaos.jobs().items():
            if record.get("pipeline_job") not in created:
                counts.duplicate_jobs += 1
                counts.notes.append(
                    f"job {job_id} records {record.get('pipeline_job')}, not the pipeline job "
                    f"created before the kill ({', '.join(sorted(created))})"
                )
            elif not seen(job_id, JobState.SUBMITTED.value):
                counts.lost_events += 1
                counts.notes.append(f"SUBMITTED of job {job_id} never announced")
    if quiet:
        counts.miss(f"the stack did not settle: {quiet}")
    return counts


def kill_validate_dataset_mid_event(chaos: StackChaos) -> StackCounts:
    """kill -9 of validate_dataset with an upload's event in its hands.

    The function's processes are stopped (SIGSTOP) first, so the event reaches the function and
    stays unanswered; then the server is killed, and the bridge's request dies with it.

    Raises:
        WindowMissed: the function had no process to stop, the event never reached it, or the
            kill broke no delivery.
    """
    counts = StackCounts()
    harness = chaos.harness
    before = set(chaos.pipeline_jobs())
    restarts = chaos.restarts("validate_dataset")
    train, evaluation = generate(2000, 100)
    harness.upload("datasets/kill-validate.eval.jsonl", _jsonl(evaluation))
    if not wait_for(lambda: chaos.bridge()["inflight"] == 0, timeout=60):
        raise WindowMissed("the eval upload was still being handled after 60 s")
    launches = harness.subscribe(harness.settings.launch_topic)
    try:
        with chaos.frozen("validate_dataset"):
            failed = int(chaos.bridge()["failed"])
            harness.upload("datasets/kill-validate.jsonl", _jsonl(train))
            if not wait_for(lambda: chaos.bridge()["inflight"] >= 1, timeout=60):
                raise WindowMissed("the upload's event never reached validate_dataset")
            time.sleep(0.5)  # the request is written to the stopped function's socket
            chaos.kill("validate_dataset")
            # Restarted only once the supervisor killed what was left of it (the stopped
            # workers, which must not be continued with the event in their hands).
            if not chaos.wait_restarted("validate_dataset", restarts + 1):
                raise WindowMissed("validate_dataset was not restarted within 60 s")
        requests = launches.pull(max_messages=1, timeout=120)
        # No second LaunchRequest for the same upload, even as redeliveries settle.
        requests += launches.pull(max_messages=5, timeout=10)
    finally:
        launches.close()
    if int(chaos.bridge()["failed"]) <= failed:
        raise WindowMissed("the kill broke no delivery (none was redelivered)")
    quiet = chaos.wait_quiet()
    count_outcome(
        "LaunchRequests for the upload",
        (
            f"{LaunchRequest.model_validate(message.json()).request_id} ({message.message_id})"
            for message in requests
        ),
        counts=counts,
    )
    datasets = chaos.records(harness.settings.datasets_collection)
    count_outcome(
        "validation records of the upload",
        (key for key, value in datasets.items() if "kill-validate.jsonl" in json.dumps(value)),
        counts=counts,
    )
    _check_launched(chaos, before, counts)
    if quiet:
        counts.miss(f"the stack did not settle: {quiet}")
    return counts


def concurrent_redeliveries(chaos: StackChaos, copies: int = DEFAULT_COPIES) -> StackCounts:
    """One LaunchRequest published ``copies`` more times at once, while its first delivery is
    still creating the pipeline job (the local Vertex AI API holds back its answer).

    Raises:
        WindowMissed: validate_dataset published no LaunchRequest, or the job was submitted
            before the copies were published.
    """
    counts = StackCounts()
    harness = chaos.harness
    before = set(chaos.pipeline_jobs())
    train, evaluation = generate(240, 20, seed=11)
    launches = harness.subscribe(harness.settings.launch_topic)
    try:
        harness.upload("datasets/redeliver.eval.jsonl", _jsonl(evaluation))
        harness.upload("datasets/redeliver.jsonl", _jsonl(train))
        received = launches.pull(max_messages=1, timeout=90)
    finally:
        launches.close()
    if not received:
        raise WindowMissed("validate_dataset published no LaunchRequest within 90 s")
    if any(launched(record) for record in chaos.jobs().values()):
        raise WindowMissed("the job was submitted before the copies could be published")
    [message] = received
    topic = harness.settings.launch_topic
    with ThreadPoolExecutor(max_workers=copies) as pool:
        list(
            pool.map(
                lambda _: harness.publish(topic, message.data, **message.attributes),
                range(copies),
            )
        )
    quiet = chaos.wait_quiet()
    _check_launched(chaos, before, counts)
    # Copies of one request are the same request: none may be recorded as a failure.
    failures = chaos.records(harness.settings.failures_collection)
    if failures:
        counts.lost_events += len(failures)
        counts.notes.append(f"deliveries recorded as failures: {', '.join(sorted(failures))}")
    if quiet:
        counts.miss(f"the stack did not settle: {quiet}")
    return counts


#: The scenarios, in the order run. The validate scenario comes first on purpose: its
#: LaunchRequest is still being launched when it ends, so the next scenario shows that each one
#: starts from a quiet stack.
SCENARIOS: tuple[tuple[str, Callable[[StackChaos], StackCounts]], ...] = (
    ("stack: kill -9 validate_dataset mid-event", kill_validate_dataset_mid_event),
    ("stack: kill -9 launch_job mid pipelineJobs.create", kill_launch_job_mid_create),
    (f"stack: {DEFAULT_COPIES} concurrent copies of one LaunchRequest", concurrent_redeliveries),
)


def run_scenario(
    chaos: StackChaos, name: str, scenario: Callable[[StackChaos], StackCounts]
) -> Result:
    """Run one scenario from a quiet, reset stack; a scenario that could not run did not hold."""
    counts = StackCounts()
    unfinished = chaos.wait_quiet()
    if unfinished:
        counts.miss(f"the stack was not quiet before the scenario: {unfinished}")
        return Result(name, counts)
    chaos.harness.reset()
    started = time.monotonic()
    try:
        counts = scenario(chaos)
    except WindowMissed as exc:
        counts.miss(f"window missed: {exc}")
    except Exception as exc:  # a scenario that broke proved nothing; say why and go on
        logger.exception("stack scenario %s broke", name)
        counts.miss(f"{type(exc).__name__}: {exc}")
    logger.info("stack scenario %s: %s in %.1f s", name, counts, time.monotonic() - started)
    return Result(name, counts)


def run_on(harness: StackHarness) -> list[Result]:
    """Run every scenario on a started stack (one with :func:`killable_config`)."""
    chaos = StackChaos(harness)
    return [run_scenario(chaos, name, scenario) for name, scenario in SCENARIOS]


def run_all(*, startup_timeout: float = 180.0) -> list[Result]:
    """Start an ephemeral stack, run every scenario on it, stop it; the results.

    Raises:
        MissingToolError: Java, the Cloud SDK emulators or fake-gcs-server are not installed.
        ServiceStartError: a service of the stack did not start.
    """
    with tempfile.TemporaryDirectory(prefix="distillery-chaos-") as state_dir:
        stack = Stack(killable_config(Path(state_dir), startup_timeout=startup_timeout)).start()
        harness = StackHarness(stack)
        try:
            return run_on(harness)
        finally:
            harness.close()
            stack.stop()
