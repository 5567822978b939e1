"""The Vertex AI emulator of the local stack trains with the real trainer, end to end.

The stack's own emulator process (``python -m distillery.local.emulator``, trainer installed) reads
the data from fake-gcs-server, trains in a worker process, writes the artifacts back, registers
the model and deploys it on an endpoint of its own; the official clients then deploy it to
another endpoint and ask both for predictions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import (
    DeployedModel,
    Endpoint,
    EndpointServiceClient,
    ModelServiceClient,
    PipelineJob,
    PipelineServiceClient,
    PredictionServiceClient,
)
from google.protobuf import json_format, struct_pb2

from distillery.adapters import GcsObjectStore
from distillery.adapters.vertex import VertexPipelineAdapter
from distillery.core.training_metrics import read_training_metrics
from distillery.local.example_data import Example, generate
from tests.helpers import jsonl, wait_for

pytestmark = pytest.mark.integration

REGION = "us-central1"
TERMINAL = ("PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED")
#: The quality target of the example task, through the emulator.
TARGET_EXACT_MATCH = 0.95


class Vertex:
    """The official clients, pointed at the stack's emulator."""

    def __init__(self, stack: Any) -> None:
        options = {"api_endpoint": stack.stack.vertex_url}
        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        kwargs: dict[str, Any] = {
            "transport": "rest",
            "credentials": credentials,
            "client_options": options,
        }
        self.project = stack.project
        self.parent = f"projects/{stack.project}/locations/{REGION}"
        self.pipelines = PipelineServiceClient(**kwargs)
        self.models = ModelServiceClient(**kwargs)
        self.endpoints = EndpointServiceClient(**kwargs)
        self.prediction = PredictionServiceClient(**kwargs)

    def cancel_leftovers(self) -> None:
        """Cancel jobs earlier tests left running: one job trains at a time."""
        for job in self.pipelines.list_pipeline_jobs(parent=self.parent):
            if job.state.name not in TERMINAL and job.state.name != "PIPELINE_STATE_CANCELLING":
                self.pipelines.cancel_pipeline_job(name=job.name)
        for job in self.pipelines.list_pipeline_jobs(parent=self.parent):
            self.wait(job.name, timeout=30)

    def wait(
        self, name: str, until: Callable[[PipelineJob], bool] | None = None, timeout: float = 60
    ) -> PipelineJob:
        """The job once ``until`` holds for it (default: once it is in a terminal state); a
        timeout names the last state seen."""
        seen: list[PipelineJob] = []

        def probe() -> PipelineJob | None:
            job = self.pipelines.get_pipeline_job(name=name)
            seen[:] = [job]
            return job if (until(job) if until else job.state.name in TERMINAL) else None

        try:
            job: PipelineJob = wait_for(probe, timeout=timeout, interval=0.25, what=name)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last state {seen[-1].state.name}") from None
        return job

    def create(self, stack: Any, job_id: str, **parameters: Any) -> PipelineJob:
        values = {"project": stack.project, "model_display_name": job_id, **parameters}
        body = {
            "displayName": job_id,
            "runtimeConfig": {
                "gcsOutputDirectory": f"gs://{stack.bucket}/pipeline-root",
                "parameterValues": values,
            },
            "templateUri": stack.settings.template_uri,
        }
        return self.pipelines.create_pipeline_job(
            parent=self.parent,
            pipeline_job=PipelineJob.from_json(json.dumps(body)),
            pipeline_job_id=job_id,
        )

    def serve(self, model: str, display_name: str) -> str:
        endpoint = self.endpoints.create_endpoint(
            parent=self.parent, endpoint=Endpoint(display_name=display_name)
        ).result(timeout=10)
        self.endpoints.deploy_model(
            endpoint=endpoint.name,
            deployed_model=DeployedModel(model=model),
            traffic_split={"0": 100},
        ).result(timeout=10)
        return str(endpoint.name)

    def predict(self, endpoint: str, prompts: list[str]) -> list[str]:
        instances = []
        for prompt in prompts:
            value = struct_pb2.Value()
            json_format.ParseDict({"prompt": prompt}, value)
            instances.append(value)
        answer = self.prediction.predict(endpoint=endpoint, instances=instances)
        return [str(p["content"]) for p in answer.predictions]


def _upload(stack: Any, name: str, examples: list[Example]) -> str:
    stack.upload(name, jsonl(examples))
    return f"gs://{stack.bucket}/{name}"


def _task(job: PipelineJob, name: str) -> Any:
    [task] = [t for t in job.job_detail.task_details if t.task_name == name]
    return task


def _metadata(message: Any) -> dict[str, Any]:
    return dict(message.metadata.items()) if message.metadata else {}


@pytest.fixture
def vertex(stack: Any) -> Vertex:
    clients = Vertex(stack)
    clients.cancel_leftovers()
    return clients


