"""What the emulated job services share: the record of a job's times and states, and the pool.

:class:`JobPool` holds the records of one kind of job (pipeline or tuning) behind one lock,
queues new jobs for a bounded pool of worker threads, and answers ``cancel`` the one way both
services do. A subclass says what a run is (:meth:`JobPool._run`), what a failed worker leaves
behind (:meth:`JobPool._worker_failed`) and what else a transition does
(:meth:`JobPool._on_transition`).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from distillery.local.emulator._model import JobStates, now, rfc3339
from distillery.local.emulator._runner import RunContext
from distillery.local.emulator._status import ApiError, rpc_status

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
