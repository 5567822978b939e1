"""Pipeline states, timestamps and the job snapshot a runner sees."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PENDING = "PIPELINE_STATE_PENDING"
RUNNING = "PIPELINE_STATE_RUNNING"
SUCCEEDED = "PIPELINE_STATE_SUCCEEDED"
FAILED = "PIPELINE_STATE_FAILED"
CANCELLING = "PIPELINE_STATE_CANCELLING"
CANCELLED = "PIPELINE_STATE_CANCELLED"

#: Every state name of ``google.cloud.aiplatform.v1.PipelineState`` (for list filters).
ALL_STATES: tuple[str, ...] = (
    "PIPELINE_STATE_UNSPECIFIED",
    "PIPELINE_STATE_QUEUED",
    PENDING,
    RUNNING,
    SUCCEEDED,
    FAILED,
    CANCELLING,
    CANCELLED,
    "PIPELINE_STATE_PAUSED",
)
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})


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
