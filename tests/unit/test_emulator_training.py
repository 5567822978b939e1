"""The trainer-backed emulator: worker processes, the Model Registry, endpoints and prediction.

The emulator runs in-process on a free port with the in-memory storage and Pub/Sub fakes, and
trains with :mod:`tests.unit.test_emulator_fake_trainer` (the trainer's API without torch) in
real worker processes; every call goes through the official clients over REST.
"""

from __future__ import annotations

import collections
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
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

from distillery.adapters.vertex import VertexPipelineAdapter
from distillery.core.errors import ConfigurationError
from distillery.core.pipeline_outputs import read_outputs
from distillery.core.ports import PipelineJobInfo, same_model
from distillery.core.settings import Settings
from distillery.core.training_metrics import read_training_metrics
from distillery.fakes import InMemoryObjectStore, InMemoryPublisher
from distillery.local.emulator import (
    SEED_HEADER,
    EmulatorServer,
    LocalModels,
    TrainerOptions,
    batch_size,
    create_server,
    label_value,
    training_config,
)
from distillery.local.emulator._config import parse_model_map
from distillery.local.example_data import Example
from tests.helpers import jsonl, wait_for
from tests.unit import test_emulator_fake_trainer as fake

PROJECT = "p-1"
BUCKET = "bkt"
PARENT = f"projects/{PROJECT}/locations/us-central1"
OUTPUT = f"gs://{BUCKET}/pipeline-root"
SETTINGS = Settings(project=PROJECT, bucket=BUCKET)
TERMINAL = ("PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED")
FAKE_MODULE = "tests.unit.test_emulator_fake_trainer"


def _examples(label: str | None, count: int, prefix: str = "text") -> list[Example]:
    return [Example(f"Classify: {prefix} {i}", label) for i in range(count)]


def body(dataset: str, **parameters: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "project": PROJECT,
        "model_display_name": "news-distilled",
        "dataset_uri": f"gs://{BUCKET}/{dataset}",
        "train_steps": 20,
    }
    values.update(parameters)
    return {
        "displayName": "news-distillation",
        "runtimeConfig": {"gcsOutputDirectory": OUTPUT, "parameterValues": values},
        "templateUri": SETTINGS.template_uri,
    }


@pytest.fixture
def store() -> InMemoryObjectStore:
    objects = InMemoryObjectStore()
    objects.put(BUCKET, "validated/a/news.jsonl", jsonl(_examples("business", 24)))
    objects.put(BUCKET, "validated/a/news.eval.jsonl", jsonl(_examples("business", 12, "eval")))
    objects.put(BUCKET, "validated/b/other.jsonl", jsonl(_examples("sports", 16, "other")))
    objects.put(BUCKET, "validated/u/unlabeled.jsonl", jsonl(_examples(None, 10)))
    return objects


@pytest.fixture
def start(store: InMemoryObjectStore, tmp_path: Path) -> Iterator[Callable[..., EmulatorServer]]:
    servers: list[EmulatorServer] = []

    def start_server(**options: Any) -> EmulatorServer:
        trainer = TrainerOptions(trainer_module=FAKE_MODULE, data_dir=tmp_path / "data", **options)
        server = create_server(
            SETTINGS, object_store=store, publisher=InMemoryPublisher(), trainer=trainer
        )
        servers.append(server.start())
        return server

    yield start_server
    for server in servers:
        server.stop(timeout=10)


@pytest.fixture
def server(start: Callable[..., EmulatorServer]) -> EmulatorServer:
    return start()