def test_emulator_training_lifecycle_on_the_local_stack(stack: Any, vertex: Vertex) -> None:
    train, evaluation = generate(200, 20)
    dataset = _upload(stack, "validated/life/news.jsonl", train)
    eval_uri = _upload(stack, "validated/life/news.eval.jsonl", evaluation)
    created = vertex.create(
        stack,
        "life-1",
        dataset_uri=dataset,
        evaluation_data_uri=eval_uri,
        evaluation_interval=10,
        train_steps=40,
    )

    def training(job: PipelineJob) -> bool:
        if job.state.name in TERMINAL or job.job_detail is None:
            return job.state.name in TERMINAL
        trainer = [t for t in job.job_detail.task_details if t.task_name == "distillation-trainer"]
        return bool(trainer) and _metadata(trainer[0].execution).get("progress:step", 0) > 0

    running = vertex.wait(created.name, training, timeout=120)
    job = vertex.wait(created.name, timeout=240)

    assert running.state.name == "PIPELINE_STATE_RUNNING"
    assert _metadata(_task(running, "distillation-trainer").execution)["progress:train_steps"] == 40
    assert job.state.name == "PIPELINE_STATE_SUCCEEDED", job.error.message
    trainer_outputs = _task(job, "distillation-trainer").outputs
    assert "metrics" not in trainer_outputs  # no system.Metrics: as the real pipelines
    [tensorboard] = trainer_outputs["tensorboard_metrics"].artifacts
    assert tensorboard.uri == f"gs://{stack.bucket}/pipeline-root/life-1/tensorboard/"
    info = VertexPipelineAdapter(stack.project, api_endpoint=stack.stack.vertex_url).get(
        created.name
    )
    store = GcsObjectStore(project=stack.project)
    values = read_training_metrics(store, info).final
    for name in (
        "train_total_loss",
        "train_fraction_of_correct_next_step_preds",
        "train_num_predictions",
        "eval_total_loss",
        "eval_fraction_of_correct_next_step_preds",
        "eval_num_predictions",
    ):
        assert isinstance(values[name], float), name
    objects = {
        b.name
        for b in stack.storage_client().list_blobs(stack.bucket, prefix="pipeline-root/life-1/")
    }
    assert "pipeline-root/life-1/metrics.jsonl" in objects
    assert any(n.startswith("pipeline-root/life-1/model/") for n in objects)
    assert any(n.startswith("pipeline-root/life-1/tensorboard/") for n in objects)
    model_name = _task(job, "upload-llm-model").execution.metadata["output:model_resource_name"]
    model = vertex.models.get_model(name=model_name)
    assert model.display_name == "life-1"
    assert model.artifact_uri == f"gs://{stack.bucket}/pipeline-root/life-1/model/"

    # As the real pipeline does, the job deployed its model on an endpoint of its own.
    own = _task(job, "deploy-llm-model").execution.metadata["output:endpoint_resource_name"]
    served = vertex.endpoints.get_endpoint(name=own)
    assert served.display_name == "life-1"
    assert [d.model for d in served.deployed_models] == [model_name]
    assert dict(served.traffic_split) == {served.deployed_models[0].id: 100}
    own_answers = vertex.predict(own, [e.input_text for e in evaluation[:5]])

    endpoint = vertex.serve(model_name, "life-1")
    answers = vertex.predict(endpoint, [e.input_text for e in evaluation[:5]])

    assert len(answers) == 5 and all(isinstance(a, str) for a in answers)
    assert own_answers == answers  # the same model, decoded greedily


@pytest.mark.timeout(600)  # it waits up to 420 s for the job
def test_emulator_training_reaches_the_quality_target(stack: Any, vertex: Vertex) -> None:
    train, evaluation = generate(1000, 100)
    dataset = _upload(stack, "validated/quality/news.jsonl", train)
    eval_uri = _upload(stack, "validated/quality/news.eval.jsonl", evaluation)
    started = time.monotonic()
    created = vertex.create(
        stack, "quality-1", dataset_uri=dataset, evaluation_data_uri=eval_uri
    )  # SPEC defaults: 300 steps, GPU (batch 8), early stopping, checkpoint selection.

    job = vertex.wait(created.name, timeout=420)

    assert job.state.name == "PIPELINE_STATE_SUCCEEDED", job.error.message
    model_name = _task(job, "upload-llm-model").execution.metadata["output:model_resource_name"]
    endpoint = vertex.serve(model_name, "quality-1")
    answers = vertex.predict(endpoint, [e.input_text for e in evaluation])
    exact = sum(a == e.output_text for a, e in zip(answers, evaluation, strict=True))
    assert exact / len(evaluation) >= TARGET_EXACT_MATCH, (
        f"{exact}/{len(evaluation)} exact after {time.monotonic() - started:.0f} s"
    )
