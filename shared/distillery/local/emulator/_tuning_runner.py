"""What runs an emulated tuning job: read the ``contents`` dataset, train, register, deploy.

A :class:`TuningRunner` is called once per job on a worker thread, after the job went RUNNING.
The default :class:`TuningDataRunner` streams the training (and validation) JSONL from the bucket,
checks every line as a supervised tuning example (:mod:`distillery.local.emulator._contents`),
reports the job's ``tuningDataStats`` and hands over to a :class:`LocalTuningTrainer` when one is
installed; with none, the job FAILS saying so (the emulator never invents a tuned model).

:class:`LocalTuningTrainer` is the pipeline path's trainer, reused: the examples become the local
trainer's ``input_text``/``output_text`` lines, a worker process trains the student
(:mod:`distillery.local.emulator._supervisor`: a cancel stops it, a crash fails the job), and
then, as the real service does for a tuned Gemini model, the model is registered (version 1),
an endpoint named after ``tunedModelDisplayName`` is created and the model deployed there with
all the traffic. The artifacts go to ``gs://<training dataset's bucket>/tuning-jobs/<job id>/``
(the real service keeps them in Google's storage; the emulator's registry reads from a bucket).

Epochs become steps: ``ceil(examples x epochCount / batch size)`` with a batch of
:data:`LOCAL_BATCH_SIZE`; ``learningRateMultiplier`` passes through; a validation set is
evaluated once an epoch. ``adapterSize`` has no local meaning (the student is small and fully
tuned) and is only recorded on the model.

A distillation job (v1beta1 ``distillationSpec``) reads a prompts-only dataset: each line's
``contents`` ends with the ``user`` turn the teacher answers (a line ending with a ``model`` turn
is refused, as a prompt dataset holds no answers). There is no Gemini teacher locally: the
teacher is the one the emulator's pipeline path labels unlabeled datasets with
(:func:`distillery.local.emulator._preparation.resolve_teacher`), found by the teacher
reference: ``baseTeacherModel`` (``gemini-3.1-pro``) as a local checkpoint of
``DISTILLERY_LOCAL_TEACHERS`` or the display name of a model in the local Model Registry, or
``tunedTeacherModelSource`` as a registered model's resource name. The worker process has that
teacher write a response to every prompt (its ``label-with-teacher`` step), then trains the
student on prompt and response exactly as supervised tuning does. With no such teacher the job
FAILS saying so: the emulator never invents responses. The statistics are a
``distillationDataStats.trainingDatasetStats`` (v1beta1's ``DatasetStats``: prompts only, no
output distribution).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import statistics
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from distillery._text import describe_json_value
from distillery.core.errors import DistilleryError, ObjectNotFoundError, RetryableError
from distillery.local.emulator._config import TrainerOptions
from distillery.local.emulator._contents import (
    MODEL,
    ContentError,
    TuningExample,
    count_tokens,
    parse_system_instruction,
    parse_tuning_example,
    parse_turns,
    render_prompt,
)
from distillery.local.emulator._endpoints import EndpointService
from distillery.local.emulator._job_detail import JobDetail
from distillery.local.emulator._model import EmulatedJob
from distillery.local.emulator._preparation import resolve_teacher, student_checkpoint
from distillery.local.emulator._registry import ArtifactCache, ModelRegistry, label_value
from distillery.local.emulator._runner import (
    NO_TRAINER_MESSAGE,
    DatasetSummary,
    JobFailedError,
    RunContext,
    TrainingInputs,
    split_gcs_uri,
)
from distillery.local.emulator._status import ApiError
from distillery.local.emulator._supervisor import WorkerRun, worker_request
from distillery.local.emulator._training import _upload_tree
from distillery.local.emulator._tuning import TuningRequest

logger = logging.getLogger(__name__)

#: The batch size of the local student's tuning steps.
LOCAL_BATCH_SIZE = 8
#: Where, under the training dataset's bucket, a tuning job's artifacts go.
ARTIFACTS_PREFIX = "tuning-jobs/"
#: How many examples ``userDatasetExamples`` samples.
SAMPLE_EXAMPLES = 3
#: How often the deployment's operation is polled.
DEPLOY_POLL_SECONDS = 0.05
DEPLOY_TIMEOUT_SECONDS = 120.0
HISTOGRAM_BUCKETS = 10


@dataclass(frozen=True)
class TuningJobRun:
    """A tuning job as a runner sees it."""

    name: str
    job_id: str
    project: str
    location: str
    request: TuningRequest
    #: ``tunedModelDisplayName``, or the name the service chose when it was unset.
    display_name: str
    create_time: datetime

    @property
    def artifact_directory(self) -> str:
        """``gs://<training bucket>/tuning-jobs/<job id>/``."""
        bucket, _ = split_gcs_uri(self.request.training_dataset_uri)
        return f"gs://{bucket}/{ARTIFACTS_PREFIX}{self.job_id}/"


