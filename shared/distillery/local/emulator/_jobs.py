"""What the emulated job services share: the record of a job's times and states, and the pool.

:class:`JobPool` holds the records of one kind of job (pipeline or tuning) behind one lock,
queues new jobs for a bounded pool of worker threads, and answers ``cancel`` the one way both
services do. A subclass says what a run is (:meth:`JobPool._run`), what a failed worker leaves
behind (:meth:`JobPool._worker_failed`) and what else a transition does
(:meth:`JobPool._on_transition`).

:class:`QueuedJobService` is the pool of the job services whose ids the service makes and whose
jobs wait PENDING before they run (tuning and batch prediction): it creates, gets and lists
their records, runs each through a runner and records how the run ended; a subclass says what a
run's result leaves on the record (:meth:`QueuedJobService._end_state`).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from distillery.core.ports import ObjectStore
from distillery.local.emulator._model import JobStates, now, rfc3339
from distillery.local.emulator._registry import list_page, parse_simple_filter
from distillery.local.emulator._runner import JobFailedError, RunContext
from distillery.local.emulator._status import ApiError, FieldViolation, rpc_status

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class JobRecord:
    """One job's mutable state (guarded by its pool's lock); subclasses add what the job is."""

    seq: int
    state: str
    update_time: datetime
    context: RunContext
    start_time: datetime | None = None
    end_time: datetime | None = None
    error: Mapping[str, Any] | None = None
    history: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The job's resource name, ``projects/P/locations/L/COLLECTION/ID``."""
        raise NotImplementedError

    def stamp(self, states: JobStates, state: str, moment: datetime) -> str | None:
        """Move to ``state`` (one of ``states``) at ``moment``; the state before (None at first)."""
        previous = self.history[-1] if self.history else None
        self.state = state
        self.update_time = moment
        if state == states.running:
            self.start_time = moment
        if state in states.terminal:
            self.end_time = moment
        self.history.append(state)
        return previous

    def times(self, create_time: datetime) -> dict[str, str]:
        """The REST ``createTime``, ``startTime``, ``endTime`` and ``updateTime`` that are set."""
        answer = {"createTime": rfc3339(create_time)}
        if self.start_time:
            answer["startTime"] = rfc3339(self.start_time)
        if self.end_time:
            answer["endTime"] = rfc3339(self.end_time)
        answer["updateTime"] = rfc3339(self.update_time)
        return answer


@dataclass(frozen=True)
class JobKind:
    """How one kind of job is named in resource names, messages, logs and thread names."""

    #: The state names of the kind's enum.
    states: JobStates
    #: The lowercase noun of messages and logs, e.g. ``"pipeline job"``.
    noun: str
    #: The REST type of NOT_FOUND messages, e.g. ``"PipelineJob"``.
    resource_type: str
    #: The collection of resource names, e.g. ``"pipelineJobs"``.
    collection: str
    #: The ``extra`` key of log records that carries the job's name.
    log_key: str
    #: What the workers are called in their threads' names and logs, e.g. ``"tuning"``.
    worker_noun: str
    #: The message of the ``error`` of a cancelled job.
    cancelled_message: str

    def name(self, project: str, location: str, job_id: str) -> str:
        """The resource name of job ``job_id``."""
        return f"projects/{project}/locations/{location}/{self.collection}/{job_id}"


R = TypeVar("R", bound=JobRecord)


