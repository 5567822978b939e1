"""Pipeline states, timestamps and the job snapshot a runner sees."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class JobStates:
    """The names of one job-state enum: ``PREFIX_PENDING``, ``PREFIX_RUNNING`` and so on.

    The pipeline (``PipelineState``) and tuning (``JobState``) enums name the states a job moves
    through alike and differ in their prefix and in the members no emulated job enters.
    """

    #: ``PIPELINE_STATE`` or ``JOB_STATE``.
    prefix: str
    #: Members (without the prefix) that come before ``PENDING`` in the enum, after UNSPECIFIED.
    before: tuple[str, ...] = ()
    #: Members (without the prefix) that come after ``CANCELLED`` in the enum.
    after: tuple[str, ...] = ()

    def named(self, member: str) -> str:
        """The full name of ``member``, e.g. ``"PENDING"`` → ``"JOB_STATE_PENDING"``."""
        return f"{self.prefix}_{member}"

    @property
    def pending(self) -> str:
        """Waiting for a worker (or for its resources)."""
        return self.named("PENDING")

    @property
    def running(self) -> str:
        """Being run."""
        return self.named("RUNNING")

    @property
    def succeeded(self) -> str:
        """Ended with a result."""
        return self.named("SUCCEEDED")

    @property
    def failed(self) -> str:
        """Ended with an error."""
        return self.named("FAILED")

    @property
    def cancelling(self) -> str:
        """Cancel requested, the run not stopped yet."""
        return self.named("CANCELLING")

    @property
    def cancelled(self) -> str:
        """Ended on cancel."""
        return self.named("CANCELLED")

    @property
    def terminal(self) -> frozenset[str]:
        """The states a job never leaves."""
        return frozenset({self.succeeded, self.failed, self.cancelled})

    @property
    def every(self) -> tuple[str, ...]:
        """Every member of the enum, in its order (for list filters)."""
        members = ("UNSPECIFIED", *self.before, "PENDING", "RUNNING", "SUCCEEDED", "FAILED")
        return tuple(self.named(m) for m in (*members, "CANCELLING", "CANCELLED", *self.after))


PIPELINE_STATES = JobStates("PIPELINE_STATE", before=("QUEUED",), after=("PAUSED",))
PENDING = PIPELINE_STATES.pending
RUNNING = PIPELINE_STATES.running
SUCCEEDED = PIPELINE_STATES.succeeded
FAILED = PIPELINE_STATES.failed
CANCELLING = PIPELINE_STATES.cancelling
CANCELLED = PIPELINE_STATES.cancelled
#: Every state name of ``google.cloud.aiplatform.v1.PipelineState`` (for list filters).
ALL_STATES = PIPELINE_STATES.every
TERMINAL_STATES = PIPELINE_STATES.terminal


def now() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """``moment`` as an RFC 3339 UTC "Zulu" timestamp with microseconds, as the API writes."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class EmulatedJob:
    """A pipeline job as a runner sees it: the accepted request, normalised.

    ``parameters`` holds every distillation parameter with its defaults filled in and numbers of
    the right type (``train_steps`` is an ``int`` even when the client sent ``300.0``).
    """

    name: str
    job_id: str
    project: str
    location: str
    display_name: str
    template_uri: str
    output_directory: str
    parameters: Mapping[str, Any]
    create_time: datetime
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = ""
    kms_key_name: str = ""

    @property
    def job_output_directory(self) -> str:
        """``<gcsOutputDirectory>/<job id>/``: where the job writes (manifest, later a model)."""
        return f"{self.output_directory.rstrip('/')}/{self.job_id}/"