@dataclass(frozen=True)
class TunedModelResult:
    """A successful run's ``tunedModel`` (REST shape) and its training metrics."""

    tuned_model: Mapping[str, Any]
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass
class DatasetRead:
    """One dataset as read: its example count and per-example figures."""

    uri: str
    examples: int = 0
    characters: int = 0
    input_tokens: list[int] = field(default_factory=list)
    output_tokens: list[int] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)


class TuningRunner(ABC):
    """Runs one tuning job to its end (on a worker thread)."""

    @abstractmethod
    def run(self, job: TuningJobRun, context: RunContext) -> TunedModelResult:
        """Run ``job``; ``context.report_detail`` shows ``{"tuningDataStats": ...}`` early.

        Raises:
            JobCancelledError: the run stopped because cancel was asked (job → CANCELLED).
            JobFailedError: the job FAILS with the error's code and message.
            Exception: anything else fails the job (INTERNAL) with the exception's text.
        """


class TuningTrainer(ABC):
    """The training step of :class:`TuningDataRunner`."""

    @abstractmethod
    def train(
        self,
        job: TuningJobRun,
        work: Path,
        train: DatasetRead,
        validation: DatasetRead | None,
        context: RunContext,
    ) -> TunedModelResult:
        """Train from ``work/train.jsonl`` (and ``work/eval.jsonl``), register and deploy.

        Raises:
            JobCancelledError: cancel was asked.
            JobFailedError: the job cannot finish.
        """


@dataclass(frozen=True)
class PromptExample:
    """One prompt of a distillation dataset: what the teacher answers, and its counts."""

    prompt: str
    turns: int
    characters: int
    input_tokens: int

    def as_training_line(self) -> dict[str, str]:
        """The local trainer's unlabeled ``TrainingExample`` line (the teacher labels it)."""
        return {"input_text": self.prompt}


def parse_prompt_example(data: Any) -> PromptExample:
    """A prompts-only dataset line (already JSON-decoded) as a :class:`PromptExample`.

    Raises:
        ContentError: the line breaks the shape, or ends with a ``model`` turn (an answer).
    """
    if not isinstance(data, Mapping):
        raise ContentError("line", f"must be a JSON object, got {describe_json_value(data)}")
    system_instruction = parse_system_instruction(data)
    turns = parse_turns(data.get("contents"))
    if turns[-1].role == MODEL:
        raise ContentError(
            f"contents[{len(turns) - 1}].role",
            'a prompt ends with the "user" turn the teacher answers, not a "model" answer',
        )
    prompt = render_prompt(system_instruction, turns)
    characters = sum(len(t.text) for t in turns) + len(system_instruction or "")
    return PromptExample(prompt, len(turns), characters, count_tokens(prompt))


def read_dataset(
    context: RunContext,
    uri: str,
    role: str,
    out: IO[str] | None,
    *,
    prompts_only: bool = False,
) -> DatasetRead:
    """Stream the JSONL at ``uri``, check every line, write the trainer's lines to ``out``.

    ``prompts_only``: a distillation dataset, whose lines are prompts (see the module docs).

    Raises:
        JobFailedError: NOT_FOUND (no such object), INVALID_ARGUMENT (a bad line, or no
            example), UNAVAILABLE / FAILED_PRECONDITION (it could not be read).
        JobCancelledError: cancel was asked while it streamed.
    """
    bucket, name = split_gcs_uri(uri)
    read = DatasetRead(uri)
    try:
        with context.object_store.open_read(bucket, name) as reader:
            for number, raw in context.lines(reader):
                try:
                    data = json.loads(raw)
                except ValueError as exc:
                    raise JobFailedError(
                        "INVALID_ARGUMENT", f"{role} {uri}: line {number} is not JSON: {exc}"
                    ) from None
                example: PromptExample | TuningExample
                try:
                    if prompts_only:
                        example = parse_prompt_example(data)
                    else:
                        example = parse_tuning_example(data)
                except ContentError as exc:
                    what = (
                        "a distillation prompt" if prompts_only else "a supervised tuning example"
                    )
                    raise JobFailedError(
                        "INVALID_ARGUMENT", f"{role} {uri}: line {number} is not {what}: {exc}"
                    ) from None
                read.examples += 1
                read.characters += example.characters
                read.input_tokens.append(example.input_tokens)
                if isinstance(example, TuningExample):
                    read.output_tokens.append(example.output_tokens)
                read.messages.append(example.turns)
                if len(read.samples) < SAMPLE_EXAMPLES:
                    read.samples.extend(c for c in data["contents"] if c.get("role") == "user")
                    del read.samples[SAMPLE_EXAMPLES:]
                if out is not None:
                    out.write(json.dumps(example.as_training_line(), ensure_ascii=False) + "\n")
    except ObjectNotFoundError:
        raise JobFailedError("NOT_FOUND", f"{role} {uri} does not exist") from None
    except RetryableError as exc:
        raise JobFailedError("UNAVAILABLE", f"{role} {uri} could not be read: {exc}") from exc
    except DistilleryError as exc:
        raise JobFailedError("FAILED_PRECONDITION", f"{role} {uri}: {exc}") from exc
    if read.examples == 0:
        raise JobFailedError("INVALID_ARGUMENT", f"{role} {uri} holds no examples")
    return read