class JobPool(Generic[R]):
    """Records of one kind of job behind one lock, and the workers that run them."""

    def __init__(self, kind: JobKind, *, max_concurrent_jobs: int) -> None:
        self._kind = kind
        self._max_concurrent = max_concurrent_jobs
        self._lock = threading.Lock()
        self._records: dict[str, R] = {}
        self._seq = itertools.count(1)
        self._pending: queue.Queue[str | None] = queue.Queue()
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        """Start the job workers (idempotent)."""
        if self._workers:
            return
        for number in range(self._max_concurrent):
            worker = threading.Thread(
                target=self._work,
                name=f"emulator-{self._kind.worker_noun}-worker-{number}",
                daemon=True,
            )
            worker.start()
            self._workers.append(worker)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Ask running jobs to cancel and stop the workers."""
        states = self._kind.states
        with self._lock:
            for record in self._records.values():
                if record.state not in states.terminal:
                    record.context.cancel_requested.set()
        for _ in self._workers:
            self._pending.put(None)
        for worker in self._workers:
            worker.join(timeout)
        self._workers.clear()

    def cancel(self, project: str, location: str, job_id: str) -> None:
        """``cancel``: the job goes CANCELLING, then CANCELLED once its run stops.

        A job still waiting for a worker is CANCELLED at once; cancelling a CANCELLING job is a
        no-op.

        Raises:
            ApiError: NOT_FOUND; FAILED_PRECONDITION when the job already ended.
        """
        states = self._kind.states
        with self._lock:
            record = self._find(project, location, job_id)
            if record.state in states.terminal:
                raise ApiError(
                    "FAILED_PRECONDITION",
                    f"Cannot cancel {self._kind.noun} {record.name}: it is already in state "
                    f"{record.state}.",
                )
            if record.state == states.cancelling:
                return
            was_pending = record.state == states.pending
            record.context.cancel_requested.set()
            moment = now()
            self._transition(record, states.cancelling, moment)
            if was_pending:
                record.error = rpc_status("CANCELLED", self._kind.cancelled_message)
                self._transition(record, states.cancelled, moment)
        logger.info(f"{self._kind.noun} cancel requested", extra={self._kind.log_key: record.name})

    def _find(self, project: str, location: str, job_id: str) -> R:
        """The record of job ``job_id`` (call with the lock held).

        Raises:
            ApiError: NOT_FOUND.
        """
        name = self._kind.name(project, location, job_id)
        record = self._records.get(name)
        if record is None:
            raise ApiError("NOT_FOUND", f"{self._kind.resource_type} {name} is not found.")
        return record

    def _transition(self, record: R, state: str, moment: datetime) -> None:
        """Move ``record`` to ``state`` (call with the lock held)."""
        previous = record.stamp(self._kind.states, state, moment)
        self._on_transition(record, previous, moment)
        logger.info(
            f"{self._kind.noun} state changed",
            extra={self._kind.log_key: record.name, "state": state, "previous_state": previous},
        )

    def _on_transition(self, record: R, previous: str | None, moment: datetime) -> None:
        """What else a transition does, with the lock held (nothing, unless overridden)."""

    def _work(self) -> None:
        """A worker: take queued jobs one at a time until shutdown."""
        while True:
            name = self._pending.get()
            if name is None:
                return
            try:
                self._run(name)
            except Exception:  # Never lose a worker: the job is marked, the pool keeps going.
                logger.exception(
                    f"the {self._kind.worker_noun} worker failed", extra={self._kind.log_key: name}
                )
                self._worker_failed(name)

    def _run(self, name: str) -> None:
        """Run job ``name`` to its end."""
        raise NotImplementedError

    def _worker_failed(self, name: str) -> None:
        """Mark job ``name``, whose worker raised, as failed."""
        raise NotImplementedError


class _LabelledRequest(Protocol):
    """A validated create request: what a list filter's ``labels.KEY`` clauses read."""

    @property
    def labels(self) -> Mapping[str, str]:
        """The request's labels."""
        ...


class QueuedJobRun(Protocol):
    """What a queued job's run names: the job, where it is, its request and when it was made."""

    @property
    def name(self) -> str:
        """The job's resource name."""
        ...

    @property
    def project(self) -> str:
        """The job's project."""
        ...

    @property
    def location(self) -> str:
        """The job's location."""
        ...

    @property
    def request(self) -> _LabelledRequest:
        """The job's validated create request."""
        ...

    @property
    def create_time(self) -> datetime:
        """When the job was created."""
        ...


RunT = TypeVar("RunT", bound=QueuedJobRun)


