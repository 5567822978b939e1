"""The trainer-backed step of a job: data, teacher, a worker process, artifacts, the registry.

:class:`LocalTrainer` plugs into :class:`~distillery.local.emulator.DatasetRunner` (which has
already read and counted the data and written the manifest). It

1. prepares the job (:mod:`distillery.local.emulator._preparation`): streams the dataset and eval
   set from the bucket into a local work directory, resolves the student's checkpoint and, when
   some training example has no ``output_text``, the teacher — or FAILS the job
   (FAILED_PRECONDITION): it never invents labels; and maps the job's parameters to a
   ``TrainingConfig``;
2. trains in a separate worker process (:mod:`distillery.local.emulator._supervisor`): a cancel
   terminates it (then kills it after a grace period), a crash fails the job with the reason;
3. uploads the model, metrics and TensorBoard files to ``<gcsOutputDirectory>/<job id>/`` and
   registers the model in the Model Registry, labelled as the tuning pipelines label tuned models
   (``google-vertex-llm-tuning-base-model-id``, ``google-vertex-llm-tuning-job-id``); the tuning
   metrics are exposed as the real pipelines expose them: only in the event files of the
   ``tensorboard_metrics`` artifact;
4. as the real pipeline does (its ``deploy-llm-model`` task), creates a NEW endpoint whose
   display name is the job's ``model_display_name`` and deploys the model there with all the
   traffic, waiting for the deployment to finish: the job is SUCCEEDED only once that endpoint
   answers. Every job gets its own endpoint, even when display names repeat.

The template's parameters that mean something locally are used: ``max_context_length`` picks the
batch size (:func:`~distillery.local.emulator._preparation.batch_size`), and
``evaluation_output_root_dir``, with eval data, receives the evaluations' metrics
(``<evaluation_output_root_dir>/<job id>/evaluation_metrics.jsonl``). ``temperature`` is the
teacher's sampling temperature: the local teacher decodes greedily, which is temperature 0 (the
template's default), so another value is recorded on the ``label-with-teacher`` task but cannot
change the labels. ``api_endpoint``, ``version`` and ``tpu_training_skip_cmek`` are about where
and how the real pipeline runs (its UI endpoint, the component version, CMEK on the TPU pod);
nothing local has them, so they are only recorded, in the job manifest's parameters.

Throughout, the job's ``jobDetail`` shows its tasks (:mod:`distillery.local.emulator._job_detail`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from distillery.core.ports import ObjectStore
from distillery.core.training_metrics import TENSORBOARD_OUTPUT
from distillery.local.emulator._config import TrainerOptions
from distillery.local.emulator._endpoints import EndpointService
from distillery.local.emulator._job_detail import (
    DEPLOY_TASK,
    LABEL_TASK,
    PREPARE_TASK,
    TRAIN_TASK,
    UPLOAD_TASK,
    JobDetail,
    artifact,
)
from distillery.local.emulator._model import EmulatedJob
from distillery.local.emulator._preparation import (
    download_examples,
    resolve_teacher,
    student_checkpoint,
    training_config,
)
from distillery.local.emulator._registry import (
    ArtifactCache,
    ModelRegistry,
    RegisteredModel,
    label_value,
)
from distillery.local.emulator._runner import (
    JobCancelledError,
    JobFailedError,
    RunContext,
    RunResult,
    Trainer,
    TrainingInputs,
    split_gcs_uri,
)
from distillery.local.emulator._supervisor import WorkerRun, worker_request
from distillery.local.emulator._worker import LABELS_FILE

logger = logging.getLogger(__name__)

#: The object ``evaluation_output_root_dir`` receives for each job with eval data.
EVALUATION_METRICS_FILE = "evaluation_metrics.jsonl"
#: The label the Vertex AI SDK finds a tuned model's base model by (``text-bison-002`` for
#: ``text-bison@002``: ``TextGenerationModel.get_tuned_model`` and ``list_tuned_model_names``).
BASE_MODEL_LABEL = "google-vertex-llm-tuning-base-model-id"
#: The label naming the tuning job a tuned model (and its endpoint) came from.
TUNING_JOB_LABEL = "google-vertex-llm-tuning-job-id"
#: How often the deploy step polls its deployment operation.
DEPLOY_POLL_SECONDS = 0.05
#: How long the deploy step waits for its deployment before the job FAILS.
DEPLOY_TIMEOUT_SECONDS = 300.0


class LocalTrainer(Trainer):
    """Trains jobs with the local trainer in worker processes and registers the models."""

    name = "distillery.local.trainer"

    def __init__(
        self,
        options: TrainerOptions,
        registry: ModelRegistry,
        cache: ArtifactCache,
        root: Path,
        endpoints: EndpointService,
    ) -> None:
        self.options = options
        self.name = options.trainer_module
        self._registry = registry
        self._cache = cache
        self._root = root
        self._endpoints = endpoints

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
        except JobFailedError as exc:
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
        unlabeled = download_examples(context, inputs.dataset.uri, work / "train.jsonl")
        if inputs.evaluation is not None:
            download_examples(context, inputs.evaluation.uri, work / "eval.jsonl")
        student = student_checkpoint(self.options, str(parameters["student_model_reference"]))
        teacher_reference = str(parameters["teacher_model_reference"])
        teacher = (
            resolve_teacher(
                self.options, self._registry, self._cache, job, teacher_reference, inputs, unlabeled
            )
            if unlabeled
            else None
        )
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
                **{
                    "input:teacher_model_reference": teacher_reference,
                    "input:prompts": unlabeled,
                    "input:temperature": parameters.get("temperature"),
                },
            )
        detail.set_metadata(
            TRAIN_TASK,
            **{f"input:{k}": v for k, v in config.items() if k != "student_checkpoint"},
            **{
                "input:student_model_reference": str(parameters["student_model_reference"]),
                "input:max_context_length": parameters.get("max_context_length") or None,
            },
        )
        context.report_detail(detail.render())
        request = worker_request(
            self.options.trainer_module,
            config,
            has_evaluation=inputs.evaluation is not None,
            teacher=teacher,
        )
        if not unlabeled:
            detail.set_state(TRAIN_TASK, "RUNNING")
        result = WorkerRun(work, detail, context, self.options.stop_grace_seconds).run(request)
        detail.set_state(TRAIN_TASK, "SUCCEEDED")
        context.report_detail(detail.render())
        return self._publish(job, inputs, context, detail, result, teacher_reference, teacher)

    def _publish(
        self,
        job: EmulatedJob,
        inputs: TrainingInputs,
        context: RunContext,
        detail: JobDetail,
        result: Mapping[str, Any],
        teacher_reference: str,
        teacher: Path | None,
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
        evaluation_output = _upload_evaluation_metrics(job, inputs, store, result)
        context.raise_if_cancelled()
        parameters = job.parameters
        student = str(parameters["student_model_reference"])
        model = self._registry.register(
            project=job.project,
            location=str(parameters.get("location", job.location)),
            display_name=str(parameters["model_display_name"]),
            artifact_uri=f"{output}model/",
            files=model_files,
            labels=_model_labels(job, inputs, student, teacher_reference if teacher else None),
            description=f"Distilled from {teacher_reference} into {student} by {job.name}",
            pipeline_job=job.name,
            # No metrics here: the real tuning pipelines set none on the model (their figures
            # are only in the TensorBoard event files of the trainer's tensorboard_metrics).
            metadata={
                "datasetUri": inputs.dataset.uri,
                "evaluationDataUri": inputs.evaluation.uri if inputs.evaluation else None,
                "studentModelReference": student,
                "teacherModelReference": teacher_reference,
                "selectedStep": result["selectedStep"],
            },
        )
        outputs = {
            "model": artifact(job, "model", "system.Model", f"{output}model/"),
            # As the trainer tasks of Google's LLM pipelines declare it (kubeflow/pipelines,
            # google_cloud_pipeline_components/_implementation/llm/supervised_fine_tuner.py:
            # ``tensorboard_metrics: dsl.Output[dsl.Artifact]``): the directory of the event
            # files, and no system.Metrics artifact beside it.
            TENSORBOARD_OUTPUT: artifact(
                job, TENSORBOARD_OUTPUT, "system.Artifact", f"{output}tensorboard/"
            ),
        }
        if evaluation_output is not None:
            outputs["evaluation"] = artifact(
                job, "evaluation", "system.Artifact", evaluation_output
            )
        detail.set_outputs(TRAIN_TASK, outputs)
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
        # The tuning pipelines output the uploaded version's name (``models/M@1``).
        detail.set_metadata(UPLOAD_TASK, **{"output:model_resource_name": model.version_name})
        detail.set_state(UPLOAD_TASK, "SUCCEEDED")
        context.report_detail(detail.render())
        self._deploy(job, model, context, detail)
        return RunResult.succeeded(detail.render())

    def _deploy(
        self, job: EmulatedJob, model: RegisteredModel, context: RunContext, detail: JobDetail
    ) -> None:
        """The ``deploy-llm-model`` task: a new endpoint named after the model, all traffic to it.

        Raises:
            JobFailedError: INTERNAL, the deployment failed or did not finish in time.
            JobCancelledError: cancel was asked while the deployment ran.
        """
        detail.set_state(DEPLOY_TASK, "RUNNING")
        detail.set_metadata(
            DEPLOY_TASK,
            **{
                "input:model_resource_name": model.version_name,
                "input:display_name": model.display_name,
                "input:location": model.location,
            },
        )
        context.report_detail(detail.render())
        labels = {TUNING_JOB_LABEL: label_value(job.job_id)}
        created = self._endpoints.create(
            model.project,
            model.location,
            None,
            {"displayName": model.display_name, "labels": labels},
        )
        endpoint = str(created["response"]["name"])
        operation = self._endpoints.deploy_model(
            model.project,
            model.location,
            endpoint.rsplit("/", 1)[-1],
            {
                "deployedModel": {"model": model.version_name, "displayName": model.display_name},
                "trafficSplit": {"0": 100},
            },
        )
        deadline = time.monotonic() + DEPLOY_TIMEOUT_SECONDS
        while not operation.get("done"):
            context.raise_if_cancelled()
            if time.monotonic() > deadline:
                raise JobFailedError(
                    "INTERNAL",
                    f"deploying {model.version_name} to {endpoint} did not finish within "
                    f"{DEPLOY_TIMEOUT_SECONDS:g} s",
                )
            time.sleep(DEPLOY_POLL_SECONDS)
            operation = self._endpoints.get_operation(str(operation["name"]))
        if operation.get("error"):
            raise JobFailedError(
                "INTERNAL",
                f"deploying {model.version_name} to {endpoint} failed: "
                f"{operation['error'].get('message', operation['error'])}",
            )
        logger.info(
            "the pipeline deployed its model",
            extra={"pipeline_job": job.name, "model": model.version_name, "endpoint": endpoint},
        )
        detail.set_metadata(DEPLOY_TASK, **{"output:endpoint_resource_name": endpoint})
        detail.set_state(DEPLOY_TASK, "SUCCEEDED")


def _model_labels(
    job: EmulatedJob, inputs: TrainingInputs, student: str, teacher: str | None
) -> dict[str, str]:
    """The registered model's labels: where it came from, then the job's own (never overriding)."""
    labels = {
        # As the tuning pipelines label a tuned model: the SDK needs the base model's id.
        BASE_MODEL_LABEL: label_value(student.rsplit("/", 1)[-1].replace("@", "-")),
        TUNING_JOB_LABEL: label_value(job.job_id),
        "distillery-pipeline-job": label_value(job.job_id),
        "distillery-dataset": label_value(split_gcs_uri(inputs.dataset.uri)[1]),
        "distillery-dataset-generation": str(inputs.dataset.generation),
        "distillery-student": label_value(student),
    }
    if teacher is not None:
        labels["distillery-teacher"] = label_value(teacher)
    for key, value in job.labels.items():
        clean = label_value(key)
        if clean[:1].isalpha() and clean not in labels:
            labels[clean] = label_value(value)
    return labels


def _upload_evaluation_metrics(
    job: EmulatedJob, inputs: TrainingInputs, store: ObjectStore, result: Mapping[str, Any]
) -> str | None:
    """With eval data and ``evaluation_output_root_dir``, write the metrics lines of the
    evaluations (those with ``eval_*`` values) to ``<root>/<job id>/``; the object's URI."""
    root = str(job.parameters.get("evaluation_output_root_dir", ""))
    if not root or inputs.evaluation is None:
        return None  # Without eval data there is no evaluation output to write.
    lines = Path(result["metricsPath"]).read_text(encoding="utf-8").splitlines()
    evaluations = [line for line in lines if line.strip() and _has_eval_metrics(line)]
    uri = f"{root.rstrip('/')}/{job.job_id}/{EVALUATION_METRICS_FILE}"
    bucket, name = split_gcs_uri(uri)
    data = "".join(line + "\n" for line in evaluations).encode()
    store.write_bytes(bucket, name, data, content_type="application/jsonl")
    return uri


def _has_eval_metrics(line: str) -> bool:
    record = json.loads(line)
    return isinstance(record, dict) and any(str(k).startswith("eval_") for k in record)


def _files(root: Path) -> Iterator[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file())


def _upload_tree(store: ObjectStore, root: Path, bucket: str, prefix: str) -> tuple[str, ...]:
    """Upload every file under ``root`` to ``prefix``; returns the relative names."""
    names = []
    if root.is_dir():
        for path in _files(root):
            relative = path.relative_to(root).as_posix()
            _upload_file(store, path, bucket, prefix + relative)
            names.append(relative)
    return tuple(names)


def _upload_file(store: ObjectStore, path: Path, bucket: str, name: str) -> None:
    content_type = "application/json" if path.suffix == ".json" else "application/octet-stream"
    if path.suffix == ".jsonl":
        content_type = "application/jsonl"
    store.write_bytes(bucket, name, path.read_bytes(), content_type=content_type)
