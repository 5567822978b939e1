"""The local Vertex AI emulator, driven through the official REST client (and raw HTTP).

Each test starts the emulator in-process on a free port with the in-memory storage and Pub/Sub
fakes; nothing leaves the loopback interface.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import PipelineJob
from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient

import distillery.local.emulator as emulator
from distillery.core.settings import Settings
from distillery.fakes import InMemoryObjectStore, InMemoryPublisher
from distillery.local.emulator import (
    EmulatedJob,
    EmulatorServer,
    JobRunner,
    RunContext,
    RunResult,
    Trainer,
    TrainingInputs,
    create_server,
)
from distillery.local.example_data import Example
from tests.helpers import jsonl, wait_for

PROJECT = "p-1"
BUCKET = "bkt"
PARENT = f"projects/{PROJECT}/locations/us-central1"
DATASET = f"gs://{BUCKET}/validated/0f3a/news.jsonl"
EVAL = f"gs://{BUCKET}/validated/9c1b/news.eval.jsonl"
OUTPUT = f"gs://{BUCKET}/pipeline-root"
KEY = "projects/p-1/locations/us-central1/keyRings/ring/cryptoKeys/key"
SETTINGS = Settings(project=PROJECT, bucket=BUCKET)
TERMINAL = ("PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED")


def _examples(count: int) -> list[Example]:
    return [Example(f"Classify: text {i}", "business") for i in range(count)]


def request_body(location: str = "us-central1", **parameters: Any) -> dict[str, Any]:
    """A valid create body for a pipeline in ``location``; ``parameters`` override."""
    values: dict[str, Any] = {
        "project": PROJECT,
        "model_display_name": "news-distilled",
        "dataset_uri": DATASET,
        "location": location,
        "accelerator_type": "GPU",
        "teacher_model_reference": "text-unicorn@001",
        "student_model_reference": "text-bison@002",
        "train_steps": 300,
        "learning_rate_multiplier": 1.0,
    }
    values.update(parameters)
    return {
        "displayName": "news-distillation",
        "runtimeConfig": {
            "gcsOutputDirectory": OUTPUT,
            "parameterValues": values,
        },
        "templateUri": SETTINGS.template_uri,
    }


class BlockingRunner(JobRunner):
    """Stays RUNNING until released or cancelled; reports each start on ``started``."""

    def __init__(self) -> None:
        self.started: queue.Queue[str] = queue.Queue()
        self.release = threading.Event()

    def run(self, job: EmulatedJob, context: RunContext) -> RunResult:
        self.started.put(job.job_id)
        while not self.release.wait(0.01):
            context.raise_if_cancelled()
        return RunResult.succeeded()


class ExplodingRunner(JobRunner):
    def run(self, job: EmulatedJob, context: RunContext) -> RunResult:
        raise RuntimeError(f"boom in {job.job_id}")


class RecordingTrainer(Trainer):
    name = "recording"

    def __init__(self) -> None:
        self.inputs: list[TrainingInputs] = []

    def train(self, job: EmulatedJob, inputs: TrainingInputs, context: RunContext) -> RunResult:
        self.inputs.append(inputs)
        return RunResult.succeeded({"taskDetails": [{"taskName": "train", "state": "SUCCEEDED"}]})


# --- Fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def store() -> InMemoryObjectStore:
    objects = InMemoryObjectStore()
    objects.put(BUCKET, "validated/0f3a/news.jsonl", jsonl(_examples(24)))
    objects.put(BUCKET, "validated/9c1b/news.eval.jsonl", jsonl(_examples(12)))
    return objects


@pytest.fixture
def publisher() -> InMemoryPublisher:
    return InMemoryPublisher()


@pytest.fixture
def start_server(
    store: InMemoryObjectStore, publisher: InMemoryPublisher
) -> Iterator[Callable[..., EmulatorServer]]:
    servers: list[EmulatorServer] = []

    def start(**kwargs: Any) -> EmulatorServer:
        server = create_server(SETTINGS, object_store=store, publisher=publisher, **kwargs)
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop(timeout=5)


@pytest.fixture
def server(start_server: Callable[..., EmulatorServer]) -> EmulatorServer:
    return start_server()


def client_for(server: EmulatorServer) -> PipelineServiceClient:
    return PipelineServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": server.url},
    )


@pytest.fixture
def client(server: EmulatorServer) -> PipelineServiceClient:
    return client_for(server)


def create(
    client: PipelineServiceClient,
    body: dict[str, Any] | None = None,
    job_id: str | None = None,
    parent: str = PARENT,
) -> PipelineJob:
    job = PipelineJob.from_json(json.dumps(body or request_body()))
    return client.create_pipeline_job(parent=parent, pipeline_job=job, pipeline_job_id=job_id)


def settled(
    client: PipelineServiceClient, name: str, states: tuple[str, ...] = TERMINAL
) -> PipelineJob:
    """The job ``name`` once it is in one of ``states`` (a terminal one by default)."""

    def probe() -> PipelineJob | None:
        job = client.get_pipeline_job(name=name)
        return job if job.state.name in states else None

    job: PipelineJob = wait_for(probe, timeout=5, interval=0.01, what=f"{name} in {states}")
    return job


def raw(
    server: EmulatorServer, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        server.url + path, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def events(server: EmulatorServer, publisher: InMemoryPublisher) -> list[dict[str, Any]]:
    assert server.service.flush_events(5)
    return [json.loads(m.data) for m in publisher.on(SETTINGS.job_events_topic)]


def states_of(entries: list[dict[str, Any]], job_id: str) -> list[str]:
    return [
        e["jsonPayload"]["state"]
        for e in entries
        if e["resource"]["labels"]["pipeline_job_id"] == job_id
    ]


# --- The REST resource ----------------------------------------------------------------------------


def test_emulator_create_get_list(client: PipelineServiceClient, start_server: Any) -> None:
    created = create(client, job_id="news-1")

    assert created.name == f"{PARENT}/pipelineJobs/news-1"
    assert created.state.name == "PIPELINE_STATE_PENDING"
    assert created.display_name == "news-distillation"
    assert created.template_uri == SETTINGS.template_uri
    assert created.template_metadata.version == "v1.0.0"
    assert created.runtime_config.gcs_output_directory == OUTPUT
    assert created.runtime_config.parameter_values["dataset_uri"] == DATASET
    assert created.create_time is not None
    fetched = client.get_pipeline_job(name=created.name)
    assert fetched.name == created.name
    assert [j.name for j in client.list_pipeline_jobs(parent=PARENT)] == [created.name]
    assert list(client.list_pipeline_jobs(parent="projects/p-1/locations/europe-west4")) == []


def test_emulator_create_generates_an_id_when_absent(client: PipelineServiceClient) -> None:
    created = create(client)

    job_id = created.name.rsplit("/", 1)[-1]
    assert re.fullmatch(r"[a-z][-a-z0-9]{0,127}", job_id)
    assert client.get_pipeline_job(name=created.name).name == created.name


def test_emulator_create_same_id_twice_conflicts(client: PipelineServiceClient) -> None:
    create(client, job_id="news-1")

    with pytest.raises(gexc.Conflict) as caught:
        create(client, job_id="news-1")
    assert "already exists" in caught.value.message


def test_emulator_get_unknown_job_is_not_found(client: PipelineServiceClient) -> None:
    with pytest.raises(gexc.NotFound):
        client.get_pipeline_job(name=f"{PARENT}/pipelineJobs/nope")


def test_emulator_list_pages_and_filters(start_server: Callable[..., EmulatorServer]) -> None:
    runner = BlockingRunner()
    client = client_for(start_server(runner=runner))
    names = [create(client, job_id=f"job-{i}").name for i in range(5)]
    runner.started.get(timeout=5)  # job-0 RUNNING; the others wait PENDING (one at a time).

    pager = client.list_pipeline_jobs(request={"parent": PARENT, "page_size": 2})
    pages = list(pager.pages)
    assert [len(p.pipeline_jobs) for p in pages] == [2, 2, 1]
    assert sorted(j.name for p in pages for j in p.pipeline_jobs) == sorted(names)
    running = client.list_pipeline_jobs(
        request={"parent": PARENT, "filter": 'state="PIPELINE_STATE_RUNNING"'}
    )
    assert [j.name for j in running] == [names[0]]
    pending = client.list_pipeline_jobs(
        request={"parent": PARENT, "filter": "state=PIPELINE_STATE_PENDING AND display_name!=x"}
    )
    assert len(list(pending)) == 4
    with pytest.raises(gexc.BadRequest, match="filter"):
        list(client.list_pipeline_jobs(request={"parent": PARENT, "filter": "state OR x"}))


def test_emulator_accepts_integral_floats(
    server: EmulatorServer, client: PipelineServiceClient, store: InMemoryObjectStore
) -> None:
    # The client sends every number as a JSON float: "train_steps": 300.0.
    created = create(
        client,
        request_body(train_steps=300, evaluation_data_uri=EVAL, evaluation_interval=20.0),
        job_id="floats",
    )
    status, _ = raw(
        server,
        "POST",
        f"/v1/{PARENT}/pipelineJobs?pipelineJobId=floats-raw",
        json.dumps(request_body(train_steps=300.0)).encode(),
    )

    assert status == 200
    settled(client, created.name)
    manifest = json.loads(store.read_bytes(BUCKET, "pipeline-root/floats/job.json"))
    assert manifest["parameters"]["train_steps"] == 300
    assert manifest["parameters"]["evaluation_interval"] == 20


# --- Validation -----------------------------------------------------------------------------------


def _without(name: str) -> dict[str, Any]:
    body = request_body()
    del body["runtimeConfig"]["parameterValues"][name]
    return body


def _with_spec(body: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**body, **fields}


INVALID: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "unknown template",
        PARENT,
        _with_spec(request_body(), templateUri="https://example.com/other/v1"),
        "templateUri",
    ),
    (
        "unsupported pipeline region",
        "projects/p-1/locations/europe-north1",
        request_body(),
        "europe-north1",
    ),
    (
        "unsupported location parameter",
        PARENT,
        request_body(location="europe-north1"),
        "parameter location",
    ),
    ("unknown parameter", PARENT, request_body(batch_size=8), "batch_size"),
    ("train_steps zero", PARENT, request_body(train_steps=0), "train_steps"),
    ("train_steps fractional", PARENT, request_body(train_steps=2.5), "train_steps"),
    ("train_steps string", PARENT, request_body(train_steps="300"), "train_steps"),
    ("train_steps boolean", PARENT, request_body(train_steps=True), "train_steps"),
    (
        "learning rate zero",
        PARENT,
        request_body(learning_rate_multiplier=0),
        "learning_rate_multiplier",
    ),
    (
        "learning rate text",
        PARENT,
        request_body(learning_rate_multiplier="fast"),
        "learning_rate_multiplier",
    ),
    (
        "early stopping not boolean",
        PARENT,
        request_body(evaluation_data_uri=EVAL, enable_early_stopping="yes"),
        "enable_early_stopping",
    ),
    ("dataset not gs", PARENT, request_body(dataset_uri="/tmp/news.jsonl"), "dataset_uri"),
    (
        "eval data not gs",
        PARENT,
        request_body(evaluation_data_uri="https://x/e.jsonl"),
        "evaluation_data_uri",
    ),
    ("accelerator CPU", PARENT, request_body(accelerator_type="CPU"), "accelerator_type"),
    (
        "CMEK off us-central1",
        "projects/p-1/locations/europe-west4",
        _with_spec(request_body(location="europe-west4"), encryptionSpec={"kmsKeyName": KEY}),
        "only available in us-central1",
    ),
    (
        "CMEK with upload elsewhere",
        PARENT,
        request_body(location="europe-west4", encryption_spec_key_name=KEY),
        "model upload location in us-central1",
    ),
    (
        "CMEK with TPU",
        PARENT,
        request_body(accelerator_type="TPU", encryption_spec_key_name=KEY),
        "TPU",
    ),
    (
        "evaluation_interval without eval data",
        PARENT,
        request_body(evaluation_interval=20),
        "evaluation_interval",
    ),
    (
        "early stopping without eval data",
        PARENT,
        request_body(enable_early_stopping=True),
        "enable_early_stopping",
    ),
    (
        "checkpoint selection without eval data",
        PARENT,
        request_body(enable_checkpoint_selection="true"),
        "enable_checkpoint_selection",
    ),
    ("missing project", PARENT, _without("project"), "project is required"),
    ("missing dataset", PARENT, _without("dataset_uri"), "dataset_uri is required"),
    (
        "max_context_length not 8k or 32k",
        PARENT,
        request_body(max_context_length="16k"),
        "max_context_length",
    ),
    (
        "evaluation output not gs",
        PARENT,
        request_body(evaluation_data_uri=EVAL, evaluation_output_root_dir="/tmp/eval"),
        "evaluation_output_root_dir",
    ),
    (
        "CMEK with TPU even when TPU training skips CMEK",
        PARENT,
        request_body(
            accelerator_type="TPU", encryption_spec_key_name=KEY, tpu_training_skip_cmek=True
        ),
        "not supported with accelerator_type TPU",
    ),
    (
        "eval parameter with an empty eval data URI",
        PARENT,
        request_body(evaluation_data_uri="", evaluation_interval=20),
        "evaluation_interval needs evaluation data",
    ),
    (
        "tensorboard elsewhere",
        PARENT,
        request_body(tensorboard_resource_id="projects/p-1/locations/europe-west4/tensorboards/7"),
        "tensorboard_resource_id",
    ),
    (
        "no output directory",
        PARENT,
        {**request_body(), "runtimeConfig": {"parameterValues": {"project": PROJECT}}},
        "gcsOutputDirectory",
    ),
]


@pytest.mark.parametrize(
    ("parent", "body", "named"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_emulator_create_invalid_request_is_invalid_argument(
    client: PipelineServiceClient, parent: str, body: dict[str, Any], named: str
) -> None:
    with pytest.raises(gexc.BadRequest) as caught:
        create(client, body, job_id="bad", parent=parent)

    assert named in caught.value.message
    assert list(client.list_pipeline_jobs(parent=parent)) == []


# The template's parameters, types and defaults: the distillation/v1.0.0 pipeline spec of
# googleapis/python-aiplatform's tests/unit/aiplatform/test_language_models.py, written out here
# on their own so that a change to the emulator's table shows.
TEMPLATE_DEFAULTS: dict[str, Any] = {
    "accelerator_type": "GPU",
    "api_endpoint": "aiplatform.googleapis.com/ui",
    "enable_checkpoint_selection": "default",
    "enable_early_stopping": True,
    "encryption_spec_key_name": "",
    "evaluation_data_uri": "",
    "evaluation_interval": 20,  # The seed documentation's 20, not the template's 100.
    "evaluation_output_root_dir": "",
    "learning_rate_multiplier": 1.0,
    "location": "us-central1",  # The template's "": the pipeline region.
    "max_context_length": "",
    "model_display_name": "distilled-student-model",
    "student_model_reference": "text-bison@002",
    "teacher_model_reference": "text-unicorn@001",
    "temperature": 0.0,
    "tensorboard_resource_id": "",
    "tpu_training_skip_cmek": False,
    "train_steps": 300,
    "version": "latest",
}


def _manifest_parameters(
    client: PipelineServiceClient, store: InMemoryObjectStore, body: dict[str, Any], job_id: str
) -> dict[str, Any]:
    """The normalised parameters of an accepted job (from the manifest its run writes)."""
    settled(client, create(client, body, job_id=job_id).name)
    manifest = json.loads(store.read_bytes(BUCKET, f"pipeline-root/{job_id}/job.json"))
    parameters: dict[str, Any] = manifest["parameters"]
    return parameters


def test_emulator_omitted_parameters_take_the_template_defaults(
    client: PipelineServiceClient, store: InMemoryObjectStore
) -> None:
    body = request_body()
    body["runtimeConfig"]["parameterValues"] = {"project": PROJECT, "dataset_uri": DATASET}

    parameters = _manifest_parameters(client, store, body, "defaults")

    assert parameters == {"project": PROJECT, "dataset_uri": DATASET, **TEMPLATE_DEFAULTS}
    manifest = json.loads(store.read_bytes(BUCKET, "pipeline-root/defaults/job.json"))
    assert manifest["evaluationDataset"] is None


def test_emulator_evaluation_defaults_with_eval_data_follow_the_seed(
    client: PipelineServiceClient, store: InMemoryObjectStore
) -> None:
    body = request_body(evaluation_data_uri=EVAL)

    parameters = _manifest_parameters(client, store, body, "eval-defaults")

    assert (
        parameters["evaluation_interval"],
        parameters["enable_early_stopping"],
        parameters["enable_checkpoint_selection"],
    ) == (20, True, "default")


@pytest.mark.parametrize(
    ("name", "sent", "kept"),
    [
        ("temperature", 0.7, 0.7),
        ("temperature", 1, 1.0),
        ("max_context_length", "32k", "32k"),
        ("max_context_length", "8k", "8k"),
        ("tpu_training_skip_cmek", True, True),
        ("api_endpoint", "aiplatform.googleapis.com/ui-eu", "aiplatform.googleapis.com/ui-eu"),
        ("version", "v1.0.0", "v1.0.0"),
        ("evaluation_output_root_dir", f"gs://{BUCKET}/eval-out", f"gs://{BUCKET}/eval-out"),
        ("model_display_name", "news-v2", "news-v2"),
        ("enable_checkpoint_selection", "TRUE", "true"),
        ("learning_rate_multiplier", 2, 2.0),
        ("train_steps", 120.0, 120),
    ],
)
def test_emulator_accepts_each_template_parameter_of_its_type(
    client: PipelineServiceClient, store: InMemoryObjectStore, name: str, sent: Any, kept: Any
) -> None:
    body = request_body(evaluation_data_uri=EVAL, **{name: sent})

    parameters = _manifest_parameters(client, store, body, "typed")

    assert parameters[name] == kept
    assert type(parameters[name]) is type(kept)


def test_emulator_empty_optional_strings_mean_not_given(
    client: PipelineServiceClient, store: InMemoryObjectStore
) -> None:
    # Requests built from the template's defaults send "" for these (e.g. no CMEK key).
    empty = (
        "location",
        "evaluation_data_uri",
        "evaluation_output_root_dir",
        "tensorboard_resource_id",
        "encryption_spec_key_name",
        "max_context_length",
    )
    body = request_body(accelerator_type="TPU", **dict.fromkeys(empty, ""))

    parameters = _manifest_parameters(client, store, body, "empty")

    assert {k: parameters[k] for k in empty} == {
        **dict.fromkeys(empty, ""),
        "location": "us-central1",
    }
    manifest = json.loads(store.read_bytes(BUCKET, "pipeline-root/empty/job.json"))
    assert manifest["evaluationDataset"] is None


WRONG_TYPES: list[tuple[str, Any, str]] = [
    ("accelerator_type", 1, "STRING"),
    ("api_endpoint", 1, "STRING"),
    ("dataset_uri", ["gs://b/o"], "STRING"),
    ("enable_checkpoint_selection", True, "STRING"),
    ("enable_early_stopping", "true", "BOOLEAN"),
    ("encryption_spec_key_name", 7, "STRING"),
    ("evaluation_data_uri", 7, "STRING"),
    ("evaluation_interval", "20", "NUMBER_INTEGER"),
    ("evaluation_interval", 2.5, "NUMBER_INTEGER"),
    ("evaluation_output_root_dir", False, "STRING"),
    ("learning_rate_multiplier", "1.0", "NUMBER_DOUBLE"),
    ("learning_rate_multiplier", True, "NUMBER_DOUBLE"),
    ("location", 5, "STRING"),
    ("max_context_length", 32, "STRING"),
    ("model_display_name", 5, "STRING"),
    ("project", {"id": PROJECT}, "STRING"),
    ("student_model_reference", None, "STRING"),
    ("teacher_model_reference", 1.0, "STRING"),
    ("temperature", "0.5", "NUMBER_DOUBLE"),
    ("temperature", False, "NUMBER_DOUBLE"),
    ("tensorboard_resource_id", 7, "STRING"),
    ("tpu_training_skip_cmek", 1, "BOOLEAN"),
    ("tpu_training_skip_cmek", "false", "BOOLEAN"),
    ("train_steps", "300", "NUMBER_INTEGER"),
    ("version", 1, "STRING"),
]


@pytest.mark.parametrize(
    ("name", "value", "kind"), WRONG_TYPES, ids=[f"{n}={v!r}" for n, v, _ in WRONG_TYPES]
)
def test_emulator_rejects_a_template_parameter_of_the_wrong_type(
    server: EmulatorServer, name: str, value: Any, kind: str
) -> None:
    # Raw HTTP: the official client cannot send every wrong type (a null, a list).
    body = request_body(evaluation_data_uri=EVAL)
    body["runtimeConfig"]["parameterValues"][name] = value

    status, answer = raw(
        server,
        "POST",
        f"/v1/{PARENT}/pipelineJobs?pipelineJobId=wrong",
        json.dumps(body).encode(),
    )

    assert status == 400
    message = answer["error"]["message"]
    assert f"parameter {name}" in message
    assert f"({kind}), got {value!r}" in message
    fields = [v["field"] for v in answer["error"]["details"][0]["fieldViolations"]]
    assert fields == [f"runtimeConfig.parameterValues.{name}"]


def test_emulator_unknown_parameter_names_the_template_parameters(
    client: PipelineServiceClient,
) -> None:
    with pytest.raises(gexc.BadRequest) as caught:
        create(client, request_body(temprature=0.5), job_id="typo")

    message = caught.value.message
    assert "Unknown parameter 'temprature'" in message
    assert "temperature" in message and "evaluation_output_root_dir" in message


def test_emulator_cmek_in_us_central1_with_gpu_is_accepted(client: PipelineServiceClient) -> None:
    body = _with_spec(
        request_body(encryption_spec_key_name=KEY), encryptionSpec={"kmsKeyName": KEY}
    )

    created = create(client, body, job_id="cmek")

    assert created.encryption_spec.kms_key_name == KEY


def test_emulator_invalid_request_answers_a_google_rpc_error_body(server: EmulatorServer) -> None:
    status, body = raw(
        server,
        "POST",
        f"/v1/{PARENT}/pipelineJobs?pipelineJobId=bad",
        json.dumps(request_body(train_steps=0, learning_rate_multiplier=-1)).encode(),
    )

    assert status == 400
    error = body["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert "train_steps" in error["message"] and "learning_rate_multiplier" in error["message"]
    fields = [v["field"] for v in error["details"][0]["fieldViolations"]]
    assert fields == [
        "runtimeConfig.parameterValues.learning_rate_multiplier",
        "runtimeConfig.parameterValues.train_steps",
    ]


@pytest.mark.parametrize(
    ("path", "body", "status", "named"),
    [
        (f"/v1/{PARENT}/pipelineJobs", b"{not json", 400, "Invalid JSON payload"),
        (f"/v1/{PARENT}/pipelineJobs", b"[1, 2]", 400, "JSON object"),
        (f"/v1/{PARENT}/pipelineJobs", b"", 400, "Empty body"),
        (f"/v1/{PARENT}/pipelineJobs?pipelineJobId=Bad_Id", None, 400, "pipelineJobId"),
        (
            f"/v1/{PARENT}/pipelineJobs",
            json.dumps({**request_body(), "colour": 1}).encode(),
            400,
            "colour",
        ),
        (f"/v1/{PARENT}/pipelineJobs/x:pause", b"{}", 404, "no method"),
    ],
)
def test_emulator_malformed_requests_are_refused(
    server: EmulatorServer, path: str, body: bytes | None, status: int, named: str
) -> None:
    payload = json.dumps(request_body()).encode() if body is None else body

    answer_status, answer = raw(server, "POST", path, payload)

    assert answer_status == status
    assert named in answer["error"]["message"]
    assert answer["error"]["code"] == status


def test_emulator_health_answers_200(server: EmulatorServer) -> None:
    assert raw(server, "GET", "/") == (200, {"status": "ok"})


# --- Running jobs ---------------------------------------------------------------------------------


def test_emulator_default_runner_fails_without_a_trainer_after_writing_the_manifest(
    server: EmulatorServer,
    client: PipelineServiceClient,
    store: InMemoryObjectStore,
    publisher: InMemoryPublisher,
) -> None:
    created = create(client, request_body(evaluation_data_uri=EVAL), job_id="news-1")

    job = settled(client, created.name)

    assert job.state.name == "PIPELINE_STATE_FAILED"
    assert job.error.code == 9  # FAILED_PRECONDITION
    assert job.error.message.startswith("no trainer is installed in the local Vertex AI emulator: ")
    assert "24 training examples" in job.error.message
    assert job.start_time is not None and job.end_time is not None
    manifest = json.loads(store.read_bytes(BUCKET, "pipeline-root/news-1/job.json"))
    assert manifest["kind"] == "distillery.local.emulator/job-manifest"
    assert manifest["pipelineJob"] == created.name
    assert manifest["dataset"]["uri"] == DATASET
    assert manifest["dataset"]["examples"] == 24
    assert manifest["evaluationDataset"]["examples"] == 12
    assert manifest["outputDirectory"] == f"{OUTPUT}/news-1/"
    assert manifest["parameters"]["train_steps"] == 300
    assert manifest["trainer"] is None


def test_emulator_missing_dataset_fails_naming_the_uri(
    client: PipelineServiceClient, store: InMemoryObjectStore
) -> None:
    missing = f"gs://{BUCKET}/validated/none/gone.jsonl"
    created = create(client, request_body(dataset_uri=missing), job_id="gone")

    job = settled(client, created.name)

    assert job.state.name == "PIPELINE_STATE_FAILED"
    assert job.error.code == 5  # NOT_FOUND
    assert missing in job.error.message
    assert store.names(BUCKET, "pipeline-root/") == []


def test_emulator_publishes_every_transition_as_a_log_entry(
    server: EmulatorServer, client: PipelineServiceClient, publisher: InMemoryPublisher
) -> None:
    created = create(client, job_id="news-1")
    settled(client, created.name)

    entries = events(server, publisher)

    assert states_of(entries, "news-1") == [
        "PIPELINE_STATE_PENDING",
        "PIPELINE_STATE_RUNNING",
        "PIPELINE_STATE_FAILED",
    ]
    for entry in entries:
        assert entry["resource"] == {
            "type": "aiplatform.googleapis.com/PipelineJob",
            "labels": {
                "pipeline_job_id": "news-1",
                "location": "us-central1",
                "resource_container": PROJECT,
            },
        }
        assert entry["logName"] == (
            f"projects/{PROJECT}/logs/aiplatform.googleapis.com%2Fpipeline_job_events"
        )
        assert entry["jsonPayload"]["pipelineName"] == created.name
        assert entry["insertId"] and entry["timestamp"] and entry["receiveTimestamp"]
    failed = entries[-1]
    assert failed["severity"] == "ERROR"
    assert failed["jsonPayload"]["previousState"] == "PIPELINE_STATE_RUNNING"
    assert failed["jsonPayload"]["error"]["code"] == 9
    assert len({e["insertId"] for e in entries}) == 3


def test_emulator_cancel_running_job(
    start_server: Callable[..., EmulatorServer], publisher: InMemoryPublisher
) -> None:
    runner = BlockingRunner()
    server = start_server(runner=runner)
    client = client_for(server)
    created = create(client, job_id="long")
    assert runner.started.get(timeout=5) == "long"
    assert client.get_pipeline_job(name=created.name).state.name == "PIPELINE_STATE_RUNNING"

    client.cancel_pipeline_job(name=created.name)
    job = settled(client, created.name)

    assert job.state.name == "PIPELINE_STATE_CANCELLED"
    assert job.error.code == 1
    assert states_of(events(server, publisher), "long") == [
        "PIPELINE_STATE_PENDING",
        "PIPELINE_STATE_RUNNING",
        "PIPELINE_STATE_CANCELLING",
        "PIPELINE_STATE_CANCELLED",
    ]
    with pytest.raises(gexc.BadRequest, match="already in state PIPELINE_STATE_CANCELLED"):
        client.cancel_pipeline_job(name=created.name)


def test_emulator_runs_one_job_at_a_time_and_cancels_a_waiting_one(
    start_server: Callable[..., EmulatorServer],
) -> None:
    runner = BlockingRunner()
    client = client_for(start_server(runner=runner))
    first = create(client, job_id="first")
    second = create(client, job_id="second")
    assert runner.started.get(timeout=5) == "first"

    assert client.get_pipeline_job(name=second.name).state.name == "PIPELINE_STATE_PENDING"
    client.cancel_pipeline_job(name=second.name)
    assert client.get_pipeline_job(name=second.name).state.name == "PIPELINE_STATE_CANCELLED"
    runner.release.set()

    assert settled(client, first.name).state.name == "PIPELINE_STATE_SUCCEEDED"
    assert runner.started.empty()  # The cancelled job never ran.


def test_emulator_runs_jobs_concurrently_up_to_the_limit(
    start_server: Callable[..., EmulatorServer],
) -> None:
    runner = BlockingRunner()
    client = client_for(start_server(runner=runner, max_concurrent_jobs=2))
    for job_id in ("a", "b", "c"):
        create(client, job_id=job_id)

    assert {runner.started.get(timeout=5), runner.started.get(timeout=5)} == {"a", "b"}
    assert client.get_pipeline_job(name=f"{PARENT}/pipelineJobs/c").state.name == (
        "PIPELINE_STATE_PENDING"
    )
    runner.release.set()
    assert runner.started.get(timeout=5) == "c"


def test_emulator_runner_that_raises_fails_the_job_and_the_server_stays_up(
    start_server: Callable[..., EmulatorServer], publisher: InMemoryPublisher
) -> None:
    server = start_server(runner=ExplodingRunner())
    client = client_for(server)
    first = create(client, job_id="first")

    job = settled(client, first.name)

    assert job.state.name == "PIPELINE_STATE_FAILED"
    assert "RuntimeError: boom in first" in job.error.message
    second = create(client, job_id="second")
    assert settled(client, second.name).state.name == "PIPELINE_STATE_FAILED"
    assert states_of(events(server, publisher), "first")[-1] == "PIPELINE_STATE_FAILED"


def test_emulator_default_runner_hands_over_to_an_installed_trainer(
    start_server: Callable[..., EmulatorServer], store: InMemoryObjectStore
) -> None:
    trainer = RecordingTrainer()
    client = client_for(start_server(runner=emulator.DatasetRunner(trainer)))
    created = create(client, request_body(evaluation_data_uri=EVAL), job_id="trained")

    job = settled(client, created.name)

    assert job.state.name == "PIPELINE_STATE_SUCCEEDED"
    assert not job.error.message
    assert job.job_detail.task_details[0].task_name == "train"
    (inputs,) = trainer.inputs
    assert (inputs.dataset.examples, inputs.evaluation and inputs.evaluation.examples) == (24, 12)
    assert inputs.manifest_uri == f"{OUTPUT}/trained/job.json"
    manifest = json.loads(store.read_bytes(BUCKET, "pipeline-root/trained/job.json"))
    assert manifest["trainer"] == "recording"


def test_emulator_exports_are_complete() -> None:
    assert all(hasattr(emulator, name) for name in emulator.__all__)


# --- Command line ---------------------------------------------------------------------------------


def test_emulator_command_line_serves_until_sigterm(tmp_path: Any) -> None:
    env = {
        **os.environ,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "DISTILLERY_BUCKET": BUCKET,
        # Adapters are built lazily; nothing talks to these unless a job runs.
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:9",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "distillery.local.emulator", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        url = ""
        assert process.stdout is not None
        for line in process.stdout:
            record = json.loads(line)
            if record["message"] == "the Vertex AI emulator is serving":
                url = record["url"]
                break
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/", timeout=5) as answer:
            assert answer.status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_emulator_keeps_a_connection_usable_after_a_refused_request(
    server: EmulatorServer,
) -> None:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        connection.request("POST", f"/v1/{PARENT}/pipelineJobs/x:pause", body=b'{"a": 1}')
        refused = connection.getresponse()
        refused.read()
        connection.request("GET", "/")
        answer = connection.getresponse()

        assert (refused.status, answer.status) == (404, 200)
        assert json.loads(answer.read()) == {"status": "ok"}
    finally:
        connection.close()