@dataclass(kw_only=True)
class QueuedJobRecord(JobRecord, Generic[RunT]):
    """A queued job's record: its run (the job as created) and its mutable state."""

    run: RunT

    @property
    def name(self) -> str:
        """The job's resource name."""
        return self.run.name

    @property
    def project(self) -> str:
        """The job's project."""
        return self.run.project

    @property
    def location(self) -> str:
        """The job's location."""
        return self.run.location

    @property
    def labels(self) -> Mapping[str, str]:
        """The labels of the job's request."""
        return self.run.request.labels

    def resource(self) -> dict[str, Any]:
        """The job's REST resource."""
        raise NotImplementedError


Q = TypeVar("Q", bound=QueuedJobRecord[Any])
ResultT = TypeVar("ResultT")
V = TypeVar("V")


def parse_state_filter(
    text: str, filter_fields: Sequence[str], states: JobStates
) -> list[tuple[str, str, str]]:
    """``labels.k="v" AND state!=X`` → clauses over ``filter_fields``; a state must be one of
    ``states``.

    Raises:
        ApiError: INVALID_ARGUMENT, an unsupported clause or an unknown state.
    """
    clauses = parse_simple_filter(text, filter_fields)
    every = states.every
    for field_name, _, value in clauses:
        if field_name == "state" and value not in every:
            raise ApiError(
                "INVALID_ARGUMENT",
                f"Invalid state {value!r} in filter; use one of {', '.join(every)}",
                [FieldViolation("filter", f"unknown state {value!r}")],
            )
    return clauses


