"""The emulated pipeline service: jobs in memory, a bounded pool of workers, ordered events.

No HTTP here (see :mod:`distillery.local.emulator._http`): :class:`PipelineService` takes parsed
requests, answers REST resource dictionaries, and raises :class:`ApiError` for what the real
service refuses. All state sits behind one lock; every transition is queued for publishing while
the lock is held, so events leave in transition order.
"""

from __future__ import annotations

import functools
import logging
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from distillery.core.ports import ObjectStore, Publisher
from distillery.core.settings import Settings
from distillery.local.emulator._events import EventDispatcher, StateChange
from distillery.local.emulator._jobs import JobKind, JobPool, JobRecord
from distillery.local.emulator._model import (
    ALL_STATES,
    CANCELLED,
    FAILED,
    PENDING,
    PIPELINE_STATES,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATES,
    EmulatedJob,
    now,
)
from distillery.local.emulator._registry import encode_page_token, page_bounds
from distillery.local.emulator._runner import (
    DatasetRunner,
    JobCancelledError,
    JobRunner,
    RunContext,
    RunResult,
)
from distillery.local.emulator._status import ApiError, FieldViolation, rpc_status
from distillery.local.emulator._validation import TemplateCatalog, check_job_id, validate_create

logger = logging.getLogger(__name__)

CANCELLED_MESSAGE = "the pipeline job was cancelled"
_KIND = JobKind(
    states=PIPELINE_STATES,
    noun="pipeline job",
    resource_type="PipelineJob",
    collection="pipelineJobs",
    log_key="pipeline_job",
    worker_noun="job",
    cancelled_message=CANCELLED_MESSAGE,
)
_ORDER_FIELDS = {
    "create_time": "create_time",
    "update_time": "update_time",
    "start_time": "start_time",
    "end_time": "end_time",
}
_CLAUSE = re.compile(
    r"\s*(?P<field>[A-Za-z_][\w.-]*)\s*(?P<op>!=|=)\s*(?P<value>\"[^\"]*\"|[^\s\"]+)\s*"
)


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulator behaves; build it with :meth:`from_settings`."""

    #: The topic (short name) every state change is published to, as a LogEntry.
    events_topic: str
    catalog: TemplateCatalog
    #: How many jobs run at a time; the others wait PENDING.
    max_concurrent_jobs: int = 1
    #: Seconds ``create`` waits after storing the job before it answers (simulated latency).
    create_delay_seconds: float = 0.0

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        max_concurrent_jobs: int = 1,
        extra_template_uris: tuple[str, ...] = (),
        create_delay_seconds: float = 0.0,
    ) -> EmulatorConfig:
        """The configuration of ``settings``: the events topic, the template, default models.

        Raises:
            ValueError: ``max_concurrent_jobs`` is below 1.
        """
        if max_concurrent_jobs < 1:
            raise ValueError("max_concurrent_jobs must be at least 1")
        templates = tuple(dict.fromkeys((settings.template_uri, *extra_template_uris)))
        return cls(
            events_topic=settings.job_events_topic,
            catalog=TemplateCatalog(
                template_uris=templates,
                teacher_model=settings.teacher_model,
                student_model=settings.student_model,
            ),
            max_concurrent_jobs=max_concurrent_jobs,
            create_delay_seconds=create_delay_seconds,
        )


@dataclass(kw_only=True)
class _Record(JobRecord):
    """One pipeline job's mutable state (guarded by the service lock)."""

    job: EmulatedJob
    echoed: dict[str, Any]
    job_detail: Mapping[str, Any] | None = None

    @property
    def name(self) -> str:
        """The job's resource name."""
        return self.job.name


