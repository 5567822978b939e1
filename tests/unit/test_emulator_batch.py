"""The local Vertex AI API's ``batchPredictionJobs``: requests checked as the service checks
them, every line answered by the local teacher or failed by itself, the documented output, the
states over time, and the official ``JobServiceClient`` and the product's adapter against it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
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

from distillery.adapters.batch import VertexBatchPredictionsAdapter
from distillery.core.errors import ObjectNotFoundError, RequestRejectedError
from distillery.core.settings import Settings
from distillery.facts import GEMINI_BATCH_PREDICTIONS_FILE
from distillery.fakes import InMemoryObjectStore, InMemoryPublisher
from distillery.local.emulator import EmulatorServer, LocalModels, TrainerOptions, create_server
from distillery.local.emulator._batch import BATCH_PUBLISHER_MODELS, validate_batch_job
from distillery.local.emulator._batch_runner import (
    CHUNK_LINES,
    BatchJobRun,
    BatchProgress,
    BatchRunner,
    step_by_step_text,
)
from distillery.local.emulator._batch_service import BatchService
from distillery.local.emulator._model import now
from distillery.local.emulator._runner import JobFailedError, RunContext
from distillery.local.emulator._status import ApiError
from tests.helpers import wait_for
from tests.unit import test_emulator_fake_trainer as fake

PROJECT = "p-batch"
BUCKET = "bkt"
REGION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
SETTINGS = Settings(project=PROJECT, bucket=BUCKET)
FAKE_MODULE = "tests.unit.test_emulator_fake_trainer"
TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")
INPUT = f"gs://{BUCKET}/labeling/news/in.jsonl"


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def request_line(text: str, **extra: Any) -> dict[str, Any]:
    return {"request": {"contents": [user(text)]}, **extra}


#: Four good lines and three the teacher cannot answer.
LINES: list[dict[str, Any]] = [
    request_line("the match ended 3-1", key=0),
    request_line("stocks fell sharply", key=1),
    {"request": {"generationConfig": {"maxOutputTokens": 8}}, "key": 2},  # no contents
    request_line("   ", key=3),  # no text to answer
    request_line("a new comet was seen", key=4),
    {"request": {"contents": [user("hi"), {"role": "model", "parts": [{"text": "x"}]}]}, "key": 5},
    request_line("rain is coming", key=6),
]
FAILING_KEYS = {2, 3, 5}


def jsonl(lines: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def body(**changes: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "displayName": "label-news",
        "model": "publishers/google/models/gemini-2.5-pro",
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [INPUT]}},
        "outputConfig": {
            "predictionsFormat": "jsonl",
            "gcsDestination": {"outputUriPrefix": f"gs://{BUCKET}/labeling/news/out"},
        },
        "labels": {"distillery-job-id": "job-1"},
    }
    job.update(changes)
    return job


def read_output(store: InMemoryObjectStore, directory: str) -> list[dict[str, Any]]:
    bucket, _, path = directory.removeprefix("gs://").partition("/")
    data = store.read_bytes(bucket, f"{path}/{GEMINI_BATCH_PREDICTIONS_FILE}")
    return [json.loads(line) for line in data.splitlines()]


def text_of(line: dict[str, Any]) -> str:
    return str(line["response"]["candidates"][0]["content"]["parts"][0]["text"])


# --- Requests ---------------------------------------------------------------------------------


def test_a_documented_request_is_accepted_and_echoed() -> None:
    request = validate_batch_job(REGION, body(serviceAccount="sa@p.iam.gserviceaccount.com"))
    assert request.publisher_model_id == "gemini-2.5-pro"
    assert request.input_uris == (INPUT,)
    assert request.echo()["outputConfig"] == body()["outputConfig"]
    assert request.echo()["serviceAccount"] == "sa@p.iam.gserviceaccount.com"
    assert request.labels == {"distillery-job-id": "job-1"}


def test_a_location_qualified_publisher_model_is_the_same_model() -> None:
    qualified = f"projects/{PROJECT}/locations/{REGION}/publishers/google/models/gemini-2.5-flash"
    assert validate_batch_job(REGION, body(model=qualified)).model == (
        "publishers/google/models/gemini-2.5-flash"
    )


def test_the_gemini_teachers_are_known() -> None:
    assert {"gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"} <= BATCH_PUBLISHER_MODELS


@pytest.mark.parametrize(
    ("changes", "status", "words"),
    [
        ({"model": "publishers/google/models/gemini-9-ultra"}, "NOT_FOUND", "Publisher Model"),
        ({"model": f"{PARENT}/models/404"}, "NOT_FOUND", "is not found"),
        ({"model": "gemini-2.5-pro"}, "INVALID_ARGUMENT", "publishers/google/models/MODEL"),
        ({"model": ""}, "INVALID_ARGUMENT", "model is required"),
        ({"displayName": ""}, "INVALID_ARGUMENT", "displayName is required"),
        ({"teacher": "x"}, "INVALID_ARGUMENT", 'Unknown name "teacher"'),
        ({"inputConfig": {"instancesFormat": "jsonl"}}, "INVALID_ARGUMENT", "uris is required"),
        (
            {"inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["s3://x/y"]}}},
            "INVALID_ARGUMENT",
            "Cloud Storage URI",
        ),
        (
            {
                "inputConfig": {
                    "instancesFormat": "bigquery",
                    "bigquerySource": {"inputUri": "bq://a.b.c"},
                }
            },
            "UNIMPLEMENTED",
            "not emulated",
        ),
        ({"outputConfig": {"predictionsFormat": "jsonl"}}, "INVALID_ARGUMENT", "outputUriPrefix"),
        ({"dedicatedResources": {"machineSpec": {}}}, "UNIMPLEMENTED", "dedicatedResources"),
        ({"labels": {"Bad": "x"}}, "INVALID_ARGUMENT", "Label key"),
    ],
)
def test_a_request_the_service_refuses_is_refused(
    changes: dict[str, Any], status: str, words: str
) -> None:
    with pytest.raises(ApiError) as raised:
        validate_batch_job(REGION, body(**changes))
    assert raised.value.status == status
    assert words in raised.value.message


def test_output_only_fields_a_client_echoes_back_are_ignored() -> None:
    echoed = body(name=f"{PARENT}/batchPredictionJobs/1", state="JOB_STATE_RUNNING", createTime="x")
    assert validate_batch_job(REGION, echoed).display_name == "label-news"


def test_a_registered_model_is_a_model() -> None:
    name = f"{PARENT}/models/42"
    assert validate_batch_job(REGION, body(model=name), lambda n: n == name).model == name


# --- The runner and the local teacher -----------------------------------------------------------


class StubTeacher:
    """Answers by the first word; explains when told it can."""

    def __init__(self, can_explain: bool = False) -> None:
        self.can_explain = can_explain
        self.asked: list[list[str]] = []

    def predict(self, prompts: Sequence[str]) -> list[str]:
        self.asked.append(list(prompts))
        return [f"label of {p.split()[0]}" for p in prompts]

    def explain(self, prompts: Sequence[str]) -> list[str]:
        return [f"because {p.split()[-1]}" for p in prompts]


class StubTeachers:
    def __init__(self, teacher: StubTeacher | None) -> None:
        self._teacher = teacher

    def teacher(self, project: str, model: str) -> StubTeacher:
        if self._teacher is None:
            raise JobFailedError("FAILED_PRECONDITION", f"no local teacher stands in for {model}")
        return self._teacher


def run_job(
    lines: Sequence[dict[str, Any]] | None,
    teacher: StubTeacher | None,
    *,
    cancelled: bool = False,
) -> tuple[InMemoryObjectStore, Any, list[BatchProgress]]:
    store = InMemoryObjectStore()
    if lines is not None:
        store.put(BUCKET, "labeling/news/in.jsonl", jsonl(lines))
    job = BatchJobRun(
        name=f"{PARENT}/batchPredictionJobs/7",
        job_id="7",
        project=PROJECT,
        location=REGION,
        request=validate_batch_job(REGION, body()),
        create_time=now(),
    )
    context = RunContext(store)
    if cancelled:
        context.cancel_requested.set()
    reports: list[BatchProgress] = []
    result = BatchRunner(StubTeachers(teacher)).run(job, context, reports.append)
    return store, result, reports


def test_every_line_is_answered_or_failed_by_itself() -> None:
    store, result, reports = run_job(LINES, StubTeacher())
    assert (result.progress.successful, result.progress.failed) == (4, 3)
    assert result.progress.incomplete == 0 and not result.cancelled
    assert reports[-1].stats() == {
        "successfulCount": "4",
        "failedCount": "3",
        "incompleteCount": "0",
    }
    assert "/prediction-model-" in result.output_directory
    out = read_output(store, result.output_directory)
    assert len(out) == len(LINES)
    by_key = {line["key"]: line for line in out}
    assert sorted(by_key) == list(range(len(LINES)))
    for key, line in by_key.items():
        assert line["request"] == LINES[key]["request"]  # matched back by the request itself
        if key in FAILING_KEYS:
            assert "response" not in line
            assert json.loads(line["status"])["error"]["status"] == "INVALID_ARGUMENT"
        else:
            assert line["status"] == ""
            usage = line["response"]["usageMetadata"]
            assert (
                usage["totalTokenCount"]
                == usage["promptTokenCount"] + usage["candidatesTokenCount"]
            )
            assert line["response"]["modelVersion"] == "gemini-2.5-pro"
    assert text_of(by_key[0]) == "label of the"
    assert "contents is required" in by_key[2]["status"]
    assert "no text to answer" in by_key[3]["status"]
    assert '"user" role' in json.loads(by_key[5]["status"])["error"]["message"]


def test_a_line_that_is_not_json_fails_alone() -> None:
    store = InMemoryObjectStore()
    store.put(
        BUCKET, "labeling/news/in.jsonl", b'{"request": \n' + jsonl([request_line("ok then")])
    )
    job = BatchJobRun(
        name=f"{PARENT}/batchPredictionJobs/8",
        job_id="8",
        project=PROJECT,
        location=REGION,
        request=validate_batch_job(REGION, body()),
        create_time=now(),
    )
    result = BatchRunner(StubTeachers(StubTeacher())).run(job, RunContext(store))
    assert (result.progress.successful, result.progress.failed) == (1, 1)
    [bad] = [line for line in read_output(store, result.output_directory) if line["status"]]
    assert "not JSON" in bad["status"]


def test_with_an_instruction_a_teacher_that_can_explain_gives_its_rationale_first() -> None:
    lines = [
        {
            "request": {
                "contents": [user("why the sky")],
                "systemInstruction": {"parts": [{"text": "Explain step by step."}]},
            }
        },
        request_line("plain question"),
    ]
    teacher = StubTeacher(can_explain=True)
    store, result, _ = run_job(lines, teacher)
    texts = sorted(text_of(line) for line in read_output(store, result.output_directory))
    assert texts == sorted([step_by_step_text("because sky", "label of why"), "label of plain"])
    # The teacher reads the conversation, not the instruction.
    assert teacher.asked == [["why the sky", "plain question"]]


def test_generation_limits_cut_the_answer() -> None:
    lines = [
        {
            "request": {
                "contents": [user("long answer please")],
                "generationConfig": {"maxOutputTokens": 2},
            }
        },
        {
            "request": {
                "contents": [user("stop here")],
                "generationConfig": {"stopSequences": [" of"]},
            }
        },
    ]
    store, result, _ = run_job(lines, StubTeacher())
    out = {
        line["request"]["contents"][0]["parts"][0]["text"]: line
        for line in read_output(store, result.output_directory)
    }
    assert text_of(out["long answer please"]) == "label of"
    assert out["long answer please"]["response"]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert text_of(out["stop here"]) == "label"


def test_no_teacher_no_input_or_an_empty_input_fail_the_job() -> None:
    with pytest.raises(JobFailedError) as raised:
        run_job(LINES, None)
    assert raised.value.code == "FAILED_PRECONDITION"
    with pytest.raises(JobFailedError) as raised:
        run_job(None, StubTeacher())
    assert raised.value.code == "NOT_FOUND"
    with pytest.raises(JobFailedError) as raised:
        run_job([], StubTeacher())
    assert raised.value.code == "INVALID_ARGUMENT"


def test_a_cancelled_run_writes_what_it_answered_and_counts_the_rest_incomplete() -> None:
    store, result, _ = run_job(LINES, StubTeacher(), cancelled=True)
    assert result.cancelled
    assert result.progress.incomplete == len(LINES) and result.progress.successful == 0
    assert read_output(store, result.output_directory) == []


# --- The server, through the official client ----------------------------------------------------


@pytest.fixture
def store() -> InMemoryObjectStore:
    objects = InMemoryObjectStore()
    objects.put(BUCKET, "labeling/news/in.jsonl", jsonl(LINES))
    return objects


@pytest.fixture
def start(store: InMemoryObjectStore, tmp_path: Path) -> Iterator[Callable[..., EmulatorServer]]:
    servers: list[EmulatorServer] = []
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    memory = {"the match ended 3-1": "sports", "stocks fell sharply": "business"}
    (teacher / fake.MODEL_FILE).write_text(json.dumps({"memory": memory, "majority": "science"}))

    def start_server(
        *, trained: bool = True, teachers: bool = True, delay: float = 0.2
    ) -> EmulatorServer:
        local = LocalModels(teachers={"gemini-2.5-pro": teacher} if teachers else {})
        options = TrainerOptions(
            trainer_module=FAKE_MODULE, data_dir=tmp_path / "data", local_models=local
        )
        server = create_server(
            SETTINGS,
            object_store=store,
            publisher=InMemoryPublisher(),
            trainer=options if trained else None,
            batch_start_delay_seconds=delay,
        )
        servers.append(server.start())
        return server

    yield start_server
    for server in servers:
        server.stop(timeout=10)


def job_client(server: EmulatorServer) -> JobServiceClient:
    return JobServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": server.url},
    )


def create(client: JobServiceClient, **changes: Any) -> BatchPredictionJob:
    job = BatchPredictionJob.from_json(json.dumps(body(**changes)))
    return client.create_batch_prediction_job(parent=PARENT, batch_prediction_job=job)


def wait(client: JobServiceClient, name: str) -> BatchPredictionJob:
    def probe() -> BatchPredictionJob | None:
        job = client.get_batch_prediction_job(name=name)
        return job if job.state.name in TERMINAL else None

    result: BatchPredictionJob = wait_for(probe, timeout=30, interval=0.05, what=name)
    return result


def test_the_official_client_runs_a_job_to_its_documented_output(
    start: Callable[..., EmulatorServer], store: InMemoryObjectStore
) -> None:
    client = job_client(start())
    created = create(client)
    assert created.state.name == "JOB_STATE_PENDING"
    assert created.name.startswith(f"{PARENT}/batchPredictionJobs/")
    assert created.model == "publishers/google/models/gemini-2.5-pro"
    job = wait(client, created.name)
    assert job.state.name == "JOB_STATE_SUCCEEDED", job.error.message
    assert job.start_time and job.end_time
    stats = job.completion_stats
    assert (stats.successful_count, stats.failed_count, stats.incomplete_count) == (4, 3, 0)
    out = read_output(store, job.output_info.gcs_output_directory)
    answers = {line["key"]: line for line in out}
    assert {k for k, line in answers.items() if line["status"]} == FAILING_KEYS
    assert text_of(answers[0]) == "sports" and text_of(answers[1]) == "business"
    assert text_of(answers[4]) == "science"


def test_list_filters_by_label_and_pages(start: Callable[..., EmulatorServer]) -> None:
    client = job_client(start(delay=5))
    first = create(client, labels={"distillery-job-id": "a"})
    second = create(client, labels={"distillery-job-id": "a"})
    create(client, labels={"distillery-job-id": "b"})
    found = list(
        client.list_batch_prediction_jobs(
            request=ListBatchPredictionJobsRequest(
                parent=PARENT, filter='labels.distillery-job-id="a"'
            )
        )
    )
    assert [j.name for j in found] == [second.name, first.name]  # newest first
    pager = client.list_batch_prediction_jobs(
        request=ListBatchPredictionJobsRequest(parent=PARENT, page_size=2)
    )
    pages = list(pager.pages)
    assert [len(p.batch_prediction_jobs) for p in pages] == [2, 1]
    with pytest.raises(gexc.BadRequest):
        list(
            client.list_batch_prediction_jobs(
                request=ListBatchPredictionJobsRequest(parent=PARENT, filter="state=NOPE")
            )
        )


def test_an_unknown_model_is_refused_as_not_found(start: Callable[..., EmulatorServer]) -> None:
    client = job_client(start())
    with pytest.raises(gexc.NotFound, match="Publisher Model"):
        create(client, model="publishers/google/models/gemini-0-nano")
    with pytest.raises(gexc.BadRequest, match="displayName"):
        create(client, displayName="")


@pytest.mark.parametrize(("trained", "words"), [(True, "no local teacher"), (False, "no trainer")])
def test_without_a_local_teacher_the_job_fails_with_how_to_configure_one(
    start: Callable[..., EmulatorServer], trained: bool, words: str
) -> None:
    client = job_client(start(trained=trained, teachers=False))
    job = wait(client, create(client).name)
    assert job.state.name == "JOB_STATE_FAILED"
    assert job.error.code == 9 and words in job.error.message


def test_a_missing_input_fails_the_job(start: Callable[..., EmulatorServer]) -> None:
    client = job_client(start())
    missing = {"instancesFormat": "jsonl", "gcsSource": {"uris": [f"gs://{BUCKET}/nothing.jsonl"]}}
    job = wait(client, create(client, inputConfig=missing).name)
    assert job.state.name == "JOB_STATE_FAILED" and job.error.code == 5


def test_cancel_ends_a_pending_job_and_refuses_an_ended_one(
    start: Callable[..., EmulatorServer],
) -> None:
    client = job_client(start(delay=5))
    created = create(client)
    client.cancel_batch_prediction_job(name=created.name)
    job = client.get_batch_prediction_job(name=created.name)
    assert job.state.name == "JOB_STATE_CANCELLED" and job.error.code == 1
    with pytest.raises(gexc.BadRequest, match="already in state"):
        client.cancel_batch_prediction_job(name=created.name)
    with pytest.raises(gexc.NotFound):
        client.get_batch_prediction_job(name=f"{PARENT}/batchPredictionJobs/1")


def test_the_adapter_creates_adopts_by_label_polls_and_cancels(
    start: Callable[..., EmulatorServer], store: InMemoryObjectStore
) -> None:
    adapter = VertexBatchPredictionsAdapter(PROJECT, api_endpoint=start(delay=0.5).url)
    created = adapter.create(REGION, body(labels={"distillery-job-id": "job-7"}))
    assert created.state == "JOB_STATE_PENDING" and created.job_id.isdigit()
    assert adapter.find_by_label(REGION, "distillery-job-id", "job-8") is None
    adopted = adapter.find_by_label(REGION, "distillery-job-id", "job-7")
    assert adopted is not None and adopted.name == created.name
    done = wait_for(
        lambda: (info := adapter.get(created.name)).state in TERMINAL and info,
        timeout=30,
        interval=0.05,
    )
    assert done.state == "JOB_STATE_SUCCEEDED", done.error
    assert (done.successful_count, done.failed_count, done.incomplete_count) == (4, 3, 0)
    assert done.output_directory is not None and len(read_output(store, done.output_directory)) == 7
    with pytest.raises(RequestRejectedError, match="already"):
        adapter.cancel(created.name)
    pending = adapter.create(REGION, body(labels={"distillery-job-id": "job-9"}))
    adapter.cancel(pending.name)
    cancelled = adapter.get(pending.name)
    assert cancelled.state == "JOB_STATE_CANCELLED" and cancelled.error is not None
    with pytest.raises(ObjectNotFoundError):
        adapter.create(REGION, body(model="publishers/google/models/gemini-0-nano"))
    with pytest.raises(RequestRejectedError, match="does not parse"):
        adapter.create(REGION, body(teacher="x"))


class CancellingTeacher(StubTeacher):
    """Asks for the job's cancel while it answers its first chunk."""

    def __init__(self, context: RunContext) -> None:
        super().__init__()
        self.context = context

    def predict(self, prompts: Sequence[str]) -> list[str]:
        self.context.cancel_requested.set()
        return super().predict(prompts)


