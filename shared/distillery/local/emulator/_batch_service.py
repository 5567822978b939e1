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

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from distillery.core.ports import ObjectStore
from distillery.local.emulator._batch import (
    BATCH_STATES,
    PENDING,
    SUCCEEDED,
    validate_batch_job,
)
from distillery.local.emulator._batch_runner import (
    BatchJobRun,
    BatchProgress,
    BatchResult,
    BatchRunner,
)
from distillery.local.emulator._jobs import JobKind, QueuedJobRecord, QueuedJobService
from distillery.local.emulator._model import now
from distillery.local.emulator._runner import RunContext

logger = logging.getLogger(__name__)

CANCELLED_MESSAGE = "the batch prediction job was cancelled"
#: Seconds a new job stays PENDING before a worker may start it.
DEFAULT_START_DELAY_SECONDS = 1.0
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
class _Record(QueuedJobRecord[BatchJobRun]):
    """One batch prediction job's mutable state (guarded by the service lock)."""

    progress: BatchProgress | None = None
    output_directory: str | None = None

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


class BatchService(QueuedJobService[_Record, BatchResult]):
    """Vertex AI ``batchPredictionJobs`` (create, get, list, cancel), in memory and thread-safe."""

    filter_fields = ("state", "display_name", "model")

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
        super().__init__(
            _KIND,
            object_store=object_store,
            max_concurrent_jobs=max_concurrent_jobs,
            start_delay_seconds=start_delay_seconds,
            id_offset=500,
        )
        self._runner = runner
        self._registered = registered

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
            job_id = self._next_id()
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
            resource = self._store(record)
        self._queue(name)
        return resource

    def get(self, project: str, location: str, job_id: str) -> dict[str, Any]:
        """``batchPredictionJobs.get``.

        Raises:
            ApiError: NOT_FOUND.
        """
        return self._resource(project, location, job_id)

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
        return self._page(
            project,
            location,
            page_size=page_size,
            page_token=page_token,
            filter_text=filter_text,
        )

    # --- Internals ----------------------------------------------------------------------------

    def _execute(self, record: _Record) -> BatchResult:
        # completionStats grow while the job runs.
        return self._runner.run(
            record.run, record.context, self._live_setter(record.name, _set_progress)
        )

    def _end_state(
        self,
        record: _Record,
        result: BatchResult | None,
        error: Mapping[str, Any] | None,
        cancelled: bool,
    ) -> str:
        # A cancelled job keeps the lines it answered before it stopped.
        if result is not None:
            record.output_directory = result.output_directory
            record.progress = result.progress
        if record.context.cancelled and (result is None or result.cancelled):
            return self._cancelled(record)
        if result is not None:
            return SUCCEEDED
        return self._failed(record, error)

    def _filter_values(self, record: _Record) -> dict[str, str]:
        return {
            "state": record.state,
            "display_name": record.run.request.display_name,
            "model": record.run.request.model,
        }


def _set_progress(record: _Record, progress: BatchProgress) -> None:
    """Keep the ``completionStats`` a running job reported."""
    record.progress = progress


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