def tuning_steps(examples: int, epochs: int) -> int:
    """The local student's steps for ``epochs`` passes over ``examples``."""
    return max(1, math.ceil(examples * epochs / LOCAL_BATCH_SIZE))


def _distribution(values: Sequence[int], *, supervised: bool = True) -> dict[str, Any]:
    """A ``SupervisedTuningDatasetDistribution`` of ``values`` (int64 fields as strings), or
    with ``supervised=False`` v1beta1's ``DatasetDistribution`` (a double ``sum``, no
    ``billableSum``)."""
    ordered = sorted(values)
    total = sum(ordered)

    def percentile(fraction: float) -> float:
        return float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))])

    low, high = ordered[0], ordered[-1]
    width = max(1.0, (high - low) / HISTOGRAM_BUCKETS)
    buckets: list[dict[str, float]] = []
    left = float(low)
    while left <= high:
        right = left + width
        count = sum(1 for v in ordered if left <= v < right or (right > high and v == high))
        buckets.append({"count": float(count), "left": left, "right": right})
        left = right
    sums: dict[str, Any] = (
        {"sum": str(total), "billableSum": str(total)} if supervised else {"sum": float(total)}
    )
    return {
        **sums,
        "min": float(low),
        "max": float(high),
        "mean": total / len(ordered),
        "median": float(statistics.median(ordered)),
        "p5": percentile(0.05),
        "p95": percentile(0.95),
        "buckets": buckets,
    }


def data_stats(train: DatasetRead, epochs: int) -> dict[str, Any]:
    """The job's ``tuningDataStats`` (``supervisedTuningDataStats``) for ``train``.

    Tokens are the emulator's count (:func:`~distillery.local.emulator._contents.count_tokens`);
    the billable tokens are the dataset's tokens times the epochs; no example is dropped.
    """
    tokens = sum(train.input_tokens) + sum(train.output_tokens)
    return {
        "supervisedTuningDataStats": {
            "tuningDatasetExampleCount": str(train.examples),
            "totalTuningCharacterCount": str(train.characters),
            "totalBillableCharacterCount": str(train.characters * epochs),
            "totalBillableTokenCount": str(tokens * epochs),
            "tuningStepCount": str(tuning_steps(train.examples, epochs)),
            "userInputTokenDistribution": _distribution(train.input_tokens),
            "userOutputTokenDistribution": _distribution(train.output_tokens),
            "userMessagePerExampleDistribution": _distribution(train.messages),
            "userDatasetExamples": train.samples,
            "totalTruncatedExampleCount": "0",
        }
    }


def distillation_data_stats(train: DatasetRead, epochs: int) -> dict[str, Any]:
    """A distillation job's ``tuningDataStats`` (``distillationDataStats``) for the prompts
    ``train``: v1beta1's ``DatasetStats``, counted before the teacher answers (so no output
    distribution, and the billable characters are the prompts' times the epochs)."""
    return {
        "distillationDataStats": {
            "trainingDatasetStats": {
                "tuningDatasetExampleCount": str(train.examples),
                "totalTuningCharacterCount": str(train.characters),
                "totalBillableCharacterCount": str(train.characters * epochs),
                "tuningStepCount": str(tuning_steps(train.examples, epochs)),
                "userInputTokenDistribution": _distribution(train.input_tokens, supervised=False),
                "userMessagePerExampleDistribution": _distribution(
                    train.messages, supervised=False
                ),
                "userDatasetExamples": train.samples,
            }
        }
    }


