"""The emulated ``batchPredictionJobs`` service: create, get, list, cancel, and the jobs' lifecycle.

``create`` answers the ``BatchPredictionJob`` itself (no long-running operation) with an id the
service makes (a number, as Google's are); the client cannot choose it, so a caller that must not
create twice labels its request and looks for the label (``list`` with
``filter=labels.KEY="VALUE"``). A job is ``JOB_STATE_PENDING`` at first and for at least
``start_delay_seconds`` (a real job queues for capacity), then ``JOB_STATE_RUNNING`` while the
:class:`~distillery.local.emulator._batch_runner.BatchRunner` answers its lines on a worker
thread (``completionStats`` grow as it goes), then ``JOB_STATE_SUCCEEDED`` with
``outputInfo.gcsOutputDirectory`` and the final ``completionStats`` — a job whose every line
failed still SUCCEEDS, its failures are per line — or ``JOB_STATE_FAILED`` with ``error`` (a
``google.rpc.Status``: no teacher, no input). ``cancel`` moves it to ``JOB_STATE_CANCELLING`` and,
once its run stopped, ``JOB_STATE_CANCELLED`` with the lines it answered written out (at once,
with nothing written, when it had not started).
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from distillery.core.ports import ObjectStore
from distillery.local.emulator._batch import (
    ALL_STATES,
    BATCH_STATES,
    CANCELLED,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATES,
    validate_batch_job,
)
from distillery.local.emulator._batch_runner import (
    BatchJobRun,
    BatchProgress,
    BatchResult,
    BatchRunner,
)
from distillery.local.emulator._jobs import JobKind, JobPool, JobRecord
from distillery.local.emulator._model import now
from distillery.local.emulator._registry import list_page, parse_simple_filter
from distillery.local.emulator._runner import JobFailedError, RunContext
from distillery.local.emulator._status import ApiError, FieldViolation, rpc_status

logger = logging.getLogger(__name__)

CANCELLED_MESSAGE = "the batch prediction job was cancelled"
#: Seconds a new job stays PENDING before a worker may start it.
DEFAULT_START_DELAY_SECONDS = 1.0
_FILTER_FIELDS = ("state", "display_name", "model")
_KIND = JobKind(
    states=BATCH_STATES,
    noun="batch prediction job",
    resource_type="BatchPredictionJob",
    collection="batchPredictionJobs",
    log_key="batch_prediction_job",
    worker_noun="batch",
    cancelled_message=CANCELLED_MESSAGE,
)


@dataclass(kw_only=True)
class _Record(JobRecord):
    """One batch prediction job's mutable state (guarded by the service lock)."""

    run: BatchJobRun
    progress: BatchProgress | None = None
    output_directory: str | None = None

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
        """The REST ``BatchPredictionJob``."""
        resource: dict[str, Any] = {"name": self.run.name, **self.run.request.echo()}
        resource["state"] = self.state
        resource.update(self.times(self.run.create_time))
        if self.error:
            resource["error"] = dict(self.error)
        if self.output_directory:
            resource["outputInfo"] = {"gcsOutputDirectory": self.output_directory}
        if self.progress is not None:
            resource["completionStats"] = self.progress.stats()
        return resource


