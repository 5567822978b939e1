"""The emulated ``tuningJobs`` service: create, get, list, cancel, and the jobs' lifecycle.

``create`` answers the ``TuningJob`` itself (no long-running operation) with an id the service
makes (a number, as Google's are); the client cannot choose it, so a caller that must not create
twice labels its request and looks for the label (``list`` with ``filter=labels.KEY="VALUE"``).
A job is ``JOB_STATE_PENDING`` at first and for at least ``start_delay_seconds`` (a real job waits
minutes for its resources), then ``JOB_STATE_RUNNING`` while a :class:`TuningRunner` works on a
bounded pool of worker threads, then ``JOB_STATE_SUCCEEDED`` with ``tunedModel`` or
``JOB_STATE_FAILED`` with ``error`` (a ``google.rpc.Status``); ``cancel`` moves it to
``JOB_STATE_CANCELLING`` and, once its run stopped, ``JOB_STATE_CANCELLED`` (at once when it had
not started). No event is published: the real service has no push notification of tuning-job
state, so callers poll ``get``.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from distillery.core.ports import ObjectStore
from distillery.local.emulator._model import now, rfc3339
from distillery.local.emulator._registry import (
    encode_page_token,
    page_bounds,
    parse_simple_filter,
)
from distillery.local.emulator._runner import JobCancelledError, JobFailedError, RunContext
from distillery.local.emulator._status import ApiError, FieldViolation, rpc_status
from distillery.local.emulator._tuning import (
    ALL_STATES,
    CANCELLED,
    CANCELLING,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATES,
    TuningRequest,
    validate_tuning_job,
)
from distillery.local.emulator._tuning_runner import (
    TunedModelResult,
    TuningDataRunner,
    TuningJobRun,
    TuningRunner,
)

logger = logging.getLogger(__name__)

CANCELLED_MESSAGE = "the tuning job was cancelled"
#: Seconds a new job stays PENDING before a worker may start it.
DEFAULT_START_DELAY_SECONDS = 1.0
_FILTER_FIELDS = ("state", "base_model", "tuned_model_display_name")


@dataclass
class _Record:
    """One job's mutable state (guarded by the service lock)."""

    seq: int
    run: TuningJobRun
    context: RunContext
    state: str
    update_time: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    error: Mapping[str, Any] | None = None
    tuned_model: Mapping[str, Any] | None = None
    data_stats: Mapping[str, Any] | None = None
    history: list[str] = field(default_factory=list)


