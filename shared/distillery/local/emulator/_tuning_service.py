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

Every method answers for an API version, ``v1`` or ``v1beta1`` (the route's): a distillation job
(``distillationSpec``, v1beta1 only) is created through v1beta1, and read through v1 its resource
lacks the ``distillationSpec`` the v1 ``TuningJob`` has no field for.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from distillery.core.ports import ObjectStore
from distillery.local.emulator._jobs import JobKind, QueuedJobRecord, QueuedJobService
from distillery.local.emulator._model import now
from distillery.local.emulator._runner import JobCancelledError, RunContext
from distillery.local.emulator._status import rpc_status
from distillery.local.emulator._tuning import (
    PENDING,
    SUCCEEDED,
    TUNING_STATES,
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
_V1_HIDDEN = ("distillationSpec",)


def _for_version(resource: dict[str, Any], api_version: str) -> dict[str, Any]:
    """``resource`` as ``api_version``'s TuningJob shows it (v1 has no distillationSpec)."""
    if api_version == "v1":
        for key in _V1_HIDDEN:
            resource.pop(key, None)
    return resource


CANCELLED_MESSAGE = "the tuning job was cancelled"
#: Seconds a new job stays PENDING before a worker may start it.
DEFAULT_START_DELAY_SECONDS = 1.0
_KIND = JobKind(
    states=TUNING_STATES,
    noun="tuning job",
    resource_type="TuningJob",
    collection="tuningJobs",
    log_key="tuning_job",
    worker_noun="tuning",
    cancelled_message=CANCELLED_MESSAGE,
)


@dataclass(kw_only=True)
class _Record(QueuedJobRecord[TuningJobRun]):
    """One tuning job's mutable state (guarded by the service lock)."""

    tuned_model: Mapping[str, Any] | None = None
    data_stats: Mapping[str, Any] | None = None

    def resource(self) -> dict[str, Any]:
        """The REST ``TuningJob``."""
        run = self.run
        resource: dict[str, Any] = {"name": run.name, **run.request.echo()}
        resource["tunedModelDisplayName"] = run.display_name
        resource["state"] = self.state
        resource.update(self.times(run.create_time))
        if self.error:
            resource["error"] = dict(self.error)
        if run.request.labels:
            resource["labels"] = dict(run.request.labels)
        if self.tuned_model:
            resource["tunedModel"] = dict(self.tuned_model)
        if self.data_stats:
            resource["tuningDataStats"] = dict(self.data_stats)
        return resource


class TuningService(QueuedJobService[_Record, TunedModelResult]):
    """Vertex AI ``tuningJobs`` (create, get, list, cancel), in memory and thread-safe."""

    filter_fields = ("state", "base_model", "tuned_model_display_name")
    stopped_errors = (JobCancelledError,)

    def __init__(
        self,
        *,
        object_store: ObjectStore,
        runner: TuningRunner | None = None,
        max_concurrent_jobs: int = 1,
        start_delay_seconds: float = DEFAULT_START_DELAY_SECONDS,
    ) -> None:
        """A service whose jobs ``runner`` runs (by default the data-only runner).

        Raises:
            ValueError: ``max_concurrent_jobs`` is below 1.
        """
        super().__init__(
            _KIND,
            object_store=object_store,
            max_concurrent_jobs=max_concurrent_jobs,
            start_delay_seconds=start_delay_seconds,
            id_offset=700,
        )
        self._runner = runner or TuningDataRunner()

    # --- API methods --------------------------------------------------------------------------

    def create(
        self, project: str, location: str, body: Mapping[str, Any], api_version: str = "v1"
    ) -> dict[str, Any]:
        """``tuningJobs.create`` of ``api_version``: validate, store PENDING, queue; the
        TuningJob.

        Raises:
            ApiError: INVALID_ARGUMENT or UNIMPLEMENTED (see
                :func:`~distillery.local.emulator._tuning.validate_tuning_job`).
        """
        request = validate_tuning_job(location, body, api_version)
        created = now()
        with self._lock:
            job_id = self._next_id()
            name = _KIND.name(project, location, job_id)
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
                context=RunContext(
                    self._object_store, on_detail=self._live_setter(name, _set_stats)
                ),
                state=PENDING,
                update_time=created,
            )
            resource = self._store(record)
        self._queue(name)
        return _for_version(resource, api_version)

    def get(
        self, project: str, location: str, job_id: str, api_version: str = "v1"
    ) -> dict[str, Any]:
        """``tuningJobs.get``.

        Raises:
            ApiError: NOT_FOUND.
        """
        return _for_version(self._resource(project, location, job_id), api_version)

    def list(
        self,
        project: str,
        location: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        filter_text: str = "",
        api_version: str = "v1",
    ) -> dict[str, Any]:
        """``tuningJobs.list``, newest first: ``tuningJobs`` and ``nextPageToken``.

        Filters: clauses ``FIELD=VALUE`` or ``FIELD!=VALUE`` joined by ``AND``, over ``state``,
        ``base_model``, ``tuned_model_display_name`` and ``labels.KEY``.

        Raises:
            ApiError: INVALID_ARGUMENT for a bad page size, token or filter.
        """
        page = self._page(
            project,
            location,
            page_size=page_size,
            page_token=page_token,
            filter_text=filter_text,
        )
        for resource in page.get("tuningJobs", []):
            _for_version(resource, api_version)
        return page

    # --- Internals ----------------------------------------------------------------------------

    def _execute(self, record: _Record) -> TunedModelResult:
        return self._runner.run(record.run, record.context)

    def _end_state(
        self,
        record: _Record,
        result: TunedModelResult | None,
        error: Mapping[str, Any] | None,
        cancelled: bool,
    ) -> str:
        if record.context.cancelled and result is None:
            return self._cancelled(record)
        if cancelled:
            return self._failed(
                record,
                rpc_status(
                    "INTERNAL", "the tuning run stopped as cancelled, but no cancel was requested"
                ),
            )
        if result is not None:
            record.tuned_model = dict(result.tuned_model)
            return SUCCEEDED
        return self._failed(record, error)

    def _filter_values(self, record: _Record) -> dict[str, str]:
        return {
            "state": record.state,
            "base_model": record.run.request.base_model,
            "tuned_model_display_name": record.run.display_name,
        }


def _set_stats(record: _Record, detail: Mapping[str, Any]) -> None:
    """Keep the ``tuningDataStats`` a running job reported."""
    record.data_stats = dict(detail)


def _default_display_name(request: TuningRequest, moment: datetime) -> str:
    """The display name of a tuned model whose request named none (base model + time)."""
    return f"{request.base_model.rsplit('/', 1)[-1]}-tuned-{moment:%Y%m%d%H%M%S}"