class QueuedJobService(JobPool[Q], Generic[Q, ResultT]):
    """A job service whose ids the service makes and whose jobs wait PENDING, then run.

    A job stays PENDING at least ``start_delay_seconds`` after its creation (a real job waits
    for its resources; the wait ends early on cancel), then RUNNING while :meth:`_execute` runs
    it on a worker, then ends as :meth:`_end_state` says of the run's result or error.
    """

    #: The fields a list filter may name besides ``labels.KEY``.
    filter_fields: ClassVar[tuple[str, ...]] = ()
    #: What a run raises when it stopped on cancel (none, unless a subclass says so).
    stopped_errors: ClassVar[tuple[type[Exception], ...]] = ()

    def __init__(
        self,
        kind: JobKind,
        *,
        object_store: ObjectStore,
        max_concurrent_jobs: int,
        start_delay_seconds: float,
        id_offset: int,
    ) -> None:
        """``id_offset`` keeps the ids of two kinds of jobs made in the same millisecond apart.

        Raises:
            ValueError: ``max_concurrent_jobs`` is below 1.
        """
        if max_concurrent_jobs < 1:
            raise ValueError("max_concurrent_jobs must be at least 1")
        super().__init__(kind, max_concurrent_jobs=max_concurrent_jobs)
        self._object_store = object_store
        self._start_delay = start_delay_seconds
        # Numeric ids like the service's; the clock keeps them unique across emulator restarts.
        self._ids = itertools.count(int(time.time() * 1000) * 1000 + id_offset)

    # --- What the API methods share -----------------------------------------------------------

    def _next_id(self) -> str:
        """A new job id (call with the lock held)."""
        return str(next(self._ids))

    def _store(self, record: Q) -> dict[str, Any]:
        """Keep new PENDING ``record`` (call with the lock held); its resource."""
        # The first state needs no transition: a queued job has no state-change event.
        record.history.append(self._kind.states.pending)
        self._records[record.name] = record
        return record.resource()

    def _queue(self, name: str) -> None:
        """Hand stored job ``name`` to the workers (call without the lock)."""
        self._pending.put(name)
        logger.info(f"{self._kind.noun} created", extra={self._kind.log_key: name})

    def _resource(self, project: str, location: str, job_id: str) -> dict[str, Any]:
        """The resource of job ``job_id``.

        Raises:
            ApiError: NOT_FOUND.
        """
        with self._lock:
            return self._find(project, location, job_id).resource()

    def _page(
        self,
        project: str,
        location: str,
        *,
        page_size: int,
        page_token: str,
        filter_text: str,
    ) -> dict[str, Any]:
        """One page of ``list``, newest first, under the collection's key and ``nextPageToken``.

        Raises:
            ApiError: INVALID_ARGUMENT for a bad page size, token or filter.
        """
        with self._lock:
            return list_page(
                self._records.values(),
                key=self._kind.collection,
                project=project,
                location=location,
                filter_fields=self.filter_fields,
                values=self._filter_values,
                page_size=page_size,
                page_token=page_token,
                filter_text=filter_text,
                parse_filter=self._parse_filter,
            )

    def _parse_filter(self, text: str) -> list[tuple[str, str, str]]:
        """The clauses of a list filter (see :func:`parse_state_filter`).

        Raises:
            ApiError: INVALID_ARGUMENT, an unsupported clause or an unknown state.
        """
        return parse_state_filter(text, self.filter_fields, self._kind.states)

    def _live_setter(self, name: str, apply: Callable[[Q, V], None]) -> Callable[[V], None]:
        """A callback that records what a running job reports, until the job ended."""

        def set_value(value: V) -> None:
            with self._lock:
                record = self._records[name]
                if record.state not in self._kind.states.terminal:
                    apply(record, value)
                    record.update_time = now()

        return set_value

    # --- A job's run --------------------------------------------------------------------------

    def _worker_failed(self, name: str) -> None:
        self._finish(name, error=rpc_status("INTERNAL", "the emulator's worker failed"))

    def _run(self, name: str) -> None:
        states = self._kind.states
        with self._lock:
            record = self._records[name]
            context, run = record.context, record.run
        wait = self._start_delay - (now() - run.create_time).total_seconds()
        if wait > 0:
            context.cancel_requested.wait(wait)
        with self._lock:
            if record.state != states.pending or context.cancelled:
                return  # Cancelled while it waited, or the emulator is shutting down.
            self._transition(record, states.running, now())
        try:
            result = self._execute(record)
        except self.stopped_errors:
            self._finish(name, cancelled=True)
            return
        except JobFailedError as exc:
            self._finish(name, error=rpc_status(exc.code, str(exc)))
            return
        except Exception as exc:
            logger.exception(
                f"the {self._kind.worker_noun} runner raised", extra={self._kind.log_key: name}
            )
            self._finish(
                name,
                error=rpc_status(
                    "INTERNAL", f"the {self._kind.noun} failed: {type(exc).__name__}: {exc}"
                ),
            )
            return
        self._finish(name, result=result)

    def _finish(
        self,
        name: str,
        *,
        result: ResultT | None = None,
        error: Mapping[str, Any] | None = None,
        cancelled: bool = False,
    ) -> None:
        """Record the end of a run (a job that already ended stays as it is)."""
        with self._lock:
            record = self._records[name]
            if record.state in self._kind.states.terminal:
                return
            state = self._end_state(record, result, error, cancelled)
            self._transition(record, state, now())

    def _cancelled(self, record: Q) -> str:
        """Mark ``record`` as stopped on cancel (call with the lock held); the CANCELLED state."""
        record.error = rpc_status("CANCELLED", self._kind.cancelled_message)
        return self._kind.states.cancelled

    def _failed(self, record: Q, error: Mapping[str, Any] | None) -> str:
        """Mark ``record`` as failed with ``error`` (call with the lock held); the FAILED state."""
        record.error = error or rpc_status("UNKNOWN", f"the {self._kind.noun} failed")
        return self._kind.states.failed

    @abstractmethod
    def _execute(self, record: Q) -> ResultT:
        """Run the RUNNING job of ``record`` (without the lock); its result.

        Raises:
            JobFailedError: the job failed (its status code and message).
        """

    @abstractmethod
    def _end_state(
        self, record: Q, result: ResultT | None, error: Mapping[str, Any] | None, cancelled: bool
    ) -> str:
        """What the end of a run leaves on ``record`` (call with the lock held); its final state.

        ``result`` is the run's (None when it raised), ``error`` the status it raised with, and
        ``cancelled`` says it raised one of :attr:`stopped_errors`.
        """

    @abstractmethod
    def _filter_values(self, record: Q) -> dict[str, str]:
        """The fields a list filter may name (besides labels), of ``record``."""
