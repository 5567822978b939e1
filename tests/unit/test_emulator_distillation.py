"""The emulator's v1beta1 ``tuningJobs`` with a ``distillationSpec``: validation as the service
validates it, and a job whose local teacher (a model of the local Model Registry, as on the
pipeline path) answers the prompts before the student is tuned on them.

The jobs run with the fast fake trainer of :mod:`tests.unit.test_emulator_fake_trainer`; the
integration test ``test_tuning_distillation_api`` runs the real local trainer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1beta1 as beta

from distillery.adapters.tuning import VertexTuningJobsAdapter
from distillery.core.errors import RequestRejectedError
from distillery.fakes import InMemoryObjectStore, InMemoryPublisher
from distillery.local.emulator import EmulatorServer, TrainerOptions, create_server
from distillery.local.emulator._contents import ContentError
from distillery.local.emulator._status import ApiError
from distillery.local.emulator._tuning import validate_tuning_job
from distillery.local.emulator._tuning_runner import parse_prompt_example
from tests.helpers import wait_for
from tests.unit.test_emulator_tuning import (
    BUCKET,
    FAKE_MODULE,
    PARENT,
    PROJECT,
    REGION,
    SETTINGS,
    TERMINAL,
    TRAIN,
    Clients,
    line,
    lines,
)

PROMPTS = f"gs://{BUCKET}/validated/news/prompts.jsonl"


def prompt(text: str) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def distillation_body(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "baseTeacherModel": "gemini-3.1-pro",
        "trainingDatasetUri": PROMPTS,
        "hyperParameters": {"epochCount": "2", "adapterSize": "ADAPTER_SIZE_FOUR"},
    }
    spec.update(changes.pop("spec", {}))
    request: dict[str, Any] = {
        "baseModel": "gemini-2.5-flash",
        "distillationSpec": spec,
        "tunedModelDisplayName": "news-distilled",
        "labels": {"distillery-job-id": "job-d"},
    }
    request.update(changes)
    return request


def refused(body: dict[str, Any], *, location: str = REGION, version: str = "v1beta1") -> str:
    with pytest.raises(ApiError) as caught:
        validate_tuning_job(location, body, version)
    assert caught.value.status == "INVALID_ARGUMENT"
    return caught.value.message


# --- Validation ---------------------------------------------------------------------------------


def test_a_distillation_body_is_normalised() -> None:
    request = validate_tuning_job(REGION, distillation_body(), "v1beta1")
    assert request.tuning_mode == "distillation"
    assert request.base_teacher_model == "gemini-3.1-pro" and request.teacher == "gemini-3.1-pro"
    assert request.training_dataset_uri == PROMPTS
    assert (request.epoch_count, request.adapter_size) == (2, "ADAPTER_SIZE_FOUR")
    echo = request.echo()
    assert "supervisedTuningSpec" not in echo
    assert echo["distillationSpec"]["baseTeacherModel"] == "gemini-3.1-pro"
    assert echo["distillationSpec"]["trainingDatasetUri"] == PROMPTS
    # The installed v1beta1 message reads the echo back.
    job = beta.TuningJob.from_json(json.dumps(echo))
    assert job.distillation_spec.hyper_parameters.epoch_count == 2


def test_the_newer_prompt_field_and_a_tuned_teacher_are_accepted() -> None:
    teacher = f"{PARENT}/models/123"
    spec = {"baseTeacherModel": None, "tunedTeacherModelSource": teacher}
    request = validate_tuning_job(
        REGION,
        distillation_body(spec={**spec, "trainingDatasetUri": None, "promptDatasetUri": PROMPTS}),
        "v1beta1",
    )
    assert request.training_dataset_uri == PROMPTS
    assert request.teacher == teacher and not request.base_teacher_model


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"spec": {"baseTeacherModel": "gemini-2.5-flash"}}, "not supported for distillation"),
        ({"spec": {"baseTeacherModel": None}}, "A teacher is required"),
        (
            {"spec": {"tunedTeacherModelSource": f"{PARENT}/models/1"}},
            "Only one teacher may be set",
        ),
        ({"spec": {"tunedTeacherModelSource": None, "baseTeacherModel": None}}, "teacher"),
        ({"spec": {"trainingDatasetUri": None}}, "A prompt dataset is required"),
        ({"spec": {"promptDatasetUri": PROMPTS}}, "Set the prompt dataset once"),
        ({"spec": {"studentModel": "gemini-2.5-pro"}}, "differs from base_model"),
        ({"spec": {"rationale": True}}, 'Unknown name "rationale"'),
        ({"baseModel": "gemini-2.5-pro"}, "not supported as a distillation student"),
        ({"supervisedTuningSpec": {"trainingDatasetUri": TRAIN}}, "Only one tuning spec"),
    ],
)
def test_invalid_distillation_bodies_are_refused(changes: dict[str, Any], words: str) -> None:
    body = distillation_body(**changes)
    body["distillationSpec"] = {k: v for k, v in body["distillationSpec"].items() if v is not None}
    assert words in refused(body)


def test_distillation_runs_in_its_region_only_and_through_v1beta1_only() -> None:
    assert "available in us-central1 only" in refused(distillation_body(), location="europe-west4")
    assert 'Unknown name "distillationSpec"' in refused(distillation_body(), version="v1")


def test_a_prompt_line_ends_with_the_user_turn() -> None:
    parsed = parse_prompt_example(prompt("Classify: news 1"))
    assert parsed.prompt == "Classify: news 1" and parsed.as_training_line() == {
        "input_text": "Classify: news 1"
    }
    with pytest.raises(ContentError, match='not a "model" answer'):
        parse_prompt_example(line("Classify: news 1", "business"))
    with pytest.raises(ContentError, match="must be a JSON object"):
        parse_prompt_example(["Classify"])


# --- The service: a local teacher answers, the student is tuned ---------------------------------


@pytest.fixture
def store() -> InMemoryObjectStore:
    objects = InMemoryObjectStore()
    labelled = [line(f"Classify: news {i}", "business" if i % 3 else "sports") for i in range(12)]
    objects.put(BUCKET, "validated/news/train.jsonl", lines(labelled))
    objects.put(
        BUCKET,
        "validated/news/prompts.jsonl",
        lines([prompt(f"Classify: news {i}") for i in range(12)]),
    )
    objects.put(BUCKET, "validated/news/answers.jsonl", lines(labelled))
    return objects


@pytest.fixture
def server(store: InMemoryObjectStore, tmp_path: Path) -> Iterator[EmulatorServer]:
    running = create_server(
        SETTINGS,
        object_store=store,
        publisher=InMemoryPublisher(),
        trainer=TrainerOptions(trainer_module=FAKE_MODULE, data_dir=tmp_path / "data"),
        tuning_start_delay_seconds=0.1,
    ).start()
    yield running
    running.stop(timeout=10)


def beta_client(server: EmulatorServer) -> beta.GenAiTuningServiceClient:
    return beta.GenAiTuningServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": server.url},
    )


def wait(client: Any, name: str) -> Any:
    def finished() -> Any:
        job = client.get_tuning_job(name=name)
        return job if job.state.name in TERMINAL else None

    return wait_for(finished, timeout=30, interval=0.05, what=name)


def test_the_teacher_answers_the_prompts_and_the_student_learns_them(
    server: EmulatorServer,
) -> None:
    clients = Clients(server)
    # The local teacher: a model of the local Model Registry named as the teacher is.
    taught = clients.wait(clients.create(tunedModelDisplayName="gemini-3.1-pro").name)
    assert taught.state.name == "JOB_STATE_SUCCEEDED", taught.error.message

    client = beta_client(server)
    created = client.create_tuning_job(
        parent=PARENT, tuning_job=beta.TuningJob.from_json(json.dumps(distillation_body()))
    )
    assert created.state.name == "JOB_STATE_PENDING"
    assert created.distillation_spec.base_teacher_model == "gemini-3.1-pro"
    job = wait(client, created.name)
    assert job.state.name == "JOB_STATE_SUCCEEDED", job.error.message
    stats = job.tuning_data_stats.distillation_data_stats.training_dataset_stats
    assert stats.tuning_dataset_example_count == 12
    assert stats.user_message_per_example_distribution.max_ == 1
    assert job.distillation_spec.training_dataset_uri == PROMPTS

    # The student answers as the teacher answered (the fake teacher memorised its data).
    answer = clients.generate(job.tuned_model.endpoint, "Classify: news 3")
    assert answer.candidates[0].content.parts[0].text == "sports"
    model = clients.models.get_model(name=job.tuned_model.model)
    assert model.display_name == "news-distilled"

    # Read through v1, the job has no distillationSpec (v1's TuningJob has no such field).
    status, v1 = clients.raw("GET", f"/v1/{created.name}")
    assert status == 200 and "distillationSpec" not in v1
    status, v1beta1 = clients.raw("GET", f"/v1beta1/{created.name}")
    assert status == 200 and v1beta1["distillationSpec"]["baseTeacherModel"] == "gemini-3.1-pro"
    listed = list(
        client.list_tuning_jobs(
            request=beta.ListTuningJobsRequest(
                parent=PARENT, filter='labels.distillery-job-id="job-d"'
            )
        )
    )
    assert [j.name for j in listed] == [created.name]
    assert listed[0].distillation_spec.base_teacher_model == "gemini-3.1-pro"


def test_without_a_teacher_the_job_fails_saying_so(server: EmulatorServer) -> None:
    client = beta_client(server)
    created = client.create_tuning_job(
        parent=PARENT, tuning_job=beta.TuningJob.from_json(json.dumps(distillation_body()))
    )
    job = wait(client, created.name)
    assert job.state.name == "JOB_STATE_FAILED"
    assert job.error.code == 9
    assert "'gemini-3.1-pro'" in job.error.message and "never invents" in job.error.message


def test_an_answer_in_a_prompt_dataset_fails_the_job_with_its_line(
    server: EmulatorServer,
) -> None:
    client = beta_client(server)
    body = distillation_body(
        spec={"trainingDatasetUri": f"gs://{BUCKET}/validated/news/answers.jsonl"}
    )
    job = wait(
        client,
        client.create_tuning_job(
            parent=PARENT, tuning_job=beta.TuningJob.from_json(json.dumps(body))
        ).name,
    )
    assert job.state.name == "JOB_STATE_FAILED"
    assert "line 1 is not a distillation prompt" in job.error.message


def test_the_adapter_sends_a_distillation_job_through_v1beta1(server: EmulatorServer) -> None:
    adapter = VertexTuningJobsAdapter(PROJECT, api_endpoint=server.url)
    created = adapter.create(REGION, distillation_body(), api_version="v1beta1")
    assert created.resource is not None
    assert created.resource["distillationSpec"]["baseTeacherModel"] == "gemini-3.1-pro"
    found = adapter.find_by_label(REGION, "distillery-job-id", "job-d", api_version="v1beta1")
    assert found is not None and found.name == created.name
    assert adapter.get(created.name, api_version="v1beta1").resource["distillationSpec"]  # type: ignore[index]
    adapter.cancel(created.name, api_version="v1beta1")
    # Outside us-central1 the service refuses it, and the adapter says it is permanent.
    with pytest.raises(RequestRejectedError, match="us-central1 only"):
        adapter.create("europe-west4", distillation_body(), api_version="v1beta1")


def test_the_official_client_gets_the_region_refusal(server: EmulatorServer) -> None:
    client = beta_client(server)
    with pytest.raises(gexc.BadRequest, match="us-central1 only"):
        client.create_tuning_job(
            parent=f"projects/{PROJECT}/locations/europe-west4",
            tuning_job=beta.TuningJob.from_json(json.dumps(distillation_body())),
        )