def _stats(job: TuningJobRun, train: DatasetRead) -> dict[str, Any]:
    if job.request.tuning_mode == "distillation":
        return distillation_data_stats(train, job.request.epoch_count)
    return data_stats(train, job.request.epoch_count)


class TuningDataRunner(TuningRunner):
    """The default runner: read and check the data, report the statistics, then train."""

    def __init__(self, trainer: TuningTrainer | None = None, work_root: Path | None = None) -> None:
        self.trainer = trainer
        self._work_root = work_root

    def run(self, job: TuningJobRun, context: RunContext) -> TunedModelResult:
        prompts_only = job.request.tuning_mode == "distillation"
        role = "prompt data" if prompts_only else "training data"
        if self.trainer is None or self._work_root is None:
            train = read_dataset(
                context, job.request.training_dataset_uri, role, None, prompts_only=prompts_only
            )
            context.report_detail(_stats(job, train))
            raise JobFailedError(
                "FAILED_PRECONDITION",
                f"{NO_TRAINER_MESSAGE}: the training data was read ({train.examples} examples) "
                "but nothing can tune the model; install a trainer to run tuning jobs locally",
            )
        work = self._work_root / "tuning" / f"{job.job_id}-{uuid.uuid4().hex[:8]}"
        work.mkdir(parents=True)
        try:
            request = job.request
            with (work / "train.jsonl").open("w", encoding="utf-8") as out:
                train = read_dataset(
                    context, request.training_dataset_uri, role, out, prompts_only=prompts_only
                )
            context.report_detail(_stats(job, train))
            validation = None
            if request.validation_dataset_uri:
                with (work / "eval.jsonl").open("w", encoding="utf-8") as out:
                    validation = read_dataset(
                        context, request.validation_dataset_uri, "validation data", out
                    )
            context.raise_if_cancelled()
            return self.trainer.train(job, work, train, validation, context)
        finally:
            shutil.rmtree(work, ignore_errors=True)