class Clients:
    def __init__(self, server: EmulatorServer) -> None:
        options = {"api_endpoint": server.url}
        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        self.pipelines = PipelineServiceClient(
            transport="rest", credentials=credentials, client_options=options
        )
        self.models = ModelServiceClient(
            transport="rest", credentials=credentials, client_options=options
        )
        self.endpoints = EndpointServiceClient(
            transport="rest", credentials=credentials, client_options=options
        )
        self.prediction = PredictionServiceClient(
            transport="rest", credentials=credentials, client_options=options
        )

    def create(self, request: dict[str, Any], job_id: str) -> PipelineJob:
        job = PipelineJob.from_json(json.dumps(request))
        return self.pipelines.create_pipeline_job(
            parent=PARENT, pipeline_job=job, pipeline_job_id=job_id
        )

    def wait(
        self, name: str, until: Callable[[PipelineJob], bool] | None = None, timeout: float = 30
    ) -> PipelineJob:
        """The job once ``until`` holds for it (default: once it is in a terminal state)."""
        return wait_job(self.pipelines, name, until, timeout=timeout, interval=0.02)

    def train(self, request: dict[str, Any], job_id: str) -> PipelineJob:
        job = self.wait(self.create(request, job_id).name)
        assert job.state.name == "PIPELINE_STATE_SUCCEEDED", job.error.message
        return job

    def endpoint_with(self, *models: str, split: dict[str, int] | None = None) -> str:
        """A new endpoint with ``models`` deployed (the first takes all traffic, unless the
        ``split`` of model name → percentage says otherwise; for at most two models)."""
        endpoint = self.endpoints.create_endpoint(
            parent=PARENT, endpoint=Endpoint(display_name="news-distilled")
        ).result(timeout=5)
        ids: dict[str, str] = {}
        for model in models:
            traffic: dict[str, int] | None = None
            if not ids:
                traffic = {"0": 100}
            elif split is not None:
                traffic = {**{ids[m]: split[m] for m in ids}, "0": split[model]}
            deployed = self.endpoints.deploy_model(
                endpoint=endpoint.name,
                deployed_model=DeployedModel(model=model),
                traffic_split=traffic,
            ).result(timeout=5)
            ids[model] = deployed.deployed_model.id
        return str(endpoint.name)

    def predict(self, endpoint: str, prompts: list[str], **parameters: Any) -> Any:
        from google.protobuf import json_format, struct_pb2

        instances = []
        for prompt in prompts:
            value = struct_pb2.Value()
            json_format.ParseDict({"prompt": prompt}, value)
            instances.append(value)
        params = struct_pb2.Value()
        json_format.ParseDict(parameters, params)
        return self.prediction.predict(endpoint=endpoint, instances=instances, parameters=params)


def wait_job(
    pipelines: PipelineServiceClient,
    name: str,
    until: Callable[[PipelineJob], bool] | None,
    *,
    timeout: float,
    interval: float,
) -> PipelineJob:
    """The job ``name`` once ``until`` holds for it (default: once it is in a terminal state);
    a timeout names the last state seen."""
    seen: list[PipelineJob] = []

    def probe() -> PipelineJob | None:
        job = pipelines.get_pipeline_job(name=name)
        seen[:] = [job]
        return job if (until(job) if until else job.state.name in TERMINAL) else None

    try:
        job: PipelineJob = wait_for(probe, timeout=timeout, interval=interval, what=name)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last state {seen[-1].state.name}") from None
    return job


def _task(job: PipelineJob, name: str) -> Any:
    [task] = [t for t in job.job_detail.task_details if t.task_name == name]
    return task


def _metadata(message: Any) -> dict[str, Any]:
    return dict(message.metadata.items()) if message.metadata else {}


def _model_name(job: PipelineJob) -> str:
    return str(_task(job, "upload-llm-model").execution.metadata["output:model_resource_name"])


# --- The whole lifecycle --------------------------------------------------------------------------


