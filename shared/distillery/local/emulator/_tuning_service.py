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

import itertools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from distillery.core.ports import ObjectStore
from distillery.local.emulator._jobs import JobKind, JobPool, JobRecord
from distillery.local.emulator._model import now
from distillery.local.emulator._registry import list_page, parse_simple_filter
from distillery.local.emulator._runner import JobCancelledError, JobFailedError, RunContext
from distillery.local.emulator._status import ApiError, FieldViolation, rpc_status
from distillery.local.emulator._tuning import (
    ALL_STATES,
    CANCELLED,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATES,
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
_FILTER_FIELDS = ("state", "base_model", "tuned_model_display_name")
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
class _Record(JobRecord):
    """One tuning job's mutable state (guarded by the service lock)."""

    run: TuningJobRun
    tuned_model: Mapping[str, Any] | None = None
    data_stats: Mapping[str, Any] | None = None

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


class TuningService(JobPool[_Record]):
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
        super().__init__(_KIND, max_concurrent_jobs=max_concurrent_jobs)
        self._object_store = object_store
        self._runner = runner or TuningDataRunner()
        self._start_delay = start_delay_seconds
        # Numeric ids like the service's; the clock keeps them unique across emulator restarts.
        self._ids = itertools.count(int(time.time() * 1000) * 1000 + 700)

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
            job_id = str(next(self._ids))
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
                context=RunContext(self._object_store, on_detail=self._stats_setter(name)),
                state=PENDING,
                update_time=created,
            )
            # The first state needs no transition: a tuning job has no state-change event.
            record.history.append(PENDING)
            self._records[name] = record
            resource = record.resource()
        self._pending.put(name)
        logger.info("tuning job created", extra={"tuning_job": name})
        return _for_version(resource, api_version)

    def get(
        self, project: str, location: str, job_id: str, api_version: str = "v1"
    ) -> dict[str, Any]:
        """``tuningJobs.get``.

        Raises:
            ApiError: NOT_FOUND.
        """
        with self._lock:
            return _for_version(self._find(project, location, job_id).resource(), api_version)

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
        with self._lock:
            page = list_page(
                self._records.values(),
                key="tuningJobs",
                project=project,
                location=location,
                filter_fields=_FILTER_FIELDS,
                values=_filter_values,
                page_size=page_size,
                page_token=page_token,
                filter_text=filter_text,
                parse_filter=_parse_filter,
            )
        for resource in page.get("tuningJobs", []):
            _for_version(resource, api_version)
        return page

    # --- Internals ----------------------------------------------------------------------------

    def _stats_setter(self, name: str) -> Any:
        def set_stats(detail: Mapping[str, Any]) -> None:
            with self._lock:
                record = self._records[name]
                if record.state not in TERMINAL_STATES:
                    record.data_stats = dict(detail)
                    record.update_time = now()

        return set_stats

    def _worker_failed(self, name: str) -> None:
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


def _filter_values(record: _Record) -> dict[str, str]:
    """The fields a list filter may name (besides labels), of ``record``."""
    return {
        "state": record.state,
        "base_model": record.run.request.base_model,
        "tuned_model_display_name": record.run.display_name,
    }