def test_a_run_cancelled_midway_writes_the_lines_it_answered() -> None:
    store = InMemoryObjectStore()
    lines = [request_line(f"question {i}", key=i) for i in range(CHUNK_LINES + 8)]
    store.put(BUCKET, "labeling/news/in.jsonl", jsonl(lines))
    context = RunContext(store)
    job = BatchJobRun(
        name=f"{PARENT}/batchPredictionJobs/9",
        job_id="9",
        project=PROJECT,
        location=REGION,
        request=validate_batch_job(REGION, body()),
        create_time=now(),
    )
    result = BatchRunner(StubTeachers(CancellingTeacher(context))).run(job, context)
    assert result.cancelled
    assert (result.progress.successful, result.progress.incomplete) == (CHUNK_LINES, 8)
    out = read_output(store, result.output_directory)
    assert sorted(line["key"] for line in out) == list(range(CHUNK_LINES))


def test_the_service_cancels_a_running_job_through_cancelling_with_its_partial_output() -> None:
    store = InMemoryObjectStore()
    lines = [request_line(f"question {i}", key=i) for i in range(CHUNK_LINES + 8)]
    store.put(BUCKET, "labeling/news/in.jsonl", jsonl(lines))
    gate, answering = threading.Event(), threading.Event()

    class GatedTeacher(StubTeacher):
        def predict(self, prompts: Sequence[str]) -> list[str]:
            answering.set()
            gate.wait(10)
            return super().predict(prompts)

    service = BatchService(
        object_store=store,
        runner=BatchRunner(StubTeachers(GatedTeacher())),
        start_delay_seconds=0,
    )
    service.start()
    try:
        created = service.create(PROJECT, REGION, body())
        job_id = created["name"].rsplit("/", 1)[-1]
        assert answering.wait(10)
        assert service.get(PROJECT, REGION, job_id)["state"] == "JOB_STATE_RUNNING"
        service.cancel(PROJECT, REGION, job_id)
        assert service.get(PROJECT, REGION, job_id)["state"] == "JOB_STATE_CANCELLING"
        gate.set()
        job = wait_for(
            lambda: (r := service.get(PROJECT, REGION, job_id))["state"] in TERMINAL and r,
            timeout=10,
            interval=0.02,
        )
    finally:
        gate.set()
        service.shutdown()
    assert job["state"] == "JOB_STATE_CANCELLED"
    assert job["error"]["code"] == 1
    assert job["completionStats"] == {
        "successfulCount": str(CHUNK_LINES),
        "failedCount": "0",
        "incompleteCount": "8",
    }
    assert len(read_output(store, job["outputInfo"]["gcsOutputDirectory"])) == CHUNK_LINES