def test_emulator_training_lifecycle_from_job_to_prediction(
    server: EmulatorServer,
    store: InMemoryObjectStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = tmp_path / "gate"
    monkeypatch.setenv(fake.MODE_VARIABLE, "gate")
    monkeypatch.setenv(fake.GATE_VARIABLE, str(gate))
    clients = Clients(server)
    request = body(
        "validated/a/news.jsonl",
        evaluation_data_uri=f"gs://{BUCKET}/validated/a/news.eval.jsonl",
        location="europe-west4",
        accelerator_type="TPU",
    )
    created = clients.create(request, "news-1")

    def progressed(job: PipelineJob) -> bool:
        tasks = [t for t in job.job_detail.task_details if t.task_name == "distillation-trainer"]
        return bool(tasks) and _metadata(tasks[0].execution).get("progress:step") == 10

    running = clients.wait(created.name, progressed)
    gate.touch()
    job = clients.wait(created.name)

    assert running.state.name == "PIPELINE_STATE_RUNNING"
    trainer = _task(running, "distillation-trainer")
    assert trainer.state.name == "RUNNING"
    progress = _metadata(trainer.execution)
    assert progress["progress:train_steps"] == 20
    assert progress["progress:fraction_complete"] == 0.5
    assert progress["progress:train_total_loss"] == 0.75
    assert progress["progress:eval_fraction_of_correct_next_step_preds"] == 0.5
    assert progress["input:batch_size"] == 24  # TPU: tuning in europe-west4, an 8k student
    assert progress["input:enable_checkpoint_selection"] is True  # "default" with eval data
    assert job.state.name == "PIPELINE_STATE_SUCCEEDED", job.error.message
    states = {t.task_name: t.state.name for t in job.job_detail.task_details}
    assert states == {
        "prepare-data": "SUCCEEDED",
        "label-with-teacher": "SKIPPED",
        "distillation-trainer": "SUCCEEDED",
        "upload-llm-model": "SUCCEEDED",
        "deploy-llm-model": "SUCCEEDED",
    }
    trainer_outputs = _task(job, "distillation-trainer").outputs
    # As the real pipelines' trainer tasks: the event files' directory, no system.Metrics.
    assert set(trainer_outputs) == {"model", "tensorboard_metrics"}
    [tensorboard] = trainer_outputs["tensorboard_metrics"].artifacts
    assert tensorboard.schema_title == "system.Artifact"
    assert tensorboard.uri == f"{OUTPUT}/news-1/tensorboard/"
    assert not _metadata(tensorboard)
    # Read as track_status reads it: the pipeline job through the adapter, the files through the
    # store.
    info = VertexPipelineAdapter(PROJECT, api_endpoint=server.url).get(created.name)
    training = read_training_metrics(store, info)
    assert training.final == {
        "train_total_loss": 0.25,
        "train_fraction_of_correct_next_step_preds": 0.9,
        "train_num_predictions": 48.0,
        "eval_total_loss": 0.3,
        "eval_fraction_of_correct_next_step_preds": 0.85,
        "eval_num_predictions": 24.0,
    }
    assert training.selected_step == 20
    names = sorted(store.names(BUCKET, "pipeline-root/news-1/"))
    assert names[:4] == [
        "pipeline-root/news-1/job.json",
        "pipeline-root/news-1/metrics.jsonl",
        "pipeline-root/news-1/model/memory.json",
        "pipeline-root/news-1/model/nested/config.json",
    ]
    [events] = names[4:]
    assert events.startswith("pipeline-root/news-1/tensorboard/events.out.tfevents.")

    model_name = _model_name(job)
    assert model_name.startswith("projects/p-1/locations/europe-west4/models/")
    assert model_name.endswith("@1")  # the uploaded version, as the tuning pipelines name it
    model = clients.models.get_model(name=model_name)
    assert model.display_name == "news-distilled"
    assert model.artifact_uri == f"{OUTPUT}/news-1/model/"
    assert model.pipeline_job == created.name
    assert model.labels["distillery-pipeline-job"] == "news-1"
    assert model.labels["distillery-dataset"] == "validated-a-news-jsonl"
    assert model.labels["distillery-student"] == "text-bison-002"
    assert model.create_time is not None
    assert "metrics" not in json.loads(type(model).to_json(model)).get("metadata", {})
    listed = clients.models.list_models(
        request={
            "parent": "projects/p-1/locations/europe-west4",
            "filter": 'display_name="news-distilled"',
        }
    )
    assert [m.name for m in listed] == [model.name]
    assert model_name == f"{model.name}@{model.version_id}"
    # The pipeline deployed it on an endpoint of its own, in the upload region, named after it.
    own = _task(job, "deploy-llm-model").execution.metadata["output:endpoint_resource_name"]
    assert own.startswith("projects/p-1/locations/europe-west4/endpoints/")
    assert [d.endpoint for d in model.deployed_models] == [own]

    endpoint = clients.endpoints.create_endpoint(
        parent=PARENT, endpoint=Endpoint(display_name="news-distilled")
    ).result(timeout=5)
    deployed = clients.endpoints.deploy_model(
        endpoint=endpoint.name,
        deployed_model=DeployedModel(model=model_name, display_name="v1"),
        traffic_split={"0": 100},
    ).result(timeout=5)
    answer = clients.predict(endpoint.name, ["Classify: text 3", "something new"])

    assert [p["content"] for p in answer.predictions] == ["business", "business"]
    assert answer.deployed_model_id == deployed.deployed_model.id
    fetched = clients.endpoints.get_endpoint(name=endpoint.name)
    assert dict(fetched.traffic_split) == {deployed.deployed_model.id: 100}
    assert [m.name for m in clients.endpoints.list_endpoints(parent=PARENT)] == [endpoint.name]
    assert sorted(
        d.endpoint for d in clients.models.get_model(name=model_name).deployed_models
    ) == sorted([own, endpoint.name])


# --- Cancel and crashes ---------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_emulator_training_cancel_stops_the_worker(
    server: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pid"
    monkeypatch.setenv(fake.MODE_VARIABLE, "hang")
    monkeypatch.setenv(fake.PID_VARIABLE, str(pid_file))
    clients = Clients(server)
    created = clients.create(body("validated/a/news.jsonl"), "long")
    clients.wait(created.name, lambda job: pid_file.exists() and job.job_detail is not None)
    pid = int(pid_file.read_text())

    clients.pipelines.cancel_pipeline_job(name=created.name)
    assert clients.pipelines.get_pipeline_job(name=created.name).state.name in (
        "PIPELINE_STATE_CANCELLING",
        "PIPELINE_STATE_CANCELLED",
    )
    job = clients.wait(created.name)

    assert job.state.name == "PIPELINE_STATE_CANCELLED"
    assert _gone(pid)
    assert _task(job, "distillation-trainer").state.name == "CANCELLED"
    assert _task(job, "upload-llm-model").state.name == "NOT_TRIGGERED"
    assert list(clients.models.list_models(parent=PARENT)) == []


@pytest.mark.parametrize(
    ("mode", "code", "reason"),
    [
        ("crash", 13, "the training worker process exited with status 13 before it finished"),
        ("kill", 13, "the training worker process was killed by signal SIGKILL"),
        ("raise", 13, "the training worker failed: RuntimeError: the fake trainer broke"),
        ("error", 9, "training failed: the fake trainer refuses this dataset"),
    ],
)
def test_emulator_training_worker_failure_fails_the_job_and_the_server_stays_up(
    server: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    code: int,
    reason: str,
) -> None:
    monkeypatch.setenv(fake.MODE_VARIABLE, mode)
    clients = Clients(server)

    job = clients.wait(clients.create(body("validated/a/news.jsonl"), "broken").name)

    assert job.state.name == "PIPELINE_STATE_FAILED"
    assert job.error.code == code
    assert reason in job.error.message
    assert _task(job, "distillation-trainer").state.name == "FAILED"
    monkeypatch.setenv(fake.MODE_VARIABLE, "ok")
    clients.train(body("validated/a/news.jsonl"), "after")  # The emulator still trains.


# --- Template parameters that mean something locally ----------------------------------------------


def test_emulator_training_max_context_length_picks_the_batch_size(server: EmulatorServer) -> None:
    clients = Clients(server)
    request = body(
        "validated/a/news.jsonl",
        location="europe-west4",
        accelerator_type="TPU",
        max_context_length="32k",
    )

    job = clients.train(request, "long-context")

    inputs = _metadata(_task(job, "distillation-trainer").execution)
    assert inputs["input:batch_size"] == 8  # not TPU's 24 for an 8k-context student
    assert inputs["input:max_context_length"] == "32k"


def test_emulator_training_writes_evaluation_outputs_where_asked(
    server: EmulatorServer, store: InMemoryObjectStore
) -> None:
    clients = Clients(server)
    evaluated = body(
        "validated/a/news.jsonl",
        evaluation_data_uri=f"gs://{BUCKET}/validated/a/news.eval.jsonl",
        evaluation_output_root_dir=f"gs://{BUCKET}/eval-out/",
    )
    unevaluated = body(
        "validated/a/news.jsonl", evaluation_output_root_dir=f"gs://{BUCKET}/eval-out/"
    )

    job = clients.train(evaluated, "evaluated")
    clients.train(unevaluated, "unevaluated")

    [output] = _task(job, "distillation-trainer").outputs["evaluation"].artifacts
    assert output.uri == f"gs://{BUCKET}/eval-out/evaluated/evaluation_metrics.jsonl"
    [line] = store.read_bytes(BUCKET, "eval-out/evaluated/evaluation_metrics.jsonl").splitlines()
    assert json.loads(line)["eval_fraction_of_correct_next_step_preds"] == 0.85
    assert store.names(BUCKET, "eval-out/") == ["eval-out/evaluated/evaluation_metrics.jsonl"]


def test_emulator_training_model_display_name_defaults_to_the_template_s(
    server: EmulatorServer,
) -> None:
    clients = Clients(server)
    request = body("validated/a/news.jsonl")
    del request["runtimeConfig"]["parameterValues"]["model_display_name"]

    job = clients.train(request, "unnamed")

    model = clients.models.get_model(name=_model_name(job))
    assert model.display_name == "distilled-student-model"


# --- Teachers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["display name", "resource name"])
def test_emulator_training_labels_an_unlabeled_dataset_with_a_registry_teacher(
    server: EmulatorServer, store: InMemoryObjectStore, by: str
) -> None:
    clients = Clients(server)
    teacher_job = clients.train(
        body("validated/b/other.jsonl", model_display_name="house-teacher"), "teacher"
    )
    teacher = _model_name(teacher_job) if by == "resource name" else "house-teacher"

    job = clients.train(
        body("validated/u/unlabeled.jsonl", teacher_model_reference=teacher), "student"
    )

    label = _task(job, "label-with-teacher")
    assert label.state.name == "SUCCEEDED"
    assert _metadata(label.execution)["output:labelled_examples"] == 10
    assert _metadata(label.execution)["input:temperature"] == 0.0  # the template's default
    labels = store.read_bytes(BUCKET, "pipeline-root/student/teacher_labels.jsonl").splitlines()
    assert len(labels) == 10
    assert json.loads(labels[0]) == {
        "input_text": "Classify: text 0",
        "output_text": "sports",
        "rationale": "the teacher says sports",
    }
    student = clients.models.get_model(name=_model_name(job))
    assert student.labels["distillery-teacher"] == label_value(teacher)


def test_emulator_training_unlabeled_dataset_without_a_teacher_fails_with_the_reason(
    server: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pid"
    monkeypatch.setenv(fake.PID_VARIABLE, str(pid_file))
    clients = Clients(server)

    job = clients.wait(
        clients.create(
            body("validated/u/unlabeled.jsonl", teacher_model_reference="text-unicorn@001"),
            "no-teacher",
        ).name
    )

    assert job.state.name == "PIPELINE_STATE_FAILED"
    assert job.error.code == 9  # FAILED_PRECONDITION
    assert "no teacher is available" in job.error.message
    assert "10 of its 10 examples have no output_text" in job.error.message
    assert "'text-unicorn@001'" in job.error.message
    assert "never invents labels" in job.error.message
    assert _task(job, "prepare-data").state.name == "FAILED"
    assert not pid_file.exists()  # No worker was started.


def test_emulator_training_uses_a_configured_local_teacher_and_student(
    start: Callable[..., EmulatorServer], tmp_path: Path
) -> None:
    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    (teacher_dir / fake.MODEL_FILE).write_text(json.dumps({"memory": {}, "majority": "science"}))
    student_dir = tmp_path / "student"
    student_dir.mkdir()
    models = LocalModels(
        students={"text-bison@002": student_dir}, teachers={"text-unicorn@001": teacher_dir}
    )
    clients = Clients(start(local_models=models))

    job = clients.train(body("validated/u/unlabeled.jsonl", temperature=0.5), "local-teacher")

    inputs = _metadata(_task(job, "distillation-trainer").execution)
    assert "input:student_checkpoint" not in inputs  # a local path is not shown on the resource
    assert _task(job, "label-with-teacher").state.name == "SUCCEEDED"
    # Recorded: the local teacher decodes greedily whatever the temperature.
    assert _metadata(_task(job, "label-with-teacher").execution)["input:temperature"] == 0.5
    answer = clients.predict(clients.endpoint_with(_model_name(job)), ["anything"])
    assert [p["content"] for p in answer.predictions] == ["science"]


def test_emulator_training_missing_local_student_checkpoint_fails(
    start: Callable[..., EmulatorServer], tmp_path: Path
) -> None:
    models = LocalModels(students={"text-bison@002": tmp_path / "nowhere"})
    clients = Clients(start(local_models=models))

    job = clients.wait(clients.create(body("validated/a/news.jsonl"), "no-student").name)

    assert job.state.name == "PIPELINE_STATE_FAILED"
    assert "DISTILLERY_LOCAL_STUDENTS" in job.error.message


# --- The pipeline's own deployment, versions, labels --------------------------------------------


def _job_resource(server: EmulatorServer, name: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.url}/v1/{name}", timeout=5) as answer:
        resource: dict[str, Any] = json.loads(answer.read())
    return resource


def test_emulator_training_deploys_each_job_on_its_own_endpoint_before_it_succeeds(
    server: EmulatorServer,
) -> None:
    clients = Clients(server)
    jobs = [clients.train(body("validated/a/news.jsonl"), job_id) for job_id in ("d-1", "d-2")]
    # At once, with no wait: SUCCEEDED means the endpoint answers.
    first = read_outputs(
        PipelineJobInfo(jobs[0].name, "", resource=_job_resource(server, jobs[0].name))
    )
    answer = clients.predict(first["endpoint"], ["Classify: text 3"])

    assert first["model"] == _model_name(jobs[0])
    assert [p["content"] for p in answer.predictions] == ["business"]
    assert answer.model == first["model"].removesuffix("@1")
    endpoints = {e.name: e for e in clients.endpoints.list_endpoints(parent=PARENT)}
    for job in jobs:
        model = _model_name(job)
        own = _task(job, "deploy-llm-model").execution.metadata["output:endpoint_resource_name"]
        endpoint = endpoints[own]
        [deployed] = endpoint.deployed_models
        assert endpoint.display_name == "news-distilled"  # the job's model_display_name
        assert deployed.model == model and deployed.model_version_id == "1"
        assert dict(endpoint.traffic_split) == {deployed.id: 100}
        assert endpoint.labels["google-vertex-llm-tuning-job-id"] == job.name.rsplit("/", 1)[-1]
        # Findable by listing the endpoints and matching deployedModels[].model.
        serving = [
            e.name
            for e in endpoints.values()
            if any(same_model(d.model, model.removesuffix("@1")) for d in e.deployed_models)
        ]
        assert serving == [own]
    assert len(endpoints) == 2  # one per job, both with the same display name
    deploy = _task(jobs[1], "deploy-llm-model")
    assert deploy.state.name == "SUCCEEDED"
    assert _metadata(deploy.execution)["input:display_name"] == "news-distilled"


def test_emulator_training_models_carry_a_version_and_the_tuning_labels(
    server: EmulatorServer,
) -> None:
    clients = Clients(server)
    versioned = _model_name(clients.train(body("validated/a/news.jsonl"), "v-1"))
    bare = versioned.removesuffix("@1")

    fetched = [clients.models.get_model(name=n) for n in (versioned, bare, f"{bare}@default")]
    tuned = clients.models.list_models(
        request={
            "parent": PARENT,
            "filter": 'labels.google-vertex-llm-tuning-base-model-id="text-bison-002"',
        }
    )

    assert {m.name for m in fetched} == {bare}
    assert fetched[0].version_id == "1" and list(fetched[0].version_aliases) == ["default"]
    with pytest.raises(gexc.NotFound):
        clients.models.get_model(name=f"{bare}@2")
    labels = fetched[0].labels
    assert labels["google-vertex-llm-tuning-base-model-id"] == "text-bison-002"
    assert labels["google-vertex-llm-tuning-job-id"] == "v-1"
    assert [m.name for m in tuned] == [bare]
    # Deployed by its bare name, the endpoint echoes the name it was given, with the version id.
    endpoint = clients.endpoint_with(bare)
    [deployed] = clients.endpoints.get_endpoint(name=endpoint).deployed_models
    assert deployed.model == bare and deployed.model_version_id == "1"
    assert {d.endpoint for d in clients.models.get_model(name=versioned).deployed_models} == {
        endpoint,
        read_outputs(
            PipelineJobInfo("", "", resource=_job_resource(server, f"{PARENT}/pipelineJobs/v-1"))
        )["endpoint"],
    }
    with pytest.raises(gexc.NotFound):
        clients.endpoints.deploy_model(
            endpoint=endpoint, deployed_model=DeployedModel(model=f"{bare}@7")
        )


def _get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_emulator_publisher_models_answer_for_the_models_jobs_use(server: EmulatorServer) -> None:
    status, student = _get_json(f"{server.url}/v1/publishers/google/models/text-bison@002")
    _, teacher = _get_json(f"{server.url}/v1beta1/publishers/google/models/text-unicorn@001")
    missing, error = _get_json(f"{server.url}/v1/publishers/google/models/gemini-9")
    foreign, _ = _get_json(f"{server.url}/v1/publishers/acme/models/text-bison@002")

    assert status == 200
    assert student["name"] == "publishers/google/models/text-bison@002"
    assert student["versionId"] == "002"
    assert student["predictSchemata"]["instanceSchemaUri"] == (
        "gs://google-cloud-aiplatform/schema/predict/instance/text_generation_1.0.0.yaml"
    )
    assert student["publisherModelTemplate"] == (
        "projects/{user-project}/locations/{location}/publishers/google/models/text-bison@002"
    )
    assert teacher["name"] == "publishers/google/models/text-unicorn@001"
    assert (missing, foreign) == (404, 404)
    assert "publishers/google/models/text-bison@002" in error["error"]["message"]


@pytest.fixture
def sdk_config() -> Iterator[None]:
    """Undo ``vertexai.init`` afterwards: it sets the SDK's process-wide configuration."""
    from google.cloud.aiplatform import initializer

    saved = dict(vars(initializer.global_config))
    yield
    vars(initializer.global_config).clear()
    vars(initializer.global_config).update(saved)


@pytest.mark.usefixtures("sdk_config")
def test_emulator_training_serves_the_vertex_ai_sdk_s_tuned_model_snippet(
    server: EmulatorServer,
) -> None:
    clients = Clients(server)
    job = clients.train(body("validated/a/news.jsonl"), "sdk-1")
    name = _model_name(job)
    endpoints = [e.name for e in clients.endpoints.list_endpoints(parent=PARENT)]

    import vertexai

    vertexai.init(
        project=PROJECT,
        location="us-central1",
        api_endpoint=server.url,
        api_transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )
    from vertexai.language_models import TextGenerationModel

    model = TextGenerationModel.get_tuned_model(name)
    answer = model.predict("Classify: text 3")  # type: ignore[attr-defined]

    assert answer.text == "business"
    assert answer.is_blocked is False
    # It used the pipeline's deployment instead of deploying the model again.
    assert [e.name for e in clients.endpoints.list_endpoints(parent=PARENT)] == endpoints


# --- Traffic split --------------------------------------------------------------------------------


def test_emulator_training_predict_follows_the_traffic_split(server: EmulatorServer) -> None:
    clients = Clients(server)
    business = _model_name(clients.train(body("validated/a/news.jsonl"), "business"))
    sports = _model_name(clients.train(body("validated/b/other.jsonl"), "sports"))

    even = clients.endpoint_with(business, sports, split={business: 50, sports: 50})
    answers = collections.Counter(
        clients.predict(even, ["unknown prompt"]).predictions[0]["content"] for _ in range(60)
    )
    only = clients.endpoint_with(business, sports, split={business: 100, sports: 0})
    single = {clients.predict(only, ["unknown"]).predictions[0]["content"] for _ in range(30)}
    seeded = {
        clients.predict(even, ["unknown"], seed=7).predictions[0]["content"] for _ in range(10)
    }

    assert set(answers) == {"business", "sports"}
    assert min(answers.values()) >= 10
    assert single == {"business"}
    assert len(seeded) == 1


def test_emulator_training_predict_seed_header_is_deterministic(server: EmulatorServer) -> None:
    clients = Clients(server)
    business = _model_name(clients.train(body("validated/a/news.jsonl"), "business"))
    sports = _model_name(clients.train(body("validated/b/other.jsonl"), "sports"))
    endpoint = clients.endpoint_with(business, sports, split={business: 50, sports: 50})

    def draw() -> str:
        request = urllib.request.Request(
            f"{server.url}/v1/{endpoint}:predict",
            data=json.dumps({"instances": [{"prompt": "x"}]}).encode(),
            headers={"Content-Type": "application/json", SEED_HEADER: "42"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            return str(json.loads(answer.read())["deployedModelId"])

    assert len({draw() for _ in range(8)}) == 1


# --- Endpoint and model errors --------------------------------------------------------------------


def test_emulator_training_endpoint_errors(server: EmulatorServer) -> None:
    clients = Clients(server)
    model = _model_name(clients.train(body("validated/a/news.jsonl"), "m"))
    endpoint = clients.endpoint_with(model)
    [deployed] = clients.endpoints.get_endpoint(name=endpoint).deployed_models

    with pytest.raises(gexc.NotFound):
        clients.endpoints.deploy_model(
            endpoint=endpoint, deployed_model=DeployedModel(model=f"{PARENT}/models/404")
        )
    with pytest.raises(gexc.BadRequest, match="add up to 100"):
        clients.endpoints.deploy_model(
            endpoint=endpoint,
            deployed_model=DeployedModel(model=model),
            traffic_split={"0": 30, deployed.id: 30},
        )
    with pytest.raises(gexc.BadRequest, match='string "prompt"'):
        clients.prediction.predict(endpoint=endpoint, instances=[{"text": "x"}])
    with pytest.raises(gexc.BadRequest, match='string "prompt"'):
        clients.prediction.predict(endpoint=endpoint, instances=[{"content": 3}])
    # "content" is the Vertex AI SDK's name for the prompt.
    sdk_shaped = clients.prediction.predict(endpoint=endpoint, instances=[{"content": "x"}])
    assert [p["content"] for p in sdk_shaped.predictions] == ["business"]
    with pytest.raises(gexc.NotFound):
        clients.endpoints.get_endpoint(name=f"{PARENT}/endpoints/999")
    with pytest.raises(gexc.NotFound):
        clients.models.get_model(name=f"{PARENT}/models/999")

    clients.endpoints.undeploy_model(endpoint=endpoint, deployed_model_id=deployed.id).result(5)
    emptied = clients.endpoints.get_endpoint(name=endpoint)
    assert list(emptied.deployed_models) == [] and dict(emptied.traffic_split) == {}
    with pytest.raises(gexc.BadRequest, match="no deployed model"):
        clients.predict(endpoint, ["x"])
    clients.endpoints.delete_endpoint(name=endpoint).result(timeout=5)
    with pytest.raises(gexc.NotFound):
        clients.endpoints.get_endpoint(name=endpoint)


def test_emulator_training_models_list_pages_and_filters(server: EmulatorServer) -> None:
    clients = Clients(server)
    names = [
        # The job names the version (``@1``); the registry lists the models.
        _model_name(
            clients.train(body("validated/a/news.jsonl", model_display_name=n), n)
        ).removesuffix("@1")
        for n in ("m-a", "m-b", "m-c")
    ]

    pages = list(clients.models.list_models(request={"parent": PARENT, "page_size": 2}).pages)
    by_label = clients.models.list_models(
        request={"parent": PARENT, "filter": "labels.distillery-pipeline-job=m-b"}
    )

    assert [len(p.models) for p in pages] == [2, 1]
    assert [m.name for p in pages for m in p.models] == names[::-1]  # newest first
    assert [m.name for m in by_label] == [names[1]]
    with pytest.raises(gexc.BadRequest, match="filter"):
        list(clients.models.list_models(request={"parent": PARENT, "filter": "colour=red"}))


def test_emulator_without_a_trainer_cannot_serve(store: InMemoryObjectStore) -> None:
    with create_server(SETTINGS, object_store=store, publisher=InMemoryPublisher()) as server:
        clients = Clients(server)
        job = clients.wait(clients.create(body("validated/a/news.jsonl"), "untrained").name)
        endpoint = clients.endpoints.create_endpoint(
            parent=PARENT, endpoint=Endpoint(display_name="e")
        ).result(timeout=5)

        assert job.state.name == "PIPELINE_STATE_FAILED"
        assert "no trainer is installed" in job.error.message
        assert list(clients.models.list_models(parent=PARENT)) == []
        assert clients.endpoints.get_endpoint(name=endpoint.name).display_name == "e"


# --- Configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accelerator", "student", "expected"),
    [
        ("GPU", "text-bison@002", 8),
        ("TPU", "text-bison@002", 24),
        ("GPU", "text-bison-32k@002", 8),
        ("TPU", "text-bison-32k@002", 8),
    ],
)
def test_emulator_training_batch_size_follows_the_spec(
    accelerator: str, student: str, expected: int
) -> None:
    assert batch_size(accelerator, student, SETTINGS.long_context_student_list) == expected


@pytest.mark.parametrize(
    ("student", "max_context_length", "expected"),
    [
        ("text-bison@002", "32k", 8),  # tuned as a 32k-context student: 8 everywhere
        ("text-bison-32k@002", "8k", 24),  # tuned as an 8k-context student on TPU
        ("text-bison-32k@002", "", 8),  # the template's default: the student's own context
        ("text-bison@002", "", 24),
    ],
)
def test_emulator_training_batch_size_follows_max_context_length(
    student: str, max_context_length: str, expected: int
) -> None:
    batch = batch_size(
        "TPU",
        student,
        SETTINGS.long_context_student_list,
        max_context_length=max_context_length,
    )

    assert batch == expected


def test_emulator_training_config_applies_evaluation_only_with_eval_data() -> None:
    parameters = {
        "train_steps": 120,
        "learning_rate_multiplier": 2.0,
        "accelerator_type": "GPU",
        "student_model_reference": "text-bison@002",
    }
    with_eval = {
        **parameters,
        "evaluation_interval": 10,
        "enable_early_stopping": False,
        "enable_checkpoint_selection": "default",
    }

    without = training_config(parameters, has_evaluation=False)
    evaluated = training_config(with_eval, has_evaluation=True)
    chosen_off = training_config(
        {**with_eval, "enable_checkpoint_selection": "false"}, has_evaluation=True
    )

    assert without == {
        "train_steps": 120,
        "batch_size": 8,
        "learning_rate_multiplier": 2.0,
        "student_checkpoint": None,
        "evaluation_interval": None,
        "enable_early_stopping": False,
        "enable_checkpoint_selection": False,
    }
    assert (
        evaluated["evaluation_interval"],
        evaluated["enable_early_stopping"],
        evaluated["enable_checkpoint_selection"],
    ) == (10, False, True)
    assert chosen_off["enable_checkpoint_selection"] is False


def test_emulator_training_local_model_variables_parse() -> None:
    models = LocalModels.from_env(
        {
            "DISTILLERY_LOCAL_STUDENTS": "text-bison@002=/ckpt/student",
            "DISTILLERY_LOCAL_TEACHERS": " a=/t/a , b=/t/b ,",
        }
    )

    assert models.students == {"text-bison@002": Path("/ckpt/student")}
    assert models.teachers == {"a": Path("/t/a"), "b": Path("/t/b")}
    with pytest.raises(ConfigurationError, match="REFERENCE=DIRECTORY"):
        parse_model_map("just-a-path", "DISTILLERY_LOCAL_TEACHERS")
    with pytest.raises(ConfigurationError, match="twice"):
        parse_model_map("a=/x,a=/y", "DISTILLERY_LOCAL_TEACHERS")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("news-1", "news-1"),
        ("text-bison@002", "text-bison-002"),
        ("validated/0F3A/news.jsonl", "validated-0f3a-news-jsonl"),
    ],
)
def test_emulator_training_label_values_follow_gcp_rules(text: str, expected: str) -> None:
    assert label_value(text) == expected


def test_emulator_training_long_label_values_are_shortened_distinctly() -> None:
    first, second = label_value("x" * 80 + "1"), label_value("x" * 80 + "2")

    assert len(first) <= 63 and len(second) <= 63
    assert first != second


def test_emulator_command_line_installs_the_trainer_unless_told_not_to(tmp_path: Path) -> None:
    from distillery.local.emulator.__main__ import _parser, trainer_options

    default = trainer_options(_parser().parse_args(["--port", "0"]), SETTINGS)
    disabled = trainer_options(_parser().parse_args(["--port", "0", "--no-trainer"]), SETTINGS)
    custom = trainer_options(
        _parser().parse_args(
            ["--port", "0", "--trainer-module", FAKE_MODULE, "--data-dir", str(tmp_path)]
        ),
        SETTINGS,
    )

    assert default is not None and default.trainer_module == "distillery.local.trainer"
    assert default.long_context_students == ("text-bison-32k@002",)
    assert disabled is None
    assert custom is not None and custom.data_dir == tmp_path
