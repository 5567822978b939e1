"""The trainer-backed step of a job: data, teacher, a worker process, artifacts, the registry.

:class:`LocalTrainer` plugs into :class:`~distillery.local.emulator.DatasetRunner` (which has
already read and counted the data and written the manifest). It

1. streams the dataset and eval set from the bucket (the :class:`~distillery.core.ports.ObjectStore`
   port) into :class:`TrainingExample` lines in a local work directory;
2. when some training example has no ``output_text``, resolves the teacher — a local checkpoint
   from ``DISTILLERY_LOCAL_TEACHERS`` or a model of the local Model Registry (resource name or
   display name) — or FAILS the job (FAILED_PRECONDITION): it never invents labels;
3. maps the job's parameters to a ``TrainingConfig`` (:func:`training_config`);
4. trains in a separate worker process (``python -m distillery.local.emulator._worker``): a cancel
   terminates it (then kills it after a grace period), a crash fails the job with the reason;
5. uploads the model, metrics and TensorBoard files to ``<gcsOutputDirectory>/<job id>/`` and
   registers the model in the Model Registry.

While the job runs, and after it ended, its ``jobDetail`` shows the tasks (see
:class:`JobDetail`)::

    {"pipelineRunContext": {"name": ".../pipelineJobs/JOB", "displayName": JOB},
     "taskDetails": [
       {"taskId": "1", "taskName": "prepare-data", "state": "SUCCEEDED", ...},
       {"taskId": "2", "taskName": "label-with-teacher", "state": "SKIPPED" | ...},
       {"taskId": "3", "taskName": "distillation-trainer", "state": "RUNNING",
        "execution": {"schemaTitle": "system.ContainerExecution", "state": "RUNNING",
          "metadata": {"input:train_steps": 300, "input:batch_size": 8, ...,
                       "progress:step": 40, "progress:train_steps": 300,
                       "progress:fraction_complete": 0.133, "progress:phase": "train",
                       "progress:train_total_loss": 0.61,
                       "progress:eval_fraction_of_correct_next_step_preds": 0.92}},
        "outputs": {  # once SUCCEEDED
          "metrics": {"artifacts": [{"schemaTitle": "system.Metrics", "uri": ".../metrics.jsonl",
                                     "metadata": {"train_total_loss": ..., "eval_...": ...}}]},
          "model": {"artifacts": [{"schemaTitle": "system.Model", "uri": ".../model/"}]},
          "tensorboard": {"artifacts": [{"schemaTitle": "system.Artifact",
                                         "uri": ".../tensorboard/"}]}}},
       {"taskId": "4", "taskName": "upload-llm-model", "state": "SUCCEEDED",
        "execution": {"metadata": {
            "output:model_resource_name": "projects/P/locations/L/models/M"}}}]}

The final metrics (Vertex AI's names, ``train_*`` and with eval data ``eval_*``) are the
``metadata`` of the ``metrics`` output artifact of the ``distillation-trainer`` task, KFP's
``system.Metrics`` convention; the model's resource name is where the Vertex AI SDK reads it for
tuning pipelines: ``execution.metadata["output:model_resource_name"]`` of ``upload-llm-model``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from distillery.core.errors import DistilleryError, ObjectNotFoundError
from distillery.local.emulator._config import TrainerOptions
from distillery.local.emulator._model import EmulatedJob, now, rfc3339
from distillery.local.emulator._registry import ArtifactCache, ModelRegistry, label_value
from distillery.local.emulator._runner import (
    JobCancelledError,
    RunContext,
    RunResult,
    Trainer,
    TrainingInputs,
    split_gcs_uri,
)
from distillery.local.emulator._worker import LABELS_FILE, REQUEST_FILE

logger = logging.getLogger(__name__)

PREPARE_TASK = "prepare-data"
LABEL_TASK = "label-with-teacher"
TRAIN_TASK = "distillation-trainer"
UPLOAD_TASK = "upload-llm-model"
TASKS = (PREPARE_TASK, LABEL_TASK, TRAIN_TASK, UPLOAD_TASK)

#: Where tuning computes for each accelerator (SPEC: "Regions and accelerators").
TUNING_LOCATIONS = {"GPU": "us-central1", "TPU": "europe-west4"}
#: Batch size of 8k-context students by tuning location; 32k-context students use 8 everywhere.
SHORT_CONTEXT_BATCH = {"us-central1": 8, "europe-west4": 24}
LONG_CONTEXT_BATCH = 8
#: How much of the worker's log a crash report quotes.
LOG_TAIL_LINES = 8
LOG_TAIL_CHARS = 1500
POLL_SECONDS = 0.1

_EXECUTION_STATES = {
    "PENDING": "NEW",
    "RUNNING": "RUNNING",
    "SUCCEEDED": "COMPLETE",
    "FAILED": "FAILED",
    "CANCELLED": "CANCELLED",
}


class _JobFailure(Exception):
    """The job cannot go on; it FAILS with ``code`` and the message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def batch_size(accelerator_type: str, student: str, long_context_students: tuple[str, ...]) -> int:
    """SPEC's batch size: 8k students 8 on GPU (us-central1) and 24 on TPU (europe-west4);
    32k-context students (``long_context_students``) 8 in both."""
    if student in long_context_students:
        return LONG_CONTEXT_BATCH
    return SHORT_CONTEXT_BATCH[TUNING_LOCATIONS.get(accelerator_type, "us-central1")]