class TuningService:
    """Vertex AI ``tuningJobs`` (create, get, list, cancel), in memory and thread-safe."""

    def __init__(
        self,
        *,
        object_store: ObjectStore,
        runner: TuningRunner | None = None,
        max_concurrent_jobs: int = 1,
        start_delay_seconds: float = DEFAULT_START_DELAY_SECONDS,
    ) -> None:
        if max_concurrent_jobs < 1:
            raise ValueError("max_concurrent_jobs must be at least 1")
        self._object_store = object_store
        self._runner = runner or TuningDataRunner()
        self._max_concurrent = max_concurrent_jobs
        self._start_delay = start_delay_seconds
        self._lock = threading.Lock()
        self._records: dict[str, _Record] = {}
        self._seq = itertools.count(1)
        # Numeric ids like the service's; the clock keeps them unique across emulator restarts.
        self._ids = itertools.count(int(time.time() * 1000) * 1000 + 700)
        self._pending: queue.Queue[str | None] = queue.Queue()
        self._workers: list[threading.Thread] = []

    # --- Lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the job workers (idempotent)."""
        if self._workers:
            return
        for number in range(self._max_concurrent):
            worker = threading.Thread(
                target=self._work, name=f"emulator-tuning-worker-{number}", daemon=True
            )
            worker.start()
            self._workers.append(worker)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Ask running jobs to cancel and stop the workers."""
        with self._lock:
            for record in self._records.values():
                if record.state not in TERMINAL_STATES:
                    record.context.cancel_requested.set()
        for _ in self._workers:
            self._pending.put(None)
        for worker in self._workers:
            worker.join(timeout)
        self._workers.clear()

    # --- API methods --------------------------------------------------------------------------

    def create(self, project: str, location: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``tuningJobs.create``: validate, store PENDING, queue; the TuningJob.

        Raises:
            ApiError: INVALID_ARGUMENT or UNIMPLEMENTED (see
                :func:`~distillery.local.emulator._tuning.validate_tuning_job`).
        """
        request = validate_tuning_job(location, body)
        created = now()
        with self._lock:
            job_id = str(next(self._ids))
            name = f"projects/{project}/locations/{location}/tuningJobs/{job_id}"
            display_name = request.tuned_model_display_name or _default_display_name(
                request, created
            )
            run = TuningJobRun(
                name=name,
                job_id=job_id,
                project=project,
                location=location,
                request=request,
                display_name=display_name,
                create_time=created,
            )
            record = _Record(
                seq=next(self._seq),
                run=run,
                context=RunContext(self._object_store, on_detail=self._stats_setter(name)),
                state=PENDING,
                update_time=created,
            )
            record.history.append(PENDING)
            self._records[name] = record
            resource = self._resource(record)
        self._pending.put(name)
        logger.info("tuning job created", extra={"tuning_job": name})
        return resource

    def get(self, project: str, location: str, job_id: str) -> dict[str, Any]:
        """``tuningJobs.get``.

        Raises:
            ApiError: NOT_FOUND.
        """
        with self._lock:
            return self._resource(self._find(project, location, job_id))

    def list(
        self,
        project: str,
        location: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        filter_text: str = "",
    ) -> dict[str, Any]:
        """``tuningJobs.list``, newest first: ``tuningJobs`` and ``nextPageToken``.

        Filters: clauses ``FIELD=VALUE`` or ``FIELD!=VALUE`` joined by ``AND``, over ``state``,
        ``base_model``, ``tuned_model_display_name`` and ``labels.KEY``.

        Raises:
            ApiError: INVALID_ARGUMENT for a bad page size, token or filter.
        """
        offset, size = page_bounds(page_size, page_token)
        clauses = _parse_filter(filter_text)
        prefix = f"projects/{project}/locations/{location}/tuningJobs/"
        with self._lock:
            found = [
                r
                for name, r in self._records.items()
                if name.startswith(prefix) and all(_matches(r, c) for c in clauses)
            ]
            found.sort(key=lambda r: r.seq, reverse=True)
            answer: dict[str, Any] = {
                "tuningJobs": [self._resource(r) for r in found[offset : offset + size]]
            }
            if offset + size < len(found):
                answer["nextPageToken"] = encode_page_token(offset + size)
        return answer

    def cancel(self, project: str, location: str, job_id: str) -> None:
        """``tuningJobs.cancel``: CANCELLING, then CANCELLED once the run stopped.

        A job that has not started is CANCELLED at once; cancelling a CANCELLING job is a no-op.

        Raises:
            ApiError: NOT_FOUND; FAILED_PRECONDITION when the job already ended.
        """
        with self._lock:
            record = self._find(project, location, job_id)
            if record.state in TERMINAL_STATES:
                raise ApiError(
                    "FAILED_PRECONDITION",
                    f"Cannot cancel tuning job {record.run.name}: it is already in state "
                    f"{record.state}.",
                )
            if record.state == CANCELLING:
                return
            was_pending = record.state == PENDING
            record.context.cancel_requested.set()
            moment = now()
            self._transition(record, CANCELLING, moment)
            if was_pending:
                record.error = rpc_status("CANCELLED", CANCELLED_MESSAGE)
                self._transition(record, CANCELLED, moment)
        logger.info("tuning job cancel requested", extra={"tuning_job": record.run.name})

    # --- Internals ----------------------------------------------------------------------------

    def _find(self, project: str, location: str, job_id: str) -> _Record:
        name = f"projects/{project}/locations/{location}/tuningJobs/{job_id}"
        record = self._records.get(name)
        if record is None:
            raise ApiError("NOT_FOUND", f"TuningJob {name} is not found.")
        return record

    def _stats_setter(self, name: str) -> Any:
        def set_stats(detail: Mapping[str, Any]) -> None:
            with self._lock:
                record = self._records[name]
                if record.state not in TERMINAL_STATES:
                    record.data_stats = dict(detail)
                    record.update_time = now()

        return set_stats

    def _transition(self, record: _Record, state: str, moment: datetime) -> None:
        """Move ``record`` to ``state`` (call with the lock held)."""
        previous = record.state
        record.state = state
        record.update_time = moment
        if state == RUNNING:
            record.start_time = moment
        if state in TERMINAL_STATES:
            record.end_time = moment
        record.history.append(state)
        logger.info(
            "tuning job state changed",
            extra={"tuning_job": record.run.name, "state": state, "previous_state": previous},
        )

    def _work(self) -> None:
        while True:
            name = self._pending.get()
            if name is None:
                return
            try:
                self._run(name)
            except Exception:  # Never lose a worker: the job is marked, the pool keeps going.
                logger.exception("the tuning worker failed", extra={"tuning_job": name})
                self._finish(name, error=rpc_status("INTERNAL", "the emulator's worker failed"))

    def _run(self, name: str) -> None:
        with self._lock:
            record = self._records[name]
            context, run = record.context, record.run
        # A real job waits for its resources; the wait ends early on cancel.
        wait = self._start_delay - (now() - run.create_time).total_seconds()
        if wait > 0:
            context.cancel_requested.wait(wait)
        with self._lock:
            if record.state != PENDING or context.cancelled:
                return  # Cancelled while it waited, or the emulator is shutting down.
            self._transition(record, RUNNING, now())
        try:
            result = self._runner.run(run, context)
        except JobCancelledError:
            self._finish(name, cancelled=True)
            return
        except JobFailedError as exc:
            self._finish(name, error=rpc_status(exc.code, str(exc)))
            return
        except Exception as exc:
            logger.exception("the tuning runner raised", extra={"tuning_job": name})
            self._finish(
                name,
                error=rpc_status("INTERNAL", f"the tuning job failed: {type(exc).__name__}: {exc}"),
            )
            return
        self._finish(name, result=result)

    def _finish(
        self,
        name: str,
        *,
        result: TunedModelResult | None = None,
        error: Mapping[str, Any] | None = None,
        cancelled: bool = False,
    ) -> None:
        """Record the end of a run: its result, its error, or that it stopped on cancel."""
        with self._lock:
            record = self._records[name]
            if record.state in TERMINAL_STATES:
                return
            if record.context.cancelled and result is None:
                record.error = rpc_status("CANCELLED", CANCELLED_MESSAGE)
                state = CANCELLED
            elif cancelled:
                record.error = rpc_status(
                    "INTERNAL", "the tuning run stopped as cancelled, but no cancel was requested"
                )
                state = FAILED
            elif result is not None:
                record.tuned_model = dict(result.tuned_model)
                state = SUCCEEDED
            else:
                record.error = error or rpc_status("UNKNOWN", "the tuning job failed")
                state = FAILED
            self._transition(record, state, now())

    def _resource(self, record: _Record) -> dict[str, Any]:
        """The REST ``TuningJob``."""
        run = record.run
        resource: dict[str, Any] = {"name": run.name, **run.request.echo()}
        resource["tunedModelDisplayName"] = run.display_name
        resource["state"] = record.state
        resource["createTime"] = rfc3339(run.create_time)
        if record.start_time:
            resource["startTime"] = rfc3339(record.start_time)
        if record.end_time:
            resource["endTime"] = rfc3339(record.end_time)
        resource["updateTime"] = rfc3339(record.update_time)
        if record.error:
            resource["error"] = dict(record.error)
        if run.request.labels:
            resource["labels"] = dict(run.request.labels)
        if record.tuned_model:
            resource["tunedModel"] = dict(record.tuned_model)
        if record.data_stats:
            resource["tuningDataStats"] = dict(record.data_stats)
        return resource


