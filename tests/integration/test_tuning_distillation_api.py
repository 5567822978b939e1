"""Gemini distillation (v1beta1 ``distillationSpec``) on the local Vertex AI API, through Google's
official v1beta1 GAPIC REST client and the product's adapter.

An in-process emulator with the real local trainer (torch, one thread): a supervised tuning job
trains the local teacher (a model of the local Model Registry named as the teacher,
``gemini-3.1-pro``), then a distillation job gives it a prompts-only dataset: the teacher writes
the responses and the student is tuned on them, deployed, and answers ``generateContent``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1 as v1
from google.cloud import aiplatform_v1beta1 as beta

from distillery.adapters.tuning import VertexTuningJobsAdapter
from distillery.fakes import InMemoryObjectStore
from distillery.local.emulator import EmulatorServer
from tests.helpers import wait_for
from tests.integration.test_tuning_api import (
    BUCKET,
    PARENT,
    PROJECT,
    REGION,
    TERMINAL,
)
from tests.integration.tuning_api import contents_lines, tuning_emulator

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[EmulatorServer, list[tuple[str, str]]]]:
    store = InMemoryObjectStore()
    data, pairs = contents_lines(16)
    store.put(BUCKET, "validated/news/train.jsonl", data)
    prompts = "".join(
        json.dumps({"contents": [{"role": "user", "parts": [{"text": prompt}]}]}) + "\n"
        for prompt, _ in pairs
    )
    store.put(BUCKET, "validated/news/prompts.jsonl", prompts.encode())
    with tuning_emulator(
        store, tmp_path / "emulator", project=PROJECT, bucket=BUCKET, start_delay_seconds=0.2
    ) as running:
        yield running, pairs


def _kwargs(server: EmulatorServer) -> dict[str, Any]:
    return {
        "transport": "rest",
        "credentials": AnonymousCredentials(),  # type: ignore[no-untyped-call]
        "client_options": {"api_endpoint": server.url},
    }


def _finished(client: Any, name: str) -> Any:
    def probe() -> Any:
        job = client.get_tuning_job(name=name)
        return job if job.state.name in TERMINAL else None

    return wait_for(probe, timeout=120, interval=0.25, what=name)


def test_the_official_v1beta1_client_distills(
    server: tuple[EmulatorServer, list[tuple[str, str]]],
) -> None:
    emulator, pairs = server
    supervised = v1.GenAiTuningServiceClient(**_kwargs(emulator))
    teacher_body = {
        "baseModel": "gemini-2.5-flash",
        "supervisedTuningSpec": {
            "trainingDatasetUri": f"gs://{BUCKET}/validated/news/train.jsonl",
            "hyperParameters": {"epochCount": 2},
        },
        "tunedModelDisplayName": "gemini-3.1-pro",
    }
    teacher = supervised.create_tuning_job(
        parent=PARENT, tuning_job=v1.TuningJob.from_json(json.dumps(teacher_body))
    )
    taught = _finished(supervised, teacher.name)
    assert taught.state.name == "JOB_STATE_SUCCEEDED", taught.error.message

    client = beta.GenAiTuningServiceClient(**_kwargs(emulator))
    body = {
        "baseModel": "gemini-2.5-flash",
        "distillationSpec": {
            "baseTeacherModel": "gemini-3.1-pro",
            "trainingDatasetUri": f"gs://{BUCKET}/validated/news/prompts.jsonl",
            "hyperParameters": {"epochCount": 2, "learningRateMultiplier": 1.0},
        },
        "tunedModelDisplayName": "news-distilled",
        "labels": {"distillery-job-id": "distill-1"},
    }
    # Outside us-central1 the service refuses distillation.
    with pytest.raises(gexc.BadRequest, match="us-central1 only"):
        client.create_tuning_job(
            parent=f"projects/{PROJECT}/locations/europe-west4",
            tuning_job=beta.TuningJob.from_json(json.dumps(body)),
        )
    created = client.create_tuning_job(
        parent=PARENT, tuning_job=beta.TuningJob.from_json(json.dumps(body))
    )
    assert created.distillation_spec.base_teacher_model == "gemini-3.1-pro"
    job = _finished(client, created.name)
    assert job.state.name == "JOB_STATE_SUCCEEDED", job.error.message
    stats = job.tuning_data_stats.distillation_data_stats.training_dataset_stats
    assert stats.tuning_dataset_example_count == 16
    assert stats.tuning_step_count == 4  # ceil(16 prompts x 2 epochs / batch 8)

    models = v1.ModelServiceClient(**_kwargs(emulator))
    model = models.get_model(name=job.tuned_model.model)
    assert model.display_name == "news-distilled" and model.version_id == "1"

    # The student answers generateContent, as a tuned model does; the product's adapter reads
    # the job through v1beta1 and asks its endpoint.
    adapter = VertexTuningJobsAdapter(PROJECT, api_endpoint=emulator.url)
    found = adapter.find_by_label(REGION, "distillery-job-id", "distill-1", api_version="v1beta1")
    assert found is not None and found.name == job.name
    assert found.state == "JOB_STATE_SUCCEEDED" and found.endpoint == job.tuned_model.endpoint
    answer = adapter.generate(job.tuned_model.endpoint, pairs[0][0])
    assert isinstance(answer, str)