class PipelineService(JobPool[_Record]):
    """Vertex AI ``pipelineJobs`` (create, get, list, cancel), in memory and thread-safe."""

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        object_store: ObjectStore,
        publisher: Publisher,
        runner: JobRunner | None = None,
    ) -> None:
        super().__init__(_KIND, max_concurrent_jobs=config.max_concurrent_jobs)
        self.config = config
        self._object_store = object_store
        self._runner = runner or DatasetRunner()
        self._events = EventDispatcher(publisher, config.events_topic)

    # --- Lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the event publisher and the job workers (idempotent)."""
        self._events.start()
        super().start()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Ask running jobs to cancel, stop the workers, publish the last events."""
        super().shutdown(timeout)
        self._events.stop(timeout)

    def flush_events(self, timeout: float = 10.0) -> bool:
        """Wait until every state change so far is published; ``False`` on timeout."""
        return self._events.flush(timeout)

    # --- API methods --------------------------------------------------------------------------

    def create(
        self, project: str, location: str, job_id: str | None, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``pipelineJobs.create``: validate, store PENDING, queue for a worker.

        Raises:
            ApiError: INVALID_ARGUMENT (bad request, see :func:`validate_create`),
                ALREADY_EXISTS (``job_id`` is taken in this project and location).
        """
        if job_id:
            check_job_id(job_id)
        accepted = validate_create(location, body, self.config.catalog)
        created = now()
        with self._lock:
            if not job_id:
                job_id = self._generate_id(project, location, created)
            name = _KIND.name(project, location, job_id)
            if name in self._records:
                raise ApiError("ALREADY_EXISTS", f"PipelineJob {name} already exists.")
            job = EmulatedJob(
                name=name,
                job_id=job_id,
                project=project,
                location=location,
                display_name=accepted.display_name,
                template_uri=accepted.template_uri,
                output_directory=accepted.output_directory,
                parameters=accepted.parameters,
                create_time=created,
                labels=accepted.labels,
                service_account=accepted.service_account,
                kms_key_name=accepted.kms_key_name,
            )
            record = _Record(
                seq=next(self._seq),
                job=job,
                echoed=accepted.echoed,
                state=PENDING,
                update_time=created,
                context=RunContext(
                    self._object_store, on_detail=functools.partial(self._set_detail, name)
                ),
            )
            self._records[name] = record
            self._transition(record, PENDING, created)
            resource = self._resource(record, full=True)
        self._pending.put(name)
        logger.info("pipeline job created", extra={"pipeline_job": name})
        if self.config.create_delay_seconds:
            # The job exists (get and list show it) while the caller still waits for the answer.
            time.sleep(self.config.create_delay_seconds)
        return resource

    def get(self, project: str, location: str, job_id: str) -> dict[str, Any]:
        """``pipelineJobs.get``.

        Raises:
            ApiError: NOT_FOUND.
        """
        with self._lock:
            return self._resource(self._find(project, location, job_id), full=True)

    def list(
        self,
        project: str,
        location: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        filter_text: str = "",
        order_by: str = "",
    ) -> dict[str, Any]:
        """``pipelineJobs.list``: ``pipelineJobs`` (without ``jobDetail``) and ``nextPageToken``.

        Filters: clauses ``FIELD=VALUE`` or ``FIELD!=VALUE`` joined by ``AND``, over ``state``,
        ``display_name``, ``template_uri``, ``pipeline_job_id`` and ``labels.KEY``. Order:
        ``create_time`` (default, newest first), ``update_time``, ``start_time`` or ``end_time``,
        optionally followed by ``desc``. Page tokens are offsets into that order.

        Raises:
            ApiError: INVALID_ARGUMENT for a bad page size, token, filter or order.
        """
        offset, size = page_bounds(page_size, page_token)
        clauses = _parse_filter(filter_text)
        sort_field, descending = _parse_order(order_by)
        prefix = f"projects/{project}/locations/{location}/pipelineJobs/"
        with self._lock:
            records = [
                r
                for name, r in self._records.items()
                if name.startswith(prefix) and all(_matches(r, c) for c in clauses)
            ]
            records.sort(key=lambda r: (_sort_time(r, sort_field), r.seq), reverse=descending)
            page = records[offset : offset + size]
            answer: dict[str, Any] = {"pipelineJobs": [self._resource(r, full=False) for r in page]}
            if offset + size < len(records):
                answer["nextPageToken"] = encode_page_token(offset + size)
        return answer

    # --- Internals ----------------------------------------------------------------------------

    def _set_detail(self, name: str, job_detail: Mapping[str, Any]) -> None:
        """A runner's live ``jobDetail`` for job ``name`` (ignored once the job ended)."""
        with self._lock:
            record = self._records[name]
            if record.state not in TERMINAL_STATES:
                record.job_detail = job_detail
                record.update_time = now()

    def _generate_id(self, project: str, location: str, moment: datetime) -> str:
        """A fresh id like the service's: the pipeline name and the creation time."""
        while True:
            job_id = f"distillation-{moment:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
            name = _KIND.name(project, location, job_id)
            if name not in self._records:
                return job_id

    def _on_transition(self, record: _Record, previous: str | None, moment: datetime) -> None:
        """Queue the transition's event (the lock is held, so events leave in order)."""
        job, state = record.job, record.state
        self._events.submit(
            StateChange(
                name=job.name,
                job_id=job.job_id,
                project=job.project,
                location=job.location,
                display_name=job.display_name,
                state=state,
                previous_state=previous,
                at=moment,
                error=record.error if state in (FAILED, CANCELLED) else None,
            )
        )

    def _worker_failed(self, name: str) -> None:
        self._finish(name, RunResult.failed("INTERNAL", "the emulator's worker failed"))

    def _run(self, name: str) -> None:
        with self._lock:
            record = self._records[name]
            if record.state != PENDING or record.context.cancelled:
                return  # Cancelled while it waited, or the emulator is shutting down.
            self._transition(record, RUNNING, now())
            job, context = record.job, record.context
        try:
            result = self._runner.run(job, context)
        except JobCancelledError:
            result = None
        except Exception as exc:
            logger.exception("the job runner raised", extra={"pipeline_job": name})
            result = RunResult.failed(
                "INTERNAL", f"the pipeline job failed: {type(exc).__name__}: {exc}"
            )
        self._finish(name, result)

    def _finish(self, name: str, result: RunResult | None) -> None:
        """Record the end of a run; ``None`` means the runner stopped on cancellation."""
        with self._lock:
            record = self._records[name]
            if record.state in TERMINAL_STATES:
                return
            succeeded = result is not None and result.state == SUCCEEDED
            if record.context.cancelled and not succeeded:
                record.error = rpc_status("CANCELLED", CANCELLED_MESSAGE)
                state = CANCELLED
            elif result is None:
                record.error = rpc_status(
                    "INTERNAL", "the job runner stopped as cancelled, but no cancel was requested"
                )
                state = FAILED
            elif result.state in (SUCCEEDED, FAILED):
                record.error = result.error if result.state == FAILED else None
                if result.state == FAILED and not record.error:
                    record.error = rpc_status("UNKNOWN", "the pipeline job failed")
                if result.job_detail is not None:
                    record.job_detail = result.job_detail
                state = result.state
            else:
                record.error = rpc_status(
                    "INTERNAL", f"the job runner returned the invalid state {result.state!r}"
                )
                state = FAILED
            self._transition(record, state, now())

    def _resource(self, record: _Record, *, full: bool) -> dict[str, Any]:
        """The REST ``PipelineJob`` (``full=False``: the list view, without ``jobDetail``)."""
        job = record.job
        resource: dict[str, Any] = {"name": job.name, "displayName": job.display_name}
        resource.update(record.times(job.create_time))
        resource["pipelineSpec"] = {"pipelineInfo": {"name": _template_name(job.template_uri)}}
        resource["state"] = record.state
        if full and record.job_detail:
            resource["jobDetail"] = dict(record.job_detail)
        if record.error:
            resource["error"] = dict(record.error)
        resource["labels"] = dict(job.labels)
        for key in (
            "runtimeConfig",
            "encryptionSpec",
            "serviceAccount",
            "network",
            "reservedIpRanges",
            "pscInterfaceConfig",
            "preflightValidations",
        ):
            if key in record.echoed:
                resource[key] = record.echoed[key]
        resource["templateUri"] = job.template_uri
        resource["templateMetadata"] = {"version": job.template_uri.rstrip("/").rsplit("/", 1)[-1]}
        return resource


