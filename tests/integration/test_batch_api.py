"""Gemini batch prediction on the local Vertex AI API, through Google's official client.

fake-gcs-server holds a small JSONL of requests; an in-process local Vertex AI API (with the
light fake trainer's predictor as the local teacher: this proves the API, not the teacher)
answers it. The GAPIC ``JobServiceClient`` (REST, anonymous credentials) creates the job, polls
it to SUCCEEDED, and the output lines match the input lines one to one, with the failed lines
reported by line; the product's adapter does the same through its port (create, adopt by label,
cancel), and a tuned model of the local registry answers a job too.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import (
    BatchPredictionJob,
    JobServiceClient,
    ListBatchPredictionJobsRequest,
)

from distillery.adapters import GcsObjectStore
from distillery.adapters.batch import VertexBatchPredictionsAdapter
from distillery.core.errors import RequestRejectedError
from distillery.core.settings import Settings
from distillery.facts import GEMINI_BATCH_PREDICTIONS_FILE
from distillery.fakes import InMemoryPublisher
from distillery.local.emulator import EmulatorServer, LocalModels, TrainerOptions, create_server
from distillery.local.stack._clients import storage_client
from distillery.local.stack.processes import free_port, http_status
from distillery.local.stack.tools import find_fake_gcs_server
from tests.helpers import wait_for
from tests.unit import test_emulator_fake_trainer as fake

pytestmark = pytest.mark.integration

PROJECT = "p-batch"
BUCKET = "bkt-batch"
REGION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
FAKE_MODULE = "tests.unit.test_emulator_fake_trainer"
TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")
INPUT = "labeling/news/requests.jsonl"
#: What the local teacher learnt; anything else it answers with the majority label.
MEMORY = {"The match ended 3-1 after extra time.": "sports", "Stocks fell sharply.": "business"}


def line(text: str | None, number: int) -> dict[str, Any]:
    """One request line; ``None``: a request without contents (the teacher cannot answer it)."""
    request: dict[str, Any] = {"generationConfig": {"maxOutputTokens": 32, "temperature": 0}}
    if text is not None:
        request["contents"] = [{"role": "user", "parts": [{"text": text}]}]
    return {"request": request, "line": number}


LINES = [
    line("The match ended 3-1 after extra time.", 0),
    line("Stocks fell sharply.", 1),
    line(None, 2),
    line("A comet was seen over the city.", 3),
    line("", 4),
]
FAILED = {2, 4}


@pytest.fixture(scope="module")
def storage_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fake-gcs-server of this module only (no event notifications)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("fake-gcs") / "fake-gcs.log"
    argv = [
        str(find_fake_gcs_server()), "-scheme", "http", "-host", "127.0.0.1",
        "-port", str(port), "-backend", "memory", "-external-url", url, "-log-level", "warn",
    ]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(
            lambda: http_status(f"{url}/storage/v1/b") == 200 or process.poll() is not None,
            timeout=30,
            interval=0.1,
            what="fake-gcs-server",
        )
        assert process.poll() is None, log.read_text()
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def store(storage_url: str) -> GcsObjectStore:
    client = storage_client(storage_url, PROJECT)
    if client.lookup_bucket(BUCKET) is None:
        client.create_bucket(BUCKET)
    objects = GcsObjectStore(client)
    data = "".join(json.dumps(entry) + "\n" for entry in LINES).encode()
    objects.write_bytes(BUCKET, INPUT, data, content_type="application/jsonl")
    return objects


@pytest.fixture
def server(store: GcsObjectStore, tmp_path: Path) -> Iterator[EmulatorServer]:
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / fake.MODEL_FILE).write_text(json.dumps({"memory": MEMORY, "majority": "science"}))
    options = TrainerOptions(
        trainer_module=FAKE_MODULE,
        data_dir=tmp_path / "emulator",
        local_models=LocalModels(teachers={"gemini-2.5-pro": teacher}),
    )
    running = create_server(
        Settings(project=PROJECT, bucket=BUCKET),
        object_store=store,
        publisher=InMemoryPublisher(),
        trainer=options,
        batch_start_delay_seconds=0.3,
    ).start()
    yield running
    running.stop(timeout=20)


def job_body(
    request_id: str, model: str = "publishers/google/models/gemini-2.5-pro"
) -> dict[str, Any]:
    return {
        "displayName": f"label-{request_id}",
        "model": model,
        "inputConfig": {
            "instancesFormat": "jsonl",
            "gcsSource": {"uris": [f"gs://{BUCKET}/{INPUT}"]},
        },
        "outputConfig": {
            "predictionsFormat": "jsonl",
            "gcsDestination": {"outputUriPrefix": f"gs://{BUCKET}/labeling/news/{request_id}"},
        },
        "labels": {"distillery-job-id": request_id},
    }


def client_of(server: EmulatorServer) -> JobServiceClient:
    return JobServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": server.url},
    )


def finished(client: JobServiceClient, name: str) -> BatchPredictionJob:
    def probe() -> BatchPredictionJob | None:
        job = client.get_batch_prediction_job(name=name)
        return job if job.state.name in TERMINAL else None

    job: BatchPredictionJob = wait_for(probe, timeout=60, interval=0.1, what=name)
    return job


def output(store: GcsObjectStore, directory: str) -> list[dict[str, Any]]:
    bucket, _, prefix = directory.removeprefix("gs://").partition("/")
    assert store.list_names(bucket, prefix + "/") == [f"{prefix}/{GEMINI_BATCH_PREDICTIONS_FILE}"]
    data = store.read_bytes(bucket, f"{prefix}/{GEMINI_BATCH_PREDICTIONS_FILE}")
    return [json.loads(raw) for raw in data.splitlines()]


def test_the_official_client_runs_a_batch_job_line_for_line(
    server: EmulatorServer, store: GcsObjectStore
) -> None:
    client = client_of(server)
    job = BatchPredictionJob.from_json(json.dumps(job_body("req-1")))
    created = client.create_batch_prediction_job(parent=PARENT, batch_prediction_job=job)
    assert created.state.name == "JOB_STATE_PENDING"
    assert created.display_name == "label-req-1"
    listed = client.list_batch_prediction_jobs(
        request=ListBatchPredictionJobsRequest(
            parent=PARENT, filter='labels.distillery-job-id="req-1"'
        )
    )
    assert [j.name for j in listed] == [created.name]

    done = finished(client, created.name)
    assert done.state.name == "JOB_STATE_SUCCEEDED", done.error.message
    stats = done.completion_stats
    assert (stats.successful_count, stats.failed_count, stats.incomplete_count) == (3, 2, 0)
    directory = done.output_info.gcs_output_directory
    assert directory.startswith(f"gs://{BUCKET}/labeling/news/req-1/prediction-model-")

    lines = output(store, directory)
    # One output line per input line, matched back by the request the line carries.
    assert sorted(entry["line"] for entry in lines) == list(range(len(LINES)))
    for entry in lines:
        assert entry["request"] == LINES[entry["line"]]["request"]
    by_line = {entry["line"]: entry for entry in lines}
    assert {n for n, entry in by_line.items() if entry["status"]} == FAILED
    for number in FAILED:
        assert "response" not in by_line[number]
        assert json.loads(by_line[number]["status"])["error"]["code"] == 400
    answers = {
        n: entry["response"]["candidates"][0]["content"]["parts"][0]["text"]
        for n, entry in by_line.items()
        if n not in FAILED
    }
    assert answers == {0: "sports", 1: "business", 3: "science"}
    usage = by_line[0]["response"]["usageMetadata"]
    assert usage["promptTokenCount"] > 0 and usage["candidatesTokenCount"] == 1

    with pytest.raises(gexc.NotFound, match="Publisher Model"):
        client.create_batch_prediction_job(
            parent=PARENT,
            batch_prediction_job=BatchPredictionJob.from_json(
                json.dumps(job_body("req-x", "publishers/google/models/gemini-0-nano"))
            ),
        )


def test_a_model_of_the_local_registry_answers_a_batch_job(
    server: EmulatorServer, store: GcsObjectStore
) -> None:
    # A teacher whose artifacts live in the bucket, registered as a tuned model would be.
    store.write_bytes(
        BUCKET,
        "models/house-teacher/memory.json",
        json.dumps({"memory": {}, "majority": "weather"}).encode(),
    )
    model = server.models.register(
        project=PROJECT,
        location=REGION,
        display_name="house-teacher",
        artifact_uri=f"gs://{BUCKET}/models/house-teacher",
        files=("memory.json",),
    )
    client = client_of(server)
    job = BatchPredictionJob.from_json(json.dumps(job_body("req-2", model.name)))
    done = finished(
        client, client.create_batch_prediction_job(parent=PARENT, batch_prediction_job=job).name
    )
    assert done.state.name == "JOB_STATE_SUCCEEDED", done.error.message
    texts = {
        entry["response"]["candidates"][0]["content"]["parts"][0]["text"]
        for entry in output(store, done.output_info.gcs_output_directory)
        if not entry["status"]
    }
    assert texts == {"weather"}


def test_the_adapter_creates_adopts_polls_and_cancels(
    server: EmulatorServer, store: GcsObjectStore
) -> None:
    adapter = VertexBatchPredictionsAdapter(PROJECT, api_endpoint=server.url)
    created = adapter.create(REGION, job_body("req-3"))
    assert created.state == "JOB_STATE_PENDING"
    # A create whose answer was lost: the next attempt adopts the job by its label.
    adopted = adapter.find_by_label(REGION, "distillery-job-id", "req-3")
    assert adopted is not None and adopted.name == created.name
    assert adapter.find_by_label(REGION, "distillery-job-id", "req-4") is None
    done = wait_for(
        lambda: (info := adapter.get(created.name)).state in TERMINAL and info,
        timeout=60,
        interval=0.1,
    )
    assert done.state == "JOB_STATE_SUCCEEDED", done.error
    assert (done.successful_count, done.failed_count) == (3, 2)
    assert done.output_directory is not None and len(output(store, done.output_directory)) == 5
    with pytest.raises(RequestRejectedError, match="already"):
        adapter.cancel(created.name)

    pending = adapter.create(REGION, job_body("req-5"))
    adapter.cancel(pending.name)
    cancelled = adapter.get(pending.name)
    assert cancelled.state == "JOB_STATE_CANCELLED"
    assert cancelled.error is not None and "cancelled" in cancelled.error
    assert cancelled.output_directory is None
