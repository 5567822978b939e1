"""The local Vertex AI API emulator: the ``pipelineJobs``, ``tuningJobs``, ``models`` and
``endpoints`` REST subset.

The official ``PipelineServiceClient``, ``ModelServiceClient``, ``EndpointServiceClient`` and
``PredictionServiceClient`` (REST transport, anonymous credentials, ``api_endpoint`` = the
emulator's ``http://`` URL) work against it unchanged. Jobs are validated as the service
validates a request for the distillation template (its parameters, types and defaults; see
:mod:`distillery.local.emulator._template`), kept in memory, run by a pluggable
:class:`JobRunner` on a bounded pool of worker threads, and every state change is published to
the job-events topic as the Cloud Logging LogEntry the production log sink delivers::

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

With a trainer installed (:class:`TrainerOptions`; the default of ``python -m
distillery.local.emulator``), a job trains the student in a worker process (:class:`LocalTrainer`):
live progress and, at the end, the metrics and the model are on the job's ``jobDetail`` —

- progress: ``jobDetail.taskDetails[taskName="distillation-trainer"].execution.metadata``
  ``"progress:step"``, ``"progress:train_steps"``, ``"progress:fraction_complete"``,
  ``"progress:train_total_loss"``, ``"progress:eval_fraction_of_correct_next_step_preds"``;
- metrics: TensorBoard event files in the directory ``jobDetail.taskDetails[taskName=
  "distillation-trainer"].outputs["tensorboard_metrics"].artifacts[0].uri`` (tags
  ``/train_total_loss``, ``/train_fraction_of_correct_next_step_preds``,
  ``/train_num_predictions``, ``/eval_*``), as the real tuning pipelines write them;
- model: ``jobDetail.taskDetails[taskName="upload-llm-model"].execution.metadata
  ["output:model_resource_name"]`` (where the Vertex AI SDK reads it for tuning pipelines;
  ``.../models/M@1``, the uploaded version), labelled as the tuning pipelines label tuned models
  (``google-vertex-llm-tuning-base-model-id``: ``text-bison-002``);
- endpoint: as the real pipeline, the job deploys its model before it SUCCEEDS, on a NEW endpoint
  of its own named after ``model_display_name`` (all the traffic):
  ``jobDetail.taskDetails[taskName="deploy-llm-model"].execution.metadata
  ["output:endpoint_resource_name"]``;

the artifacts are under ``<gcsOutputDirectory>/<job id>/`` (``model/``, ``metrics.jsonl``,
``tensorboard/``, ``teacher_labels.jsonl``; the evaluations' metrics under
``<evaluation_output_root_dir>/<job id>/`` when that parameter is set), and the model is in the
Model Registry, deployable to endpoints and served by ``:predict`` (see
:mod:`distillery.local.emulator._endpoints`). The publisher models of the teacher and student
(``GET /v1/publishers/google/models/ID``) answer what the Vertex AI SDK reads, so
``vertexai.language_models.TextGenerationModel.get_tuned_model(name).predict(prompt)`` works
against the emulator (``vertexai.init(api_endpoint=URL, api_transport="rest",
credentials=AnonymousCredentials(), ...)``).

Gemini supervised tuning (``tuningJobs`` create/get/list/cancel, see
:mod:`distillery.local.emulator._tuning_service`) trains with the same trainer on the ``contents``
dataset, registers the model (``.../models/M@1``), deploys it to an endpoint named after
``tunedModelDisplayName``, where ``:generateContent`` answers (the official
``GenAiTuningServiceClient`` and ``PredictionServiceClient.generate_content`` work against it).

Run it with ``python -m distillery.local.emulator --host 127.0.0.1 --port PORT``; it is ready when
``GET http://HOST:PORT/`` answers 200.
"""

from distillery.local.emulator._config import (
    DATA_DIR_VARIABLE,
    LOCAL_STUDENTS_VARIABLE,
    LOCAL_TEACHERS_VARIABLE,
    LocalModels,
    TrainerOptions,
)
from distillery.local.emulator._endpoints import EndpointService
from distillery.local.emulator._events import LOG_ID, RESOURCE_TYPE, StateChange, log_entry
from distillery.local.emulator._http import HEALTH_PATH, SEED_HEADER, EmulatorServer, create_server
from distillery.local.emulator._job_detail import (
    DEPLOY_TASK,
    LABEL_TASK,
    TRAIN_TASK,
    UPLOAD_TASK,
    JobDetail,
)
from distillery.local.emulator._model import (
    CANCELLED,
    CANCELLING,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    EmulatedJob,
)
from distillery.local.emulator._preparation import batch_size, training_config
from distillery.local.emulator._publishers import PublisherModels
from distillery.local.emulator._registry import ArtifactCache, ModelRegistry, label_value
from distillery.local.emulator._runner import (
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
from distillery.local.emulator._service import EmulatorConfig, PipelineService
from distillery.local.emulator._status import ApiError, FieldViolation, rpc_status
from distillery.local.emulator._training import LocalTrainer
from distillery.local.emulator._tuning import TUNABLE_MODELS, TunableModel, validate_tuning_job
from distillery.local.emulator._tuning_runner import (
    LocalTuningTrainer,
    TunedModelResult,
    TuningDataRunner,
    TuningJobRun,
    TuningRunner,
    TuningTrainer,
)
from distillery.local.emulator._tuning_service import TuningService
from distillery.local.emulator._validation import TemplateCatalog, validate_create

__all__ = [
    "CANCELLED",
    "CANCELLING",
    "DATA_DIR_VARIABLE",
    "DEPLOY_TASK",
    "FAILED",
    "HEALTH_PATH",
    "LABEL_TASK",
    "LOCAL_STUDENTS_VARIABLE",
    "LOCAL_TEACHERS_VARIABLE",
    "LOG_ID",
    "MANIFEST_NAME",
    "NO_TRAINER_MESSAGE",
    "PENDING",
    "RESOURCE_TYPE",
    "RUNNING",
    "SEED_HEADER",
    "SUCCEEDED",
    "TRAIN_TASK",
    "TUNABLE_MODELS",
    "UPLOAD_TASK",
    "ApiError",
    "ArtifactCache",
    "DatasetRunner",
    "DatasetSummary",
    "EmulatedJob",
    "EmulatorConfig",
    "EmulatorServer",
    "EndpointService",
    "FieldViolation",
    "JobCancelledError",
    "JobDetail",
    "JobRunner",
    "LocalModels",
    "LocalTrainer",
    "LocalTuningTrainer",
    "ModelRegistry",
    "PipelineService",
    "PublisherModels",
    "RunContext",
    "RunResult",
    "StateChange",
    "TemplateCatalog",
    "Trainer",
    "TrainerOptions",
    "TrainingInputs",
    "TunableModel",
    "TunedModelResult",
    "TuningDataRunner",
    "TuningJobRun",
    "TuningRunner",
    "TuningService",
    "TuningTrainer",
    "batch_size",
    "create_server",
    "label_value",
    "log_entry",
    "manifest",
    "rpc_status",
    "training_config",
    "validate_create",
    "validate_tuning_job",
]