def _template_name(template_uri: str) -> str:
    """The package name of an Artifact Registry template URI (``.../PACKAGE/VERSION``)."""
    parts = template_uri.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else template_uri


def _parse_filter(text: str) -> list[tuple[str, str, str]]:
    """``state="X" AND labels.k!=v`` → ``[(field, op, value), ...]``.

    Raises:
        ApiError: INVALID_ARGUMENT, an unsupported field, operator or state.
    """
    if not text.strip():
        return []
    clauses: list[tuple[str, str, str]] = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _CLAUSE.fullmatch(part)
        name = match["field"] if match else ""
        supported = name in ("state", "display_name", "template_uri", "pipeline_job_id") or (
            name.startswith("labels.") and len(name) > len("labels.")
        )
        if match is None or not supported:
            raise ApiError(
                "INVALID_ARGUMENT",
                f"Unsupported filter {part.strip()!r}: the emulator filters on state, "
                "display_name, template_uri, pipeline_job_id and labels.KEY with = or != joined "
                "by AND",
                [FieldViolation("filter", f"unsupported clause {part.strip()!r}")],
            )
        value = match["value"].strip('"')
        if name == "state" and value not in ALL_STATES:
            raise ApiError(
                "INVALID_ARGUMENT",
                f"Invalid state {value!r} in filter; use one of {', '.join(ALL_STATES)}",
                [FieldViolation("filter", f"unknown state {value!r}")],
            )
        clauses.append((name, match["op"], value))
    return clauses


def _matches(record: _Record, clause: tuple[str, str, str]) -> bool:
    name, op, value = clause
    job = record.job
    actual: str | None
    if name == "state":
        actual = record.state
    elif name == "display_name":
        actual = job.display_name
    elif name == "template_uri":
        actual = job.template_uri
    elif name == "pipeline_job_id":
        actual = job.job_id
    else:
        actual = job.labels.get(name[len("labels.") :])
    return (actual == value) if op == "=" else (actual != value)


def _parse_order(text: str) -> tuple[str, bool]:
    """``"create_time desc"`` → ``("create_time", True)``; the default is newest first.

    Raises:
        ApiError: INVALID_ARGUMENT, an unsupported order.
    """
    if not text.strip():
        return "create_time", True
    words = text.split()
    if (
        len(words) > 2
        or words[0] not in _ORDER_FIELDS
        or (len(words) == 2 and words[1].lower() not in ("asc", "desc"))
    ):
        raise ApiError(
            "INVALID_ARGUMENT",
            f"Unsupported orderBy {text!r}: use one of {', '.join(_ORDER_FIELDS)}, "
            "optionally followed by desc",
            [FieldViolation("orderBy", f"unsupported order {text!r}")],
        )
    return _ORDER_FIELDS[words[0]], len(words) == 2 and words[1].lower() == "desc"


def _sort_time(record: _Record, sort_field: str) -> datetime:
    if sort_field == "create_time":
        return record.job.create_time
    if sort_field == "update_time":
        return record.update_time
    moment = record.start_time if sort_field == "start_time" else record.end_time
    return moment or datetime.min.replace(tzinfo=record.job.create_time.tzinfo)
