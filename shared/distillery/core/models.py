"""Typed events, messages and states of ARCHITECTURE.md.

Parse at the edge: handlers turn raw CloudEvents and Pub/Sub payloads into these models (see
:mod:`distillery.core.events`) and core code never sees raw dicts, base64 or CloudEvent objects.
Strict at the user's edge, tolerant inside: what users send (a LaunchRequest, the config) forbids
unknown fields, so a typo is a clear error; what our own functions send each other (a StatusEvent,
the PipelineJob LogEntry) ignores the fields it does not know, with a log line naming them, so
during a rolling deploy a message from a newer version is still understood by an older one.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

logger = logging.getLogger(__name__)

GCS_URI = re.compile(r"^gs://(?P<bucket>[a-z0-9][a-z0-9._-]{1,220}[a-z0-9])/(?P<name>.+)$")


def split_gcs_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/name`` → ``(bucket, name)``.

    Raises:
        ValueError: ``uri`` is not a ``gs://bucket/object`` URI.
    """
    match = GCS_URI.match(uri)
    if not match:
        raise ValueError(f"{uri!r} is not a gs://BUCKET/OBJECT URI")
    return match["bucket"], match["name"]


class JobState(StrEnum):
    """A distillation job's lifecycle; transitions only move forward (ARCHITECTURE.md)."""

    REQUESTED = "REQUESTED"
    #: A gemini job whose teacher is labeling (and explaining) its training set in a batch
    #: prediction job; its tuning job is created once the labels are in.
    LABELING = "LABELING"
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    #: A SUCCEEDED job whose model is being judged: it and the champion answer the golden set.
    EVALUATING = "EVALUATING"
    PROMOTED = "PROMOTED"
    REJECTED = "REJECTED"
    REJECTED_BY_POLICY = "REJECTED_BY_POLICY"
    #: A PROMOTED job whose model a rollback took off its endpoint (the previous champion serves).
    ROLLED_BACK = "ROLLED_BACK"


class _Tolerant(BaseModel):
    """Base of what our own functions (or Google's services) send us: unknown fields are ignored.

    A field this version does not know comes from a newer sender; it is logged and dropped, never
    an error (an error would make a SUCCEEDED event a permanent failure mid-deploy).
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    #: Fields the sender's format has that we do not read: dropped without a log line.
    unread_fields: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _log_unknown_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = set(cls.model_fields) | cls.unread_fields
            known.update(f.alias for f in cls.model_fields.values() if f.alias)
            unknown = sorted(str(key) for key in data if key not in known)
            if unknown:
                logger.info(
                    "ignoring fields a %s of this version does not know: %s",
                    cls.__name__,
                    ", ".join(unknown),
                    extra={"message_type": cls.__name__, "unknown_fields": unknown},
                )
        return data


class StorageObject(BaseModel):
    """The Cloud Storage object resource carried by a ``storage.object.v1.finalized`` event."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    bucket: str = Field(min_length=3)
    name: str = Field(min_length=1)
    generation: int = Field(ge=1)
    size: int = Field(default=0, ge=0)
    content_type: str | None = Field(default=None, alias="contentType")
    md5_hash: str | None = Field(default=None, alias="md5Hash")
    crc32c: str | None = None
    time_created: datetime | None = Field(default=None, alias="timeCreated")
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("generation", "size", mode="before")
    @classmethod
    def _int_from_string(cls, value: Any) -> Any:
        # The JSON API renders int64 fields as strings.
        if isinstance(value, str) and value.isdigit():
            return int(value)
        return value

    @property
    def uri(self) -> str:
        """``gs://bucket/name`` (without the generation)."""
        return f"gs://{self.bucket}/{self.name}"


class StorageObjectEvent(BaseModel):
    """A parsed ``google.cloud.storage.object.v1.finalized`` CloudEvent."""

    id: str
    type: str
    source: str
    subject: str | None = None
    time: datetime | None = None
    object: StorageObject


class PubsubMessage(BaseModel):
    """The Pub/Sub message inside a ``google.cloud.pubsub.topic.v1.messagePublished`` event."""

    model_config = ConfigDict(populate_by_name=True)

    data: bytes = b""
    attributes: dict[str, str] = Field(default_factory=dict)
    message_id: str = Field(default="", alias="messageId")
    publish_time: datetime | None = Field(default=None, alias="publishTime")


class PubsubEvent(BaseModel):
    """A parsed ``messagePublished`` CloudEvent."""

    id: str
    type: str
    source: str
    time: datetime | None = None
    message: PubsubMessage
    subscription: str | None = None