class LocalTuningTrainer(TuningTrainer):
    """Tunes with the local trainer in a worker process, then registers and deploys the model."""

    def __init__(
        self,
        options: TrainerOptions,
        registry: ModelRegistry,
        endpoints: EndpointService,
        cache: ArtifactCache,
    ) -> None:
        """``cache`` holds the artifacts of the registered models a distillation job's teacher
        may be (the pipeline path's cache)."""
        self.options = options
        self._registry = registry
        self._endpoints = endpoints
        self._cache = cache

    def _teacher(self, job: TuningJobRun, train: DatasetRead) -> Path:
        """The local teacher of a distillation job, found as the pipeline path finds its own.

        Raises:
            JobFailedError: FAILED_PRECONDITION, no such teacher (or its artifacts unreadable).
        """
        # The pipeline path's resolution, with the prompts as its unlabeled examples.
        inputs = TrainingInputs(
            dataset=DatasetSummary(train.uri, 0, 0, train.examples),
            evaluation=None,
            output_directory=job.artifact_directory,
            manifest_uri="",
        )
        return resolve_teacher(
            self.options,
            self._registry,
            self._cache,
            self._as_emulated(job),
            job.request.teacher,
            inputs,
            train.examples,
        )

    def train(
        self,
        job: TuningJobRun,
        work: Path,
        train: DatasetRead,
        validation: DatasetRead | None,
        context: RunContext,
    ) -> TunedModelResult:
        request = job.request
        steps = tuning_steps(train.examples, request.epoch_count)
        student = student_checkpoint(self.options, request.base_model)
        config: dict[str, Any] = {
            "train_steps": steps,
            "batch_size": LOCAL_BATCH_SIZE,
            "learning_rate_multiplier": request.learning_rate_multiplier,
            "student_checkpoint": str(student) if student else None,
            # One evaluation an epoch; the last checkpoint is the tuned model, as the service
            # deploys the last one (intermediate checkpoints are not kept locally).
            "evaluation_interval": tuning_steps(train.examples, 1) if validation else None,
            "enable_early_stopping": False,
            "enable_checkpoint_selection": False,
        }
        if self.options.num_threads is not None:
            config["num_threads"] = self.options.num_threads
        teacher = self._teacher(job, train) if request.tuning_mode == "distillation" else None
        context.raise_if_cancelled()
        detail = JobDetail(self._as_emulated(job))
        worker = worker_request(
            self.options.trainer_module,
            config,
            has_evaluation=validation is not None,
            teacher=teacher,
        )
        # The worker's progress is a pipeline jobDetail, which a TuningJob has no field for: it
        # gets a context that shares the cancel signal but reports nowhere.
        quiet = RunContext(context.object_store, context.cancel_requested)
        result = WorkerRun(work, detail, quiet, self.options.stop_grace_seconds).run(worker)
        context.raise_if_cancelled()
        return self._publish(job, context, result, steps)

    @staticmethod
    def _as_emulated(job: TuningJobRun) -> EmulatedJob:
        """The job in the shape the worker supervision reports progress on."""
        return EmulatedJob(
            name=job.name,
            job_id=job.job_id,
            project=job.project,
            location=job.location,
            display_name=job.display_name,
            template_uri="",
            output_directory=job.artifact_directory,
            parameters={},
            create_time=job.create_time,
            labels=dict(job.request.labels),
        )

    def _publish(
        self, job: TuningJobRun, context: RunContext, result: Mapping[str, Any], steps: int
    ) -> TunedModelResult:
        """Upload the model, register it (version 1), create its endpoint, deploy it there."""
        request = job.request
        output = job.artifact_directory
        bucket, prefix = split_gcs_uri(output)
        files = _upload_tree(
            context.object_store, Path(result["modelDir"]), bucket, f"{prefix}model/"
        )
        metrics = {str(k): float(v) for k, v in result["metrics"].items()}
        labels = {
            "distillery-tuning-job": label_value(job.job_id),
            "distillery-base-model": label_value(request.base_model),
        }
        for key, value in request.labels.items():
            labels.setdefault(key, value)
        model = self._registry.register(
            project=job.project,
            location=job.location,
            display_name=job.display_name,
            artifact_uri=f"{output}model/",
            files=files,
            labels=labels,
            description=f"Tuned from {request.base_model} by {job.name}",
            metadata={
                "metrics": metrics,
                "tuningJob": job.name,
                "baseModel": request.base_model,
                "trainingDatasetUri": request.training_dataset_uri,
                "validationDatasetUri": request.validation_dataset_uri or None,
                "adapterSize": request.adapter_size or None,
                "epochCount": request.epoch_count,
                "teacherModel": request.teacher or None,
            },
        )
        context.raise_if_cancelled()
        endpoint = self._deploy(job, model.name, model.display_name, request.labels, context)
        tuned_model = {
            "model": f"{model.name}@1",
            "endpoint": endpoint,
            "checkpoints": [
                {
                    "checkpointId": "1",
                    "epoch": str(request.epoch_count),
                    "step": str(result.get("stepsRun", steps)),
                    "endpoint": endpoint,
                }
            ],
        }
        return TunedModelResult(tuned_model, metrics)

    def _deploy(
        self,
        job: TuningJobRun,
        model: str,
        display_name: str,
        labels: Mapping[str, str],
        context: RunContext,
    ) -> str:
        """A new endpoint named ``display_name`` serving ``model`` with all the traffic.

        Raises:
            JobFailedError: INTERNAL, the endpoint could not be created or the deployment failed.
            JobCancelledError: cancel was asked while it deployed.
        """
        endpoints = self._endpoints
        try:
            created = endpoints.create(
                job.project, job.location, None, {"displayName": display_name, "labels": labels}
            )
            endpoint = str(created["response"]["name"])
            operation = endpoints.deploy_model(
                job.project,
                job.location,
                endpoint.rsplit("/", 1)[-1],
                {
                    "deployedModel": {"model": model, "displayName": display_name},
                    "trafficSplit": {"0": 100},
                },
            )
            deadline = time.monotonic() + DEPLOY_TIMEOUT_SECONDS
            while not operation.get("done"):
                if time.monotonic() > deadline:
                    raise JobFailedError(
                        "INTERNAL", f"deploying {model} to {endpoint} did not finish in time"
                    )
                context.raise_if_cancelled()
                time.sleep(DEPLOY_POLL_SECONDS)
                operation = endpoints.get_operation(str(operation["name"]))
        except ApiError as exc:
            raise JobFailedError(
                "INTERNAL", f"the tuned model {model} could not be deployed: {exc.message}"
            ) from exc
        if operation.get("error"):
            raise JobFailedError(
                "INTERNAL",
                f"deploying the tuned model {model} to {endpoint} failed: "
                f"{operation['error'].get('message')}",
            )
        logger.info("tuned model deployed", extra={"model": model, "endpoint": endpoint})
        return endpoint
