"""The Vertex AI emulator's create latency: the job exists before the create answers."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from distillery.core.errors import ConfigurationError
from distillery.fakes import InMemoryObjectStore, InMemoryPublisher
from distillery.local.emulator import create_server
from distillery.local.emulator._config import CREATE_DELAY_VARIABLE, create_delay_seconds
from distillery.local.stack import _services
from distillery.local.stack.processes import local_request
from tests.unit.test_emulator import PARENT, SETTINGS, request_body


def test_create_answers_after_the_delay_with_the_job_already_listed() -> None:
    server = create_server(
        SETTINGS,
        object_store=InMemoryObjectStore(),
        publisher=InMemoryPublisher(),
        create_delay_seconds=1.5,
    ).start()
    try:
        answers: list[tuple[int, bytes]] = []
        url = f"{server.url}/v1/{PARENT}/pipelineJobs?pipelineJobId=job-1"
        started = time.monotonic()
        caller = threading.Thread(
            target=lambda: answers.append(local_request("POST", url, request_body()))
        )
        caller.start()
        listed: list[str] = []
        while not listed and caller.is_alive():
            status, body = local_request("GET", f"{server.url}/v1/{PARENT}/pipelineJobs")
            assert status == 200
            listed = [job["name"] for job in json.loads(body).get("pipelineJobs", [])]
            time.sleep(0.05)
        # Seen while the create was still in flight: the window a dying caller falls into.
        assert caller.is_alive()
        assert listed == [f"{PARENT}/pipelineJobs/job-1"]
        caller.join(timeout=10)
        assert answers and answers[0][0] == 200
        assert time.monotonic() - started >= 1.5
    finally:
        server.stop(timeout=5)


def test_delay_variable_is_parsed_and_checked() -> None:
    assert create_delay_seconds({}) == 0.0
    assert create_delay_seconds({CREATE_DELAY_VARIABLE: " 2.5 "}) == 2.5
    for bad in ("soon", "-1", "nan"):
        with pytest.raises(ConfigurationError, match=CREATE_DELAY_VARIABLE):
            create_delay_seconds({CREATE_DELAY_VARIABLE: bad})


def test_stack_sets_the_delay_for_its_emulator_only(tmp_path: Path) -> None:
    """A delay in the calling shell never reaches a stack that did not ask for one."""
    command = _services.vertex_api(
        8090,
        data_dir=tmp_path,
        max_concurrent_jobs=1,
        trainer=False,
        worker_threads=0,
        env={CREATE_DELAY_VARIABLE: "30"},
    )
    assert CREATE_DELAY_VARIABLE not in command.env
    delayed = _services.vertex_api(
        8090,
        data_dir=tmp_path,
        max_concurrent_jobs=1,
        trainer=False,
        worker_threads=0,
        env={},
        create_delay_seconds=4.0,
    )
    assert delayed.env[CREATE_DELAY_VARIABLE] == "4.0"