class _Message(BaseModel):
    """Base of the messages users send us (the edge): unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")

    def to_bytes(self) -> bytes:
        """The message as compact UTF-8 JSON (what goes on the wire)."""
        return self.model_dump_json(exclude_none=True).encode()


class LaunchRequest(_Message):
    """A request to distill a validated dataset (topic ``distill-launch-requests``)."""

    #: The validated dataset (required unless ``rerun_of`` names the job whose dataset to reuse).
    dataset_uri: str | None = None
    #: The eval set: only the one validated with the dataset (its record's validated eval copy).
    eval_dataset_uri: str | None = None
    #: The dataset record (``datasets/{dataset_id}``) the request launches. validate_dataset sets
    #: it; without it, ``dataset_uri`` must name the validated copy of exactly one record (the
    #: copies of re-uploads of the same content share a URI).
    dataset_id: str | None = Field(default=None, min_length=1, max_length=256)
    #: Any job parameter of SPEC.md ("Training parameters"), e.g. {"train_steps": 500}.
    overrides: dict[str, Any] = Field(default_factory=dict)
    #: The job_id of the job this one reruns.
    rerun_of: str | None = None
    #: The idempotency key of the user request; the same key never launches twice.
    request_id: str = Field(min_length=1, max_length=256)
    requested_by: str | None = None

    @field_validator("dataset_uri", "eval_dataset_uri")
    @classmethod
    def _gcs_uri(cls, value: str | None) -> str | None:
        if value is not None:
            split_gcs_uri(value)
        return value

    @model_validator(mode="after")
    def _dataset_or_rerun(self) -> LaunchRequest:
        if self.dataset_uri is None and self.rerun_of is None:
            raise ValueError("a LaunchRequest needs dataset_uri, or rerun_of naming a job")
        return self


class StatusEvent(_Tolerant):
    """A normalized job state change (topic ``distill-job-status``; attributes job_id, state)."""

    job_id: str
    state: JobState
    previous_state: JobState | None = None
    at: datetime
    dataset_uri: str | None = None
    pipeline_job: str | None = None
    #: A gemini job's tuning job (``projects/P/locations/L/tuningJobs/ID``), once created.
    tuning_job: str | None = None
    #: A labeling job's teacher batch prediction job
    #: (``projects/P/locations/L/batchPredictionJobs/ID``), once created.
    batch_prediction_job: str | None = None
    model: str | None = None
    endpoint: str | None = None
    metrics: dict[str, float] | None = None
    reason: str | None = None
    #: On PROMOTED: what to put before every prompt sent to the model (a step-by-step model's
    #: label task prefix, ``predict: ``); "" when prompts are sent as they are.
    prompt_prefix: str | None = None

    def to_bytes(self) -> bytes:
        """The message as compact UTF-8 JSON (what goes on the wire)."""
        return self.model_dump_json(exclude_none=True).encode()

    def attributes(self) -> dict[str, str]:
        """Message attributes subscribers filter on."""
        return {"job_id": self.job_id, "state": self.state.value}


class LogResource(_Tolerant):
    """The monitored resource of a LogEntry."""

    type: str
    labels: dict[str, str] = Field(default_factory=dict)


class JobEvent(_Tolerant):
    """A PipelineJob state LogEntry, as the Cloud Logging sink publishes it (distill-job-events)."""

    #: The rest of a LogEntry (Cloud Logging's documented fields), which we have no use for.
    unread_fields: ClassVar[frozenset[str]] = frozenset(
        {
            "logName",
            "receiveTimestamp",
            "severity",
            "labels",
            "operation",
            "trace",
            "spanId",
            "traceSampled",
            "sourceLocation",
            "httpRequest",
            "protoPayload",
            "textPayload",
            "split",
            "errorGroups",
            "apphub",
            "apphubDestination",
        }
    )

    insert_id: str | None = Field(default=None, alias="insertId")
    resource: LogResource
    json_payload: dict[str, Any] = Field(default_factory=dict, alias="jsonPayload")
    timestamp: datetime | None = None

    @property
    def pipeline_job_id(self) -> str | None:
        """The pipeline job's id (our job_id), from the resource labels."""
        return self.resource.labels.get("pipeline_job_id") or self.json_payload.get("pipelineJobId")

    @property
    def pipeline_state(self) -> str | None:
        """``PIPELINE_STATE_*``, or None when the entry carries no state."""
        state = self.json_payload.get("state")
        return state if isinstance(state, str) else None

    @property
    def error_message(self) -> str | None:
        """The job's error message, when the entry carries one."""
        error = self.json_payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        return None