def training_config(
    parameters: Mapping[str, Any],
    *,
    has_evaluation: bool,
    long_context_students: tuple[str, ...] = (),
    student_checkpoint: str | None = None,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """The ``TrainingConfig`` keyword arguments for a job's (normalised) ``parameters``.

    ``train_steps`` and ``learning_rate_multiplier`` pass through; the batch size follows
    :func:`batch_size`. Evaluation, early stopping and checkpoint selection apply only with eval
    data: then ``evaluation_interval`` and ``enable_early_stopping`` pass through, and
    ``enable_checkpoint_selection`` ``"true"`` turns selection on, ``"false"`` off, and
    ``"default"`` on (the service's default picks the best checkpoint when it can evaluate).
    Without eval data all three are off.
    """
    config: dict[str, Any] = {
        "train_steps": int(parameters["train_steps"]),
        "batch_size": batch_size(
            str(parameters.get("accelerator_type", "GPU")),
            str(parameters.get("student_model_reference", "")),
            long_context_students,
        ),
        "learning_rate_multiplier": float(parameters["learning_rate_multiplier"]),
        "student_checkpoint": student_checkpoint,
    }
    if has_evaluation:
        selection = str(parameters.get("enable_checkpoint_selection", "default")).lower()
        config["evaluation_interval"] = int(parameters.get("evaluation_interval", 20))
        config["enable_early_stopping"] = bool(parameters.get("enable_early_stopping", True))
        config["enable_checkpoint_selection"] = selection in ("default", "true")
    else:
        config["evaluation_interval"] = None
        config["enable_early_stopping"] = False
        config["enable_checkpoint_selection"] = False
    if num_threads is not None:
        config["num_threads"] = num_threads
    return config


class JobDetail:
    """The ``jobDetail`` of one trainer-backed job, kept current as the run goes."""

    def __init__(self, job: EmulatedJob) -> None:
        self._job = job
        self._lock = threading.Lock()
        self._tasks: dict[str, dict[str, Any]] = {}
        created = rfc3339(now())
        for number, name in enumerate(TASKS, start=1):
            self._tasks[name] = {
                "taskId": str(number),
                "taskName": name,
                "createTime": created,
                "state": "PENDING",
            }

    def set_state(self, task: str, state: str) -> None:
        """Move ``task`` to ``state`` (``RUNNING`` stamps the start, an end state the end)."""
        with self._lock:
            entry = self._tasks[task]
            entry["state"] = state
            moment = rfc3339(now())
            if state == "RUNNING":
                entry["startTime"] = moment
            elif state in ("SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED"):
                entry.setdefault("startTime", moment)
                entry["endTime"] = moment
            if state in _EXECUTION_STATES:
                execution = self._execution(entry)
                execution["state"] = _EXECUTION_STATES[state]
                execution["updateTime"] = moment

    def ensure_running(self, task: str) -> None:
        """Move ``task`` to RUNNING unless it already is."""
        with self._lock:
            running = self._tasks[task]["state"] == "RUNNING"
        if not running:
            self.set_state(task, "RUNNING")

    def fail_open_tasks(self, state: str, message: str | None = None) -> None:
        """End every task still PENDING or RUNNING: the running one in ``state``, the rest
        NOT_TRIGGERED; ``message`` becomes the running task's ``error``."""
        with self._lock:
            running = [n for n, t in self._tasks.items() if t["state"] == "RUNNING"]
            pending = [n for n, t in self._tasks.items() if t["state"] == "PENDING"]
        for name in running:
            self.set_state(name, state)
            if message:
                with self._lock:
                    self._tasks[name]["error"] = {"code": 2, "message": message}
        with self._lock:
            for name in pending:
                self._tasks[name]["state"] = "NOT_TRIGGERED"

    def set_metadata(self, task: str, **values: Any) -> None:
        """Merge ``values`` into the execution metadata of ``task`` (None values are dropped)."""
        with self._lock:
            metadata = self._execution(self._tasks[task]).setdefault("metadata", {})
            metadata.update({k: v for k, v in values.items() if v is not None})

    def set_outputs(self, task: str, outputs: Mapping[str, Mapping[str, Any]]) -> None:
        """Set the output artifacts of ``task``: name → one Artifact resource."""
        with self._lock:
            moment = rfc3339(now())
            self._tasks[task]["outputs"] = {
                name: {"artifacts": [{"createTime": moment, "state": "LIVE", **artifact}]}
                for name, artifact in outputs.items()
            }

    def render(self) -> dict[str, Any]:
        """The REST ``PipelineJobDetail``."""
        with self._lock:
            return {
                "pipelineRunContext": {"name": self._job.name, "displayName": self._job.job_id},
                "taskDetails": json.loads(json.dumps(list(self._tasks.values()))),
            }

    def _execution(self, entry: dict[str, Any]) -> dict[str, Any]:
        execution: dict[str, Any] = entry.setdefault(
            "execution",
            {
                "name": f"{self._job.name}/executions/{entry['taskId']}",
                "displayName": entry["taskName"],
                "schemaTitle": "system.ContainerExecution",
                "schemaVersion": "0.0.1",
                "createTime": entry["createTime"],
            },
        )
        return execution


class LocalTrainer(Trainer):
    """Trains jobs with the local trainer in worker processes and registers the models."""

    name = "distillery.local.trainer"

    def __init__(
        self, options: TrainerOptions, registry: ModelRegistry, cache: ArtifactCache, root: Path
    ) -> None:
        self.options = options
        self.name = options.trainer_module
        self._registry = registry
        self._cache = cache
        self._root = root

    def train(self, job: EmulatedJob, inputs: TrainingInputs, context: RunContext) -> RunResult:
        """Train the student of ``job`` in a worker process (see the module docs).

        Raises:
            JobCancelledError: cancel was asked; the worker was stopped.
        """
        detail = JobDetail(job)
        work = self._root / "jobs" / f"{job.job_id}-{uuid.uuid4().hex[:8]}"
        work.mkdir(parents=True)
        try:
            return self._train(job, inputs, context, detail, work)
        except _JobFailure as exc:
            detail.fail_open_tasks("FAILED", str(exc))
            return RunResult.failed(exc.code, str(exc), detail.render())
        except JobCancelledError:
            detail.fail_open_tasks("CANCELLED")
            context.report_detail(detail.render())
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _train(
        self,
        job: EmulatedJob,
        inputs: TrainingInputs,
        context: RunContext,
        detail: JobDetail,
        work: Path,
    ) -> RunResult:
        parameters = job.parameters
        detail.set_state(PREPARE_TASK, "RUNNING")
        context.report_detail(detail.render())
        unlabeled = _download_examples(context, inputs.dataset.uri, work / "train.jsonl")
        if inputs.evaluation is not None:
            _download_examples(context, inputs.evaluation.uri, work / "eval.jsonl")
        student = self._student(str(parameters["student_model_reference"]))
        teacher_reference = str(parameters["teacher_model_reference"])
        teacher = self._teacher(job, teacher_reference, inputs, unlabeled) if unlabeled else None
        context.raise_if_cancelled()
        config = training_config(
            parameters,
            has_evaluation=inputs.evaluation is not None,
            long_context_students=self.options.long_context_students,
            student_checkpoint=str(student) if student else None,
            num_threads=self.options.num_threads,
        )
        detail.set_metadata(
            PREPARE_TASK,
            **{
                "output:train_examples": inputs.dataset.examples,
                "output:unlabeled_examples": unlabeled,
                "output:evaluation_examples": (
                    inputs.evaluation.examples if inputs.evaluation else None
                ),
            },
        )
        detail.set_state(PREPARE_TASK, "SUCCEEDED")
        if not unlabeled:
            detail.set_state(LABEL_TASK, "SKIPPED")
        else:
            detail.set_metadata(
                LABEL_TASK,
                **{"input:teacher_model_reference": teacher_reference, "input:prompts": unlabeled},
            )
        detail.set_metadata(
            TRAIN_TASK,
            **{f"input:{k}": v for k, v in config.items() if k != "student_checkpoint"},
            **{"input:student_model_reference": str(parameters["student_model_reference"])},
        )
        context.report_detail(detail.render())
        request = {
            "version": 1,
            "parent": os.getpid(),
            "sysPath": [p for p in sys.path if p],
            "trainerModule": self.options.trainer_module,
            "config": config,
            "train": "train.jsonl",
            "evaluation": "eval.jsonl" if inputs.evaluation is not None else None,
            "teacher": str(teacher) if teacher else None,
            "output": "out",
        }
        (work / REQUEST_FILE).write_text(json.dumps(request), encoding="utf-8")
        if not unlabeled:
            detail.set_state(TRAIN_TASK, "RUNNING")
        result = _WorkerRun(work, detail, context, self.options.stop_grace_seconds).run()
        detail.set_state(TRAIN_TASK, "SUCCEEDED")
        context.report_detail(detail.render())
        return self._publish(
            job, inputs, context, detail, work, result, teacher_reference, bool(unlabeled)
        )

    def _student(self, reference: str) -> Path | None:
        """The local checkpoint of ``reference``, or None for the built-in architecture."""
        checkpoint = self.options.local_models.students.get(reference)
        if checkpoint is not None and not checkpoint.is_dir():
            raise _JobFailure(
                "FAILED_PRECONDITION",
                f"the local checkpoint {checkpoint} configured for student {reference!r} "
                "(DISTILLERY_LOCAL_STUDENTS) is not a directory",
            )
        return checkpoint

    def _teacher(
        self, job: EmulatedJob, reference: str, inputs: TrainingInputs, unlabeled: int
    ) -> Path:
        """The local directory of the teacher that labels the ``unlabeled`` examples.

        Raises:
            _JobFailure: FAILED_PRECONDITION, no teacher is available (the job never invents
                labels) or its artifacts cannot be read.
        """
        checkpoint = self.options.local_models.teachers.get(reference)
        if checkpoint is not None:
            if not checkpoint.is_dir():
                raise _JobFailure(
                    "FAILED_PRECONDITION",
                    f"the local checkpoint {checkpoint} configured for teacher {reference!r} "
                    "(DISTILLERY_LOCAL_TEACHERS) is not a directory",
                )
            return checkpoint
        model = self._registry.resolve(reference, job.project)
        if model is None:
            raise _JobFailure(
                "FAILED_PRECONDITION",
                f"no teacher is available to label the dataset {inputs.dataset.uri}: {unlabeled} "
                f"of its {inputs.dataset.examples} examples have no output_text, and teacher "
                f"{reference!r} is neither a local checkpoint (DISTILLERY_LOCAL_TEACHERS="
                f"'{reference}=/path/to/checkpoint') nor a model of the local Model Registry "
                "(a display name or projects/P/locations/L/models/ID); the local emulator never "
                "invents labels",
            )
        try:
            return self._cache.local_dir(model)
        except (DistilleryError, OSError) as exc:
            raise _JobFailure(
                "FAILED_PRECONDITION",
                f"the artifacts of teacher model {model.name} could not be read from "
                f"{model.artifact_uri}: {exc}",
            ) from exc

    def _publish(
        self,
        job: EmulatedJob,
        inputs: TrainingInputs,
        context: RunContext,
        detail: JobDetail,
        work: Path,
        result: Mapping[str, Any],
        teacher_reference: str,
        labelled: bool,
    ) -> RunResult:
        """Upload the outputs, register the model, finish the job detail."""
        detail.set_state(UPLOAD_TASK, "RUNNING")
        context.report_detail(detail.render())
        output = inputs.output_directory
        bucket, prefix = split_gcs_uri(output)
        store = context.object_store
        model_files = _upload_tree(store, Path(result["modelDir"]), bucket, f"{prefix}model/")
        _upload_tree(store, Path(result["tensorboardDir"]), bucket, f"{prefix}tensorboard/")
        _upload_file(store, Path(result["metricsPath"]), bucket, f"{prefix}metrics.jsonl")
        if result.get("labelsPath"):
            _upload_file(store, Path(result["labelsPath"]), bucket, f"{prefix}{LABELS_FILE}")
        context.raise_if_cancelled()
        metrics = {str(k): float(v) for k, v in result["metrics"].items()}
        parameters = job.parameters
        student = str(parameters["student_model_reference"])
        labels = {
            "distillery-pipeline-job": label_value(job.job_id),
            "distillery-dataset": label_value(split_gcs_uri(inputs.dataset.uri)[1]),
            "distillery-dataset-generation": str(inputs.dataset.generation),
            "distillery-student": label_value(student),
        }
        if labelled:
            labels["distillery-teacher"] = label_value(teacher_reference)
        for key, value in job.labels.items():
            clean = label_value(key)
            if clean[:1].isalpha() and clean not in labels:
                labels[clean] = label_value(value)
        model = self._registry.register(
            project=job.project,
            location=str(parameters.get("location", job.location)),
            display_name=str(parameters["model_display_name"]),
            artifact_uri=f"{output}model/",
            files=model_files,
            labels=labels,
            description=f"Distilled from {teacher_reference} into {student} by {job.name}",
            pipeline_job=job.name,
            metadata={
                "metrics": metrics,
                "datasetUri": inputs.dataset.uri,
                "evaluationDataUri": inputs.evaluation.uri if inputs.evaluation else None,
                "studentModelReference": student,
                "teacherModelReference": teacher_reference,
                "selectedStep": result["selectedStep"],
            },
        )
        detail.set_outputs(
            TRAIN_TASK,
            {
                "metrics": {
                    "name": f"{job.name}/artifacts/metrics",
                    "displayName": "metrics",
                    "schemaTitle": "system.Metrics",
                    "schemaVersion": "0.0.1",
                    "uri": f"{output}metrics.jsonl",
                    "metadata": metrics,
                },
                "model": {
                    "name": f"{job.name}/artifacts/model",
                    "displayName": "model",
                    "schemaTitle": "system.Model",
                    "schemaVersion": "0.0.1",
                    "uri": f"{output}model/",
                },
                "tensorboard": {
                    "name": f"{job.name}/artifacts/tensorboard",
                    "displayName": "tensorboard",
                    "schemaTitle": "system.Artifact",
                    "schemaVersion": "0.0.1",
                    "uri": f"{output}tensorboard/",
                },
            },
        )
        detail.set_metadata(
            TRAIN_TASK,
            **{
                "output:selected_step": result["selectedStep"],
                "output:steps_run": result["stepsRun"],
                "output:stopped_early": result["stoppedEarly"],
                "output:eval_exact_match": result.get("evalExactMatch"),
                "output:examples_used": result.get("examplesUsed"),
                "output:truncated_fields": result.get("truncatedFields"),
            },
        )
        detail.set_metadata(UPLOAD_TASK, **{"output:model_resource_name": model.name})
        detail.set_state(UPLOAD_TASK, "SUCCEEDED")
        return RunResult.succeeded(detail.render())


class _WorkerRun:
    """One worker process: start, follow its messages, stop it on cancel, judge its end."""

    def __init__(self, work: Path, detail: JobDetail, context: RunContext, grace: float) -> None:
        self._work = work
        self._detail = detail
        self._context = context
        self._grace = grace
        self._result: dict[str, Any] | None = None
        self._error: dict[str, Any] | None = None
        self._last_loss: float | None = None
        self._last_accuracy: float | None = None

    def run(self) -> dict[str, Any]:
        """The worker's ``result`` message.

        Raises:
            JobCancelledError: cancel was asked; the worker was stopped.
            _JobFailure: the worker reported an error, or crashed.
        """
        read_fd, write_fd = os.pipe()
        log_path = self._work / "worker.log"
        try:
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "distillery.local.emulator._worker", str(self._work),
                     str(write_fd)],
                    pass_fds=(write_fd,),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._work,
                )  # fmt: skip
        except OSError as exc:
            os.close(read_fd)
            raise _JobFailure("INTERNAL", f"the training worker could not start: {exc}") from exc
        finally:
            os.close(write_fd)
        logger.info("training worker started", extra={"pid": process.pid, "work": str(self._work)})
        reader = threading.Thread(
            target=self._follow, args=(os.fdopen(read_fd, "r", encoding="utf-8"),), daemon=True
        )
        reader.start()
        try:
            while True:
                try:
                    code = process.wait(POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if self._context.cancelled:
                        self._stop(process)
                        raise JobCancelledError("the pipeline job was cancelled") from None
        finally:
            if process.poll() is None:  # An unexpected error here: never leave a worker behind.
                self._stop(process)
            reader.join(5)
        if self._result is not None and code == 0:
            return self._result
        if self._context.cancelled:
            raise JobCancelledError("the pipeline job was cancelled")
        if self._error is not None:
            if self._error.get("kind") == "training":
                raise _JobFailure(
                    "FAILED_PRECONDITION", f"training failed: {self._error['message']}"
                )
            raise _JobFailure(
                "INTERNAL",
                f"the training worker failed: {self._error.get('message')}{_tail(log_path)}",
            )
        if code < 0:
            try:
                how = f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        raise _JobFailure(
            "INTERNAL", f"the training worker process {how} before it finished{_tail(log_path)}"
        )

    def _stop(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM, then SIGKILL after the grace period."""
        process.terminate()
        try:
            process.wait(self._grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        logger.info("training worker stopped", extra={"pid": process.pid})

    def _follow(self, channel: IO[str]) -> None:
        with channel:
            for line in channel:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    self._on_message(message)

    def _on_message(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        detail = self._detail
        if event == "task" and message.get("task") == LABEL_TASK:
            state = str(message.get("state"))
            detail.set_state(LABEL_TASK, state)
            if state == "SUCCEEDED":
                detail.set_metadata(
                    LABEL_TASK,
                    **{
                        "output:labelled_examples": message.get("examples"),
                        "output:rationales": message.get("rationales"),
                    },
                )
                detail.set_state(TRAIN_TASK, "RUNNING")
        elif event == "progress":
            if message.get("trainTotalLoss") is not None:
                self._last_loss = float(message["trainTotalLoss"])
            if message.get("evalAccuracy") is not None:
                self._last_accuracy = float(message["evalAccuracy"])
            step, total = int(message.get("step") or 0), int(message.get("trainSteps") or 0)
            detail.ensure_running(TRAIN_TASK)
            detail.set_metadata(
                TRAIN_TASK,
                **{
                    "progress:step": step,
                    "progress:train_steps": total,
                    "progress:fraction_complete": round(step / total, 4) if total else None,
                    "progress:phase": message.get("phase"),
                    "progress:train_total_loss": self._last_loss,
                    "progress:eval_fraction_of_correct_next_step_preds": self._last_accuracy,
                    "progress:update_time": rfc3339(now()),
                },
            )
        elif event == "result":
            self._result = message
            return
        elif event == "error":
            self._error = message
            return
        else:
            return
        self._context.report_detail(detail.render())


def _download_examples(context: RunContext, uri: str, path: Path) -> int:
    """Stream the JSONL object at ``uri`` into ``path`` as TrainingExample lines; returns how
    many examples have no ``output_text`` (the dataset runner has already checked the lines).

    Raises:
        _JobFailure: the object could not be read (it changed since it was counted).
    """
    bucket, name = split_gcs_uri(uri)
    unlabeled = 0
    try:
        with (
            context.object_store.open_read(bucket, name) as reader,
            path.open("w", encoding="utf-8") as out,
        ):
            for number, raw in enumerate(reader, start=1):
                if not raw.strip():
                    continue
                if number % 1000 == 0:
                    context.raise_if_cancelled()
                data = json.loads(raw)
                output_text = data.get("output_text")
                example: dict[str, Any] = {"input_text": data["input_text"]}
                if isinstance(output_text, str):
                    example["output_text"] = output_text
                else:
                    unlabeled += 1
                if isinstance(data.get("rationale"), str):
                    example["rationale"] = data["rationale"]
                out.write(json.dumps(example, ensure_ascii=False) + "\n")
    except (DistilleryError, ValueError, KeyError, TypeError) as exc:
        code = "NOT_FOUND" if isinstance(exc, ObjectNotFoundError) else "FAILED_PRECONDITION"
        raise _JobFailure(code, f"{uri} could not be read for training: {exc}") from exc
    return unlabeled


def _files(root: Path) -> Iterator[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file())


def _upload_tree(store: Any, root: Path, bucket: str, prefix: str) -> tuple[str, ...]:
    """Upload every file under ``root`` to ``prefix``; returns the relative names."""
    names = []
    if root.is_dir():
        for path in _files(root):
            relative = path.relative_to(root).as_posix()
            _upload_file(store, path, bucket, prefix + relative)
            names.append(relative)
    return tuple(names)


def _upload_file(store: Any, path: Path, bucket: str, name: str) -> None:
    content_type = "application/json" if path.suffix == ".json" else "application/octet-stream"
    if path.suffix == ".jsonl":
        content_type = "application/jsonl"
    store.write_bytes(bucket, name, path.read_bytes(), content_type=content_type)


def _tail(log_path: Path) -> str:
    """``": <last lines of the worker's log>"`` ("" when it is empty)."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    text = " | ".join(line.strip() for line in lines[-LOG_TAIL_LINES:] if line.strip())
    return f"; its log ends: {text[-LOG_TAIL_CHARS:]}" if text else ""
