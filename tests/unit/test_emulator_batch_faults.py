"""Fault injection in the local ``batchPredictionJobs``: chosen request lines fail as the service
fails a row (no ``response``, a non-empty ``status`` holding a google.rpc error), the rest are
answered, the job still succeeds, and the settings reach the emulator only from the stack."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distillery.core.errors import ConfigurationError
from distillery.fakes import InMemoryObjectStore, InMemoryPublisher
from distillery.local.emulator import EmulatorServer, LocalModels, TrainerOptions, create_server
from distillery.local.emulator._batch import validate_batch_job
from distillery.local.emulator._batch_runner import BatchJobRun, BatchRunner
from distillery.local.emulator._config import (
    BATCH_FAIL_LINES_VARIABLE,
    BATCH_FAIL_MARKER_VARIABLE,
    CREATE_DELAY_VARIABLE,
    BatchFaults,
)
from distillery.local.emulator._model import now
from distillery.local.emulator._runner import RunContext
from distillery.local.stack import _services
from tests.unit import test_emulator_fake_trainer as fake
from tests.unit.test_emulator_batch import (
    BUCKET,
    FAKE_MODULE,
    PARENT,
    PROJECT,
    REGION,
    SETTINGS,
    StubTeacher,
    StubTeachers,
    body,
    create,
    job_client,
    jsonl,
    read_output,
    request_line,
    text_of,
    user,
    wait,
)

MARKER = "[wire desk]"
#: Line 3 fails by itself (no contents); 2 and 5 are chosen by number, 6 by the marker.
LINES: list[dict[str, Any]] = [
    request_line("the match ended 3-1", key=1),
    request_line("stocks fell sharply", key=2),
    {"request": {"generationConfig": {"maxOutputTokens": 8}}, "key": 3},
    request_line("a new comet was seen", key=4),
    request_line("rain is coming", key=5),
    request_line(f"the band toured {MARKER} again", key=6),
    {
        "request": {
            "contents": [user("an instruction does not count")],
            "systemInstruction": {"parts": [{"text": f"explain {MARKER}"}]},
        },
        "key": 7,
    },
]
FAULTS = BatchFaults(frozenset({2, 5}), MARKER)


def run(lines: list[dict[str, Any]], faults: BatchFaults) -> tuple[Any, dict[int, dict[str, Any]]]:
    store = InMemoryObjectStore()
    store.put(BUCKET, "labeling/news/in.jsonl", jsonl(lines))
    job = BatchJobRun(
        name=f"{PARENT}/batchPredictionJobs/3",
        job_id="3",
        project=PROJECT,
        location=REGION,
        request=validate_batch_job(REGION, body()),
        create_time=now(),
    )
    result = BatchRunner(StubTeachers(StubTeacher()), faults).run(job, RunContext(store))
    out = read_output(store, result.output_directory)
    return result, {line["key"]: line for line in out}


def test_batch_faults_from_env_reads_numbers_and_a_marker() -> None:
    environ = {BATCH_FAIL_LINES_VARIABLE: " 5, 2,,5 ", BATCH_FAIL_MARKER_VARIABLE: MARKER}
    faults = BatchFaults.from_env(environ)
    assert faults == FAULTS and faults
    assert BatchFaults.from_env(faults.env()) == faults
    assert faults.env() == {BATCH_FAIL_LINES_VARIABLE: "2,5", BATCH_FAIL_MARKER_VARIABLE: MARKER}
    none = BatchFaults.from_env({})
    assert not none and none.env() == {} and not none.fails(1, "anything")


@pytest.mark.parametrize("raw", ["two", "0", "-1", "1.5"])
def test_batch_faults_from_env_refuses_what_is_not_a_line_number(raw: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        BatchFaults.from_env({BATCH_FAIL_LINES_VARIABLE: f"3,{raw}"})
    message = str(raised.value)
    assert BATCH_FAIL_LINES_VARIABLE in message and repr(raw) in message


def test_batch_faults_fail_the_chosen_lines_as_the_service_fails_a_row() -> None:
    result, by_key = run(LINES, FAULTS)
    failed = {key for key, line in by_key.items() if line["status"]}
    assert failed == {2, 3, 5, 6}
    assert (result.progress.successful, result.progress.failed) == (3, 4)
    for key in (2, 5, 6):
        line = by_key[key]
        assert "response" not in line and line["request"] == LINES[key - 1]["request"]
        error = json.loads(line["status"])["error"]
        assert (error["code"], error["status"]) == (500, "INTERNAL")
        assert "injected" in error["message"]
    assert BATCH_FAIL_LINES_VARIABLE in by_key[2]["status"]
    assert BATCH_FAIL_MARKER_VARIABLE in by_key[6]["status"]
    # A line that fails by itself keeps its own error.
    assert json.loads(by_key[3]["status"])["error"]["status"] == "INVALID_ARGUMENT"
    # The marker is looked for in the conversation, not in the instruction.
    assert by_key[7]["status"] == "" and text_of(by_key[7]) == "label of an"
    assert text_of(by_key[1]) == "label of the" and text_of(by_key[4]) == "label of a"


def test_batch_faults_count_lines_of_the_file_blank_ones_included() -> None:
    store_lines = [request_line("first", key=1), request_line("third", key=3)]
    data = jsonl(store_lines[:1]) + b"\n" + jsonl(store_lines[1:])
    store = InMemoryObjectStore()
    store.put(BUCKET, "labeling/news/in.jsonl", data)
    job = BatchJobRun(
        name=f"{PARENT}/batchPredictionJobs/4",
        job_id="4",
        project=PROJECT,
        location=REGION,
        request=validate_batch_job(REGION, body()),
        create_time=now(),
    )
    faults = BatchFaults(frozenset({3}))
    result = BatchRunner(StubTeachers(StubTeacher()), faults).run(job, RunContext(store))
    by_key = {line["key"]: line for line in read_output(store, result.output_directory)}
    assert by_key[1]["status"] == "" and by_key[3]["status"] != ""


def test_without_faults_every_answerable_line_is_answered() -> None:
    result, by_key = run(LINES, BatchFaults())
    assert {key for key, line in by_key.items() if line["status"]} == {3}
    assert result.progress.failed == 1


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[EmulatorServer, InMemoryObjectStore]]:
    store = InMemoryObjectStore()
    store.put(BUCKET, "labeling/news/in.jsonl", jsonl(LINES))
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / fake.MODEL_FILE).write_text(json.dumps({"memory": {}, "majority": "science"}))
    options = TrainerOptions(
        trainer_module=FAKE_MODULE,
        data_dir=tmp_path / "data",
        local_models=LocalModels(teachers={"gemini-2.5-pro": teacher}),
    )
    running = create_server(
        SETTINGS,
        object_store=store,
        publisher=InMemoryPublisher(),
        trainer=options,
        batch_start_delay_seconds=0.1,
        batch_faults=FAULTS,
    ).start()
    yield running, store
    running.stop(timeout=10)


def test_an_emulator_with_batch_faults_succeeds_the_job_and_counts_the_failed_rows(
    server: tuple[EmulatorServer, InMemoryObjectStore],
) -> None:
    emulator, store = server
    client = job_client(emulator)
    job = wait(client, create(client).name)
    assert job.state.name == "JOB_STATE_SUCCEEDED", job.error.message
    stats = job.completion_stats
    assert (stats.successful_count, stats.failed_count, stats.incomplete_count) == (3, 4, 0)
    out = read_output(store, job.output_info.gcs_output_directory)
    assert {line["key"] for line in out if line["status"]} == {2, 3, 5, 6}


def test_the_stack_alone_sets_the_emulators_batch_faults(tmp_path: Path) -> None:
    shell = {
        "PATH": "/bin",
        BATCH_FAIL_LINES_VARIABLE: "1",
        BATCH_FAIL_MARKER_VARIABLE: "x",
        CREATE_DELAY_VARIABLE: "3",
    }
    inherited = _services.vertex_api(
        8090, data_dir=tmp_path, max_concurrent_jobs=1, trainer=True, worker_threads=0, env=shell
    )
    assert inherited.env == {"PATH": "/bin", "PYTHONUNBUFFERED": "1"}
    chosen = {**FAULTS.env(), "DISTILLERY_LOCAL_TEACHERS": "gemini-2.5-pro=/models/t"}
    configured = _services.vertex_api(
        8090,
        data_dir=tmp_path,
        max_concurrent_jobs=1,
        trainer=True,
        worker_threads=0,
        env=shell,
        extra_env=chosen,
    )
    assert configured.env == {"PATH": "/bin", "PYTHONUNBUFFERED": "1", **chosen}
    assert BatchFaults.from_env(configured.env) == FAULTS
    assert configured.argv[:3] == (sys.executable, "-m", "distillery.local.emulator")
