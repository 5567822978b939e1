"""The local Vertex AI API emulator: the ``pipelineJobs`` REST subset the product uses.

The official ``PipelineServiceClient`` (REST transport, anonymous credentials, ``api_endpoint``
= the emulator's ``http://`` URL) works against it unchanged. Jobs are validated as the service
validates a distillation request, kept in memory, run by a pluggable :class:`JobRunner` on a
bounded pool of worker threads, and every state change is published to the job-events topic as
the Cloud Logging LogEntry the production log sink delivers::

    {"insertId": "5f0c...",
     "logName": "projects/P/logs/aiplatform.googleapis.com%2Fpipeline_job_events",
     "resource": {"type": "aiplatform.googleapis.com/PipelineJob",
                  "labels": {"pipeline_job_id": ID, "location": L, "resource_container": P}},
     "jsonPayload": {"pipelineName": "projects/P/locations/L/pipelineJobs/ID",
                     "pipelineJobId": ID, "displayName": "...", "state": "PIPELINE_STATE_RUNNING",
                     "previousState": "PIPELINE_STATE_PENDING", "message": "...",
                     "error": {"code": 9, "message": "..."}  # FAILED / CANCELLED only
                     },
     "timestamp": "...Z", "receiveTimestamp": "...Z", "severity": "INFO"}  # ERROR when FAILED

Run it with ``python -m distillery.emulator --host 127.0.0.1 --port PORT``; it is ready when
``GET http://HOST:PORT/`` answers 200.
"""

from distillery.emulator._events import LOG_ID, RESOURCE_TYPE, StateChange, log_entry
from distillery.emulator._http import HEALTH_PATH, EmulatorServer, create_server
from distillery.emulator._model import (
    CANCELLED,
    CANCELLING,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    EmulatedJob,
)
from distillery.emulator._runner import (
    MANIFEST_NAME,
    NO_TRAINER_MESSAGE,
    DatasetRunner,
    DatasetSummary,
    JobCancelledError,
    JobRunner,
    RunContext,
    RunResult,
    Trainer,
    TrainingInputs,
    manifest,
)
from distillery.emulator._service import EmulatorConfig, PipelineService
from distillery.emulator._status import ApiError, FieldViolation, rpc_status
from distillery.emulator._validation import TemplateCatalog, validate_create

__all__ = [
    "CANCELLED",
    "CANCELLING",
    "FAILED",
    "HEALTH_PATH",
    "LOG_ID",
    "MANIFEST_NAME",
    "NO_TRAINER_MESSAGE",
    "PENDING",
    "RESOURCE_TYPE",
    "RUNNING",
    "SUCCEEDED",
    "ApiError",
    "DatasetRunner",
    "DatasetSummary",
    "EmulatedJob",
    "EmulatorConfig",
    "EmulatorServer",
    "FieldViolation",
    "JobCancelledError",
    "JobRunner",
    "PipelineService",
    "RunContext",
    "RunResult",
    "StateChange",
    "TemplateCatalog",
    "Trainer",
    "TrainingInputs",
    "create_server",
    "log_entry",
    "manifest",
    "rpc_status",
    "validate_create",
]