def _default_display_name(request: TuningRequest, moment: datetime) -> str:
    """The display name of a tuned model whose request named none (base model + time)."""
    return f"{request.base_model.rsplit('/', 1)[-1]}-tuned-{moment:%Y%m%d%H%M%S}"


def _parse_filter(text: str) -> list[tuple[str, str, str]]:
    """``labels.k="v" AND state!=X`` → clauses (see :meth:`TuningService.list`).

    Raises:
        ApiError: INVALID_ARGUMENT, an unsupported clause or an unknown state.
    """
    clauses = parse_simple_filter(text, _FILTER_FIELDS)
    for name, _, value in clauses:
        if name == "state" and value not in ALL_STATES:
            raise ApiError(
                "INVALID_ARGUMENT",
                f"Invalid state {value!r} in filter; use one of {', '.join(ALL_STATES)}",
                [FieldViolation("filter", f"unknown state {value!r}")],
            )
    return clauses


def _matches(record: _Record, clause: tuple[str, str, str]) -> bool:
    name, op, value = clause
    request = record.run.request
    actual: str | None
    if name == "state":
        actual = record.state
    elif name == "base_model":
        actual = request.base_model
    elif name == "tuned_model_display_name":
        actual = record.run.display_name
    else:
        actual = request.labels.get(name[len("labels.") :])
    return (actual == value) if op == "=" else (actual != value)
