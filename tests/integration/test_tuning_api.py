"""Gemini supervised tuning on the local Vertex AI API, through Google's official clients.

An in-process emulator with the real local trainer (torch, one thread) tunes on a tiny
``contents`` dataset; the GAPIC ``GenAiTuningServiceClient`` (REST) creates, lists by label, polls
and cancels jobs, ``PredictionServiceClient.generate_content`` asks the tuned model's endpoint,
and the product's adapter does the same through its port.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import (
    Content,
    EndpointServiceClient,
    GenAiTuningServiceClient,
    GenerateContentRequest,
    ListTuningJobsRequest,
    ModelServiceClient,
    Part,
    PredictionServiceClient,
    TuningJob,
)
from google.protobuf import json_format, struct_pb2

from distillery.adapters.tuning import VertexTuningJobsAdapter
from distillery.fakes import InMemoryObjectStore
from distillery.local.emulator import EmulatorServer
from tests.helpers import wait_for
from tests.integration.tuning_api import contents_lines, tuning_emulator

pytestmark = pytest.mark.integration

PROJECT = "p-tune"
BUCKET = "bkt-tune"
REGION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")


@pytest.fixture
def dataset() -> tuple[InMemoryObjectStore, list[tuple[str, str]]]:
    store = InMemoryObjectStore()
    data, pairs = contents_lines(16)
    store.put(BUCKET, "validated/news/train.jsonl", data)
    return store, pairs


@pytest.fixture
def server(
    dataset: tuple[InMemoryObjectStore, list[tuple[str, str]]], tmp_path: Path
) -> Iterator[EmulatorServer]:
    store, _ = dataset
    with tuning_emulator(
        store, tmp_path / "emulator", project=PROJECT, bucket=BUCKET, start_delay_seconds=0.5
    ) as running:
        yield running


def clients(server: EmulatorServer) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "transport": "rest",
        "credentials": AnonymousCredentials(),  # type: ignore[no-untyped-call]
        "client_options": {"api_endpoint": server.url},
    }
    return {
        "tuning": GenAiTuningServiceClient(**kwargs),
        "models": ModelServiceClient(**kwargs),
        "endpoints": EndpointServiceClient(**kwargs),
        "prediction": PredictionServiceClient(**kwargs),
    }


def tuning_job(request_id: str, epochs: int) -> TuningJob:
    body = {
        "baseModel": "gemini-2.5-flash",
        "supervisedTuningSpec": {
            "trainingDatasetUri": f"gs://{BUCKET}/validated/news/train.jsonl",
            "hyperParameters": {"epochCount": epochs, "adapterSize": "ADAPTER_SIZE_FOUR"},
        },
        "tunedModelDisplayName": f"news-{request_id}",
        "labels": {"distillery-job-id": request_id},
        "serviceAccount": f"tuner@{PROJECT}.iam.gserviceaccount.com",
    }
    return TuningJob.from_json(json.dumps(body))


def test_the_official_client_tunes_serves_and_cancels(
    server: EmulatorServer, dataset: tuple[InMemoryObjectStore, list[tuple[str, str]]]
) -> None:
    _, pairs = dataset
    api = clients(server)
    tuning: GenAiTuningServiceClient = api["tuning"]
    created = tuning.create_tuning_job(parent=PARENT, tuning_job=tuning_job("req-1", 2))
    assert created.state.name == "JOB_STATE_PENDING"
    assert created.service_account == f"tuner@{PROJECT}.iam.gserviceaccount.com"

    listed = list(
        tuning.list_tuning_jobs(
            request=ListTuningJobsRequest(parent=PARENT, filter='labels.distillery-job-id="req-1"')
        )
    )
    assert [j.name for j in listed] == [created.name]

    def finished() -> TuningJob | None:
        job = tuning.get_tuning_job(name=created.name)
        return job if job.state.name in TERMINAL else None

    job: TuningJob = wait_for(finished, timeout=60, interval=0.25, what=created.name)
    assert job.state.name == "JOB_STATE_SUCCEEDED", job.error.message
    stats = job.tuning_data_stats.supervised_tuning_data_stats
    assert stats.tuning_dataset_example_count == 16
    assert stats.tuning_step_count == 4  # ceil(16 examples x 2 epochs / batch 8)
    model = api["models"].get_model(name=job.tuned_model.model)
    assert model.display_name == "news-req-1" and model.version_id == "1"
    endpoint = api["endpoints"].get_endpoint(name=job.tuned_model.endpoint)
    assert endpoint.display_name == "news-req-1"
    assert [d.model for d in endpoint.deployed_models] == [model.name]

    prompt = pairs[0][0]
    answer = api["prediction"].generate_content(
        request=GenerateContentRequest(
            model=endpoint.name, contents=[Content(role="user", parts=[Part(text=prompt)])]
        )
    )
    [candidate] = answer.candidates
    text = candidate.content.parts[0].text
    assert candidate.content.role == "model" and candidate.finish_reason.name == "STOP"
    assert answer.usage_metadata.total_token_count >= answer.usage_metadata.prompt_token_count
    # generateContent is answered by the deployed model, as :predict is.
    instance = struct_pb2.Value()
    json_format.ParseDict({"prompt": prompt}, instance)
    predicted = api["prediction"].predict(endpoint=endpoint.name, instances=[instance])
    assert text == predicted.predictions[0]["content"]

    adapter = VertexTuningJobsAdapter(PROJECT, api_endpoint=server.url)
    assert adapter.generate(endpoint.name, prompt) == text
    found = adapter.find_by_label(REGION, "distillery-job-id", "req-1")
    assert found is not None and found.name == job.name and found.endpoint == endpoint.name

    other = tuning.create_tuning_job(parent=PARENT, tuning_job=tuning_job("req-2", 50))
    wait_for(
        lambda: tuning.get_tuning_job(name=other.name).state.name == "JOB_STATE_RUNNING",
        timeout=30,
        interval=0.1,
        what=f"{other.name} running",
    )
    tuning.cancel_tuning_job(name=other.name)

    def cancelled() -> TuningJob | None:
        job = tuning.get_tuning_job(name=other.name)
        return job if job.state.name in TERMINAL else None

    stopped: TuningJob = wait_for(cancelled, timeout=30, interval=0.1, what=other.name)
    assert stopped.state.name == "JOB_STATE_CANCELLED"
    assert stopped.error.code == 1
    assert not stopped.tuned_model.model
