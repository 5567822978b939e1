"""The base of the queued job services (tuning, batch prediction), on a job kind of its own."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from distillery.fakes import InMemoryObjectStore
from distillery.local.emulator._jobs import (
    JobKind,
    QueuedJobRecord,
    QueuedJobService,
    parse_state_filter,
)
from distillery.local.emulator._model import JobStates, now
from distillery.local.emulator._runner import JobCancelledError, JobFailedError, RunContext
from distillery.local.emulator._status import ApiError
from tests.helpers import wait_for

STATES = JobStates("JOB_STATE")
KIND = JobKind(
    states=STATES,
    noun="echo job",
    resource_type="EchoJob",
    collection="echoJobs",
    log_key="echo_job",
    worker_noun="echo",
    cancelled_message="the echo job was cancelled",
)


@dataclass(frozen=True)
class _Request:
    text: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Run:
    name: str
    project: str
    location: str
    request: _Request
    create_time: datetime


@dataclass(kw_only=True)
class _Record(QueuedJobRecord[_Run]):
    answer: str | None = None

    def resource(self) -> dict[str, Any]:
        resource: dict[str, Any] = {"name": self.name, "state": self.state}
        if self.error:
            resource["error"] = dict(self.error)
        if self.answer is not None:
            resource["answer"] = self.answer
        return resource


class _EchoService(QueuedJobService[_Record, str]):
    """Answers a job's text back; ``fail:``, ``stop`` and ``crash`` texts end otherwise."""

    filter_fields = ("state", "text")
    stopped_errors = (JobCancelledError,)

    def __init__(self) -> None:
        super().__init__(
            KIND,
            object_store=InMemoryObjectStore(),
            max_concurrent_jobs=1,
            start_delay_seconds=0.0,
            id_offset=900,
        )

    def create(self, text: str, labels: Mapping[str, str] | None = None) -> str:
        with self._lock:
            job_id = self._next_id()
            name = KIND.name("p", "l", job_id)
            run = _Run(name, "p", "l", _Request(text, dict(labels or {})), now())
            self._store(
                _Record(
                    seq=next(self._seq),
                    run=run,
                    context=RunContext(self._object_store),
                    state=STATES.pending,
                    update_time=now(),
                )
            )
        self._queue(name)
        return job_id

    def _execute(self, record: _Record) -> str:
        text = record.run.request.text
        if text.startswith("fail:"):
            raise JobFailedError("FAILED_PRECONDITION", text.removeprefix("fail:"))
        if text == "stop":
            raise JobCancelledError("stopped")
        if text == "crash":
            raise RuntimeError("boom")
        if text == "wait":
            record.context.cancel_requested.wait(10)
            raise JobCancelledError("stopped on cancel")
        return text.upper()

    def _end_state(
        self, record: _Record, result: str | None, error: Mapping[str, Any] | None, cancelled: bool
    ) -> str:
        if record.context.cancelled and result is None:
            return self._cancelled(record)
        if cancelled:
            return self._failed(record, None)
        if result is not None:
            record.answer = result
            return STATES.succeeded
        return self._failed(record, error)

    def _filter_values(self, record: _Record) -> dict[str, str]:
        return {"state": record.state, "text": record.run.request.text}


@pytest.fixture
def service() -> Iterator[_EchoService]:
    echo = _EchoService()
    echo.start()
    yield echo
    echo.shutdown()


def ended(service: _EchoService, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        resource = service._resource("p", "l", job_id)
        return resource if resource["state"] in STATES.terminal else None

    return wait_for(done, timeout=10)


def test_a_job_runs_to_its_result_and_records_every_state(service: _EchoService) -> None:
    job_id = service.create("hello")
    resource = ended(service, job_id)
    assert resource == {
        "name": f"projects/p/locations/l/echoJobs/{job_id}",
        "state": "JOB_STATE_SUCCEEDED",
        "answer": "HELLO",
    }
    record = service._records[resource["name"]]
    assert record.history == ["JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]
    assert record.labels == {} and record.project == "p" and record.location == "l"


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("fail:no input", 9, "no input"),
        ("crash", 13, "the echo job failed: RuntimeError: boom"),
        ("stop", 2, "the echo job failed"),
    ],
)
def test_how_a_run_raised_says_how_the_job_failed(
    service: _EchoService, text: str, code: int, message: str
) -> None:
    resource = ended(service, service.create(text))
    assert resource["state"] == "JOB_STATE_FAILED"
    assert resource["error"] == {"code": code, "message": message}


def test_cancel_of_a_running_job_ends_it_cancelled(service: _EchoService) -> None:
    job_id = service.create("wait")
    wait_for(lambda: service._resource("p", "l", job_id)["state"] == "JOB_STATE_RUNNING")
    service.cancel("p", "l", job_id)
    resource = ended(service, job_id)
    assert resource["state"] == "JOB_STATE_CANCELLED"
    assert resource["error"] == {"code": 1, "message": "the echo job was cancelled"}
    record = service._records[resource["name"]]
    assert record.history[-2:] == ["JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED"]


def test_list_pages_newest_first_and_filters_on_fields_and_labels(service: _EchoService) -> None:
    first = service.create("a", {"team": "x"})
    second = service.create("b", {"team": "y"})
    ended(service, first), ended(service, second)
    page = service._page("p", "l", page_size=1, page_token="", filter_text="")
    assert [job["name"].rsplit("/", 1)[-1] for job in page["echoJobs"]] == [second]
    assert page["nextPageToken"]
    labelled = service._page("p", "l", page_size=0, page_token="", filter_text='labels.team="x"')
    assert [job["name"].rsplit("/", 1)[-1] for job in labelled["echoJobs"]] == [first]
    by_text = service._page("p", "l", page_size=0, page_token="", filter_text='text="b"')
    assert [job["name"].rsplit("/", 1)[-1] for job in by_text["echoJobs"]] == [second]


def test_a_state_filter_names_a_state_of_the_kind() -> None:
    assert parse_state_filter("state=JOB_STATE_RUNNING", ("state",), STATES) == [
        ("state", "=", "JOB_STATE_RUNNING")
    ]
    with pytest.raises(ApiError) as caught:
        parse_state_filter("state=RUNNING", ("state",), STATES)
    assert caught.value.status == "INVALID_ARGUMENT"
    assert "Invalid state 'RUNNING' in filter; use one of JOB_STATE_UNSPECIFIED" in str(
        caught.value
    )


def test_a_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="max_concurrent_jobs must be at least 1"):
        QueuedJobService.__init__(
            _EchoService.__new__(_EchoService),
            KIND,
            object_store=InMemoryObjectStore(),
            max_concurrent_jobs=0,
            start_delay_seconds=0.0,
            id_offset=0,
        )