class BatchService(JobPool[_Record]):
    """Vertex AI ``batchPredictionJobs`` (create, get, list, cancel), in memory and thread-safe."""

    def __init__(
        self,
        *,
        object_store: ObjectStore,
        runner: BatchRunner,
        registered: Callable[[str], bool] = lambda _: False,
        max_concurrent_jobs: int = 1,
        start_delay_seconds: float = DEFAULT_START_DELAY_SECONDS,
    ) -> None:
        """``registered`` says whether a Model Registry name exists (a tuned model as ``model``).

        Raises:
            ValueError: ``max_concurrent_jobs`` is below 1.
        """
        if max_concurrent_jobs < 1:
            raise ValueError("max_concurrent_jobs must be at least 1")
        super().__init__(_KIND, max_concurrent_jobs=max_concurrent_jobs)
        self._object_store = object_store
        self._runner = runner
        self._registered = registered
        self._start_delay = start_delay_seconds
        # Numeric ids like the service's; the clock keeps them unique across emulator restarts.
        self._ids = itertools.count(int(time.time() * 1000) * 1000 + 500)

    # --- API methods --------------------------------------------------------------------------

    def create(self, project: str, location: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``batchPredictionJobs.create``: validate, store PENDING, queue; the job.

        Raises:
            ApiError: INVALID_ARGUMENT, UNIMPLEMENTED or NOT_FOUND (see
                :func:`~distillery.local.emulator._batch.validate_batch_job`).
        """
        request = validate_batch_job(location, body, self._registered)
        created = now()
        with self._lock:
            job_id = str(next(self._ids))
            name = _KIND.name(project, location, job_id)
            run = BatchJobRun(
                name=name,
                job_id=job_id,
                project=project,
                location=location,
                request=request,
                create_time=created,
            )
            record = _Record(
                seq=next(self._seq),
                run=run,
                context=RunContext(self._object_store),
                state=PENDING,
                update_time=created,
            )
            # The first state needs no transition: a batch job has no state-change event.
            record.history.append(PENDING)
            self._records[name] = record
            resource = record.resource()
        self._pending.put(name)
        logger.info("batch prediction job created", extra={"batch_prediction_job": name})
        return resource

    def get(self, project: str, location: str, job_id: str) -> dict[str, Any]:
        """``batchPredictionJobs.get``.

        Raises:
            ApiError: NOT_FOUND.
        """
        with self._lock:
            return self._find(project, location, job_id).resource()

    def list(
        self,
        project: str,
        location: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        filter_text: str = "",
    ) -> dict[str, Any]:
        """``batchPredictionJobs.list``, newest first: ``batchPredictionJobs`` and
        ``nextPageToken``.

        Filters: clauses ``FIELD=VALUE`` or ``FIELD!=VALUE`` joined by ``AND``, over ``state``,
        ``display_name``, ``model`` and ``labels.KEY``.

        Raises:
            ApiError: INVALID_ARGUMENT for a bad page size, token or filter.
        """
        with self._lock:
            return list_page(
                self._records.values(),
                key="batchPredictionJobs",
                project=project,
                location=location,
                filter_fields=_FILTER_FIELDS,
                values=_filter_values,
                page_size=page_size,
                page_token=page_token,
                filter_text=filter_text,
                parse_filter=_parse_filter,
            )

    # --- Internals ----------------------------------------------------------------------------

    def _progress_setter(self, name: str) -> Callable[[BatchProgress], None]:
        def set_progress(progress: BatchProgress) -> None:
            with self._lock:
                record = self._records[name]
                if record.state not in TERMINAL_STATES:
                    record.progress = progress
                    record.update_time = now()

        return set_progress

    def _worker_failed(self, name: str) -> None:
        self._finish(name, error=rpc_status("INTERNAL", "the emulator's worker failed"))

    def _run(self, name: str) -> None:
        with self._lock:
            record = self._records[name]
            context, run = record.context, record.run
        # A real job queues for capacity; the wait ends early on cancel.
        wait = self._start_delay - (now() - run.create_time).total_seconds()
        if wait > 0:
            context.cancel_requested.wait(wait)
        with self._lock:
            if record.state != PENDING or context.cancelled:
                return  # Cancelled while it waited, or the emulator is shutting down.
            self._transition(record, RUNNING, now())
        try:
            result = self._runner.run(run, context, self._progress_setter(name))
        except JobFailedError as exc:
            self._finish(name, error=rpc_status(exc.code, str(exc)))
            return
        except Exception as exc:
            logger.exception("the batch runner raised", extra={"batch_prediction_job": name})
            self._finish(
                name,
                error=rpc_status(
                    "INTERNAL", f"the batch prediction job failed: {type(exc).__name__}: {exc}"
                ),
            )
            return
        self._finish(name, result=result)

    def _finish(
        self,
        name: str,
        *,
        result: BatchResult | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> None:
        """Record the end of a run: its output, or its error; CANCELLED once cancel was asked."""
        with self._lock:
            record = self._records[name]
            if record.state in TERMINAL_STATES:
                return
            if result is not None:
                record.output_directory = result.output_directory
                record.progress = result.progress
            if record.context.cancelled and (result is None or result.cancelled):
                record.error = rpc_status("CANCELLED", CANCELLED_MESSAGE)
                state = CANCELLED
            elif result is not None:
                state = SUCCEEDED
            else:
                record.error = error or rpc_status("UNKNOWN", "the batch prediction job failed")
                state = FAILED
            self._transition(record, state, now())


def _parse_filter(text: str) -> list[tuple[str, str, str]]:
    """``labels.k="v" AND state!=X`` → clauses (see :meth:`BatchService.list`).

    Raises:
        ApiError: INVALID_ARGUMENT, an unsupported clause or an unknown state.
    """
    clauses = parse_simple_filter(text, _FILTER_FIELDS)
    for field_name, _, value in clauses:
        if field_name == "state" and value not in ALL_STATES:
            raise ApiError(
                "INVALID_ARGUMENT",
                f"Invalid state {value!r} in filter; use one of {', '.join(ALL_STATES)}",
                [FieldViolation("filter", f"unknown state {value!r}")],
            )
    return clauses


def _filter_values(record: _Record) -> dict[str, str]:
    """The fields a list filter may name (besides labels), of ``record``."""
    return {
        "state": record.state,
        "display_name": record.run.request.display_name,
        "model": record.run.request.model,
    }


_BATCH_JOBS = re.compile(
    r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/batchPredictionJobs"
)
_BATCH_JOB = re.compile(
    r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/batchPredictionJobs/(?P<id>[^/:]+)(?P<verb>:cancel)?"
)


def route(
    service: BatchService,
    method: str,
    path: str,
    list_query: Callable[[], Mapping[str, Any]],
    json_body: Callable[[bool], dict[str, Any]],
) -> tuple[int, dict[str, Any]] | None:
    """The answer of the REST routes of ``batchPredictionJobs``; None when none matches.

    - ``POST /v1/projects/{p}/locations/{l}/batchPredictionJobs`` — create (answers the job);
    - ``GET /v1/projects/{p}/locations/{l}/batchPredictionJobs[?pageSize&pageToken&filter]``;
    - ``GET /v1/projects/{p}/locations/{l}/batchPredictionJobs/{id}`` — get;
    - ``POST /v1/projects/{p}/locations/{l}/batchPredictionJobs/{id}:cancel`` — answers ``{}``.

    ``list_query`` gives the paging and filter arguments of the query string; ``json_body(
    allow_empty)`` the request body.

    Raises:
        ApiError: what the service methods raise.
    """
    if match := _BATCH_JOBS.fullmatch(path):
        project, location = unquote(match["project"]), unquote(match["location"])
        if method == "POST":
            return 200, service.create(project, location, json_body(False))
        if method == "GET":
            return 200, service.list(project, location, **list_query())
        return None
    if match := _BATCH_JOB.fullmatch(path):
        project, location = unquote(match["project"]), unquote(match["location"])
        job_id = unquote(match["id"])
        if match["verb"] and method == "POST":
            json_body(True)
            service.cancel(project, location, job_id)
            return 200, {}
        if not match["verb"] and method == "GET":
            return 200, service.get(project, location, job_id)
    return None
