"""The follower on the in-memory ports: every transition once and in order, progress, endings."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from distillery.commands.watch import Follower, JsonOutput, Progress, StateChange, TextOutput
from distillery.core.errors import ObjectNotFoundError
from distillery.core.jobs import new_record, transition
from distillery.core.models import JobState, StatusEvent
from distillery.core.runtime import Dependencies
from distillery.core.settings import Settings
from distillery.fakes import (
    InMemoryObjectStore,
    InMemoryPublisher,
    InMemoryRecordStore,
    InMemoryVertexPipelines,
)

START = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


@dataclass
class Message:
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)


class Feed:
    """A subscription whose deliveries the test decides, batch by batch."""

    def __init__(self) -> None:
        self.batches: list[list[Message]] = []

    def pull(self, timeout: float, max_messages: int = 100) -> list[Message]:
        return self.batches.pop(0) if self.batches else []


class Recorder:
    def __init__(self) -> None:
        self.states: list[StateChange] = []
        self.steps: list[Progress] = []

    def state(self, change: StateChange) -> None:
        self.states.append(change)

    def progress(self, progress: Progress) -> None:
        self.steps.append(progress)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def deps() -> Dependencies:
    return Dependencies(
        settings=Settings(project="p", bucket="b"),
        objects=InMemoryObjectStore(),
        records=InMemoryRecordStore(),
        publisher=InMemoryPublisher(),
        vertex=InMemoryVertexPipelines(),
        clock=Clock(),
    )


def _job(deps: Dependencies, job_id: str, state: JobState = JobState.REQUESTED) -> None:
    deps.records.set("jobs", job_id, new_record(job_id, state, deps.clock(), {}))


def _move(deps: Dependencies, job_id: str, *states: JobState, **fields: Any) -> None:
    for state in states:
        transition(deps, job_id, state, fields=fields or None)


def _status(job_id: str, state: JobState) -> Message:
    event = StatusEvent(job_id=job_id, state=state, at=START)
    return Message(event.to_bytes(), event.attributes())


def _states(recorder: Recorder, job_id: str | None = None) -> list[str]:
    return [c.state for c in recorder.states if job_id is None or c.job_id == job_id]


def test_follower_reports_every_transition_once_in_order_whatever_the_messages(
    deps: Dependencies,
) -> None:
    _job(deps, "job-1")
    feed, out = Feed(), Recorder()
    follower = Follower(deps, feed, out, job_id="job-1", poll_interval=0)
    assert follower.refresh("job-1") == "REQUESTED"
    _move(deps, "job-1", JobState.SUBMITTED, JobState.RUNNING, JobState.SUCCEEDED)
    # Duplicated, out of order, and one of them (RUNNING) lost.
    feed.batches = [
        [_status("job-1", JobState.SUCCEEDED), _status("job-1", JobState.SUBMITTED)],
        [_status("job-1", JobState.SUBMITTED)],
    ]
    follower.step()
    follower.step()
    _move(deps, "job-1", JobState.EVALUATING)
    _move(deps, "job-1", JobState.PROMOTED, endpoint="projects/p/locations/l/endpoints/1")
    feed.batches = [[_status("job-1", JobState.PROMOTED)] * 2]
    assert follower.follow(timeout=5) == "PROMOTED"
    assert _states(out) == [
        "REQUESTED",
        "SUBMITTED",
        "RUNNING",
        "SUCCEEDED",
        "EVALUATING",
        "PROMOTED",
    ]
    assert [c.previous_state for c in out.states] == [
        None,
        "REQUESTED",
        "SUBMITTED",
        "RUNNING",
        "SUCCEEDED",
        "EVALUATING",
    ]
    assert out.states[-1].endpoint == "projects/p/locations/l/endpoints/1"
    assert out.states[0].endpoint is None  # fields are given with the states they go with


def test_follower_sees_a_change_even_when_no_message_arrives(deps: Dependencies) -> None:
    _job(deps, "job-1")
    out = Recorder()
    follower = Follower(deps, Feed(), out, job_id="job-1", poll_interval=0)
    follower.refresh("job-1")
    transition(deps, "job-1", JobState.REJECTED_BY_POLICY, reason="over budget")
    assert follower.follow(timeout=5) == "REJECTED_BY_POLICY"
    assert out.states[-1].reason == "over budget"


def test_follower_of_every_job_reports_only_what_happens_after_it_started(
    deps: Dependencies,
) -> None:
    _job(deps, "old")
    _move(deps, "old", JobState.SUBMITTED)
    feed, out = Feed(), Recorder()
    follower = Follower(deps, feed, out, poll_interval=0)
    _move(deps, "old", JobState.RUNNING)
    _job(deps, "new")
    feed.batches = [
        [_status("old", JobState.RUNNING), _status("new", JobState.REQUESTED)],
        [Message(b"not a status event")],
    ]
    follower.step()
    follower.step()
    assert [(c.job_id, c.state) for c in out.states] == [("new", "REQUESTED"), ("old", "RUNNING")]
    # Jobs still going are looked at again without a message.
    _move(deps, "new", JobState.SUBMITTED)
    follower.step()
    assert _states(out, "new") == ["REQUESTED", "SUBMITTED"]


def test_follower_reports_training_progress_when_it_changes(deps: Dependencies) -> None:
    vertex = deps.vertex
    assert isinstance(vertex, InMemoryVertexPipelines)
    info = vertex.create("us-central1", "job-1", {"displayName": "job-1"})
    _job(deps, "job-1")
    _move(deps, "job-1", JobState.SUBMITTED, JobState.RUNNING, pipeline_job=info.name)
    out = Recorder()
    follower = Follower(deps, Feed(), out, job_id="job-1", poll_interval=0)

    def report(step: int, **values: float) -> None:
        metadata = {"progress:step": step, "progress:train_steps": 40}
        metadata |= {f"progress:{k}": v for k, v in values.items()}
        vertex.jobs[info.name]["jobDetail"] = {
            "taskDetails": [{"execution": {"metadata": metadata}}]
        }

    report(10, train_total_loss=2.5)
    follower.refresh("job-1")
    follower.refresh("job-1")  # unchanged: not reported again
    report(20, train_total_loss=1.25, eval_fraction_of_correct_next_step_preds=0.5)
    follower.refresh("job-1")
    assert [(p.step, p.train_steps, p.loss, p.eval_accuracy) for p in out.steps] == [
        (10, 40, 2.5, None),
        (20, 40, 1.25, 0.5),
    ]


def test_follower_of_an_unknown_job_says_so(deps: Dependencies) -> None:
    with pytest.raises(ObjectNotFoundError, match="no job nope"):
        Follower(deps, Feed(), Recorder(), job_id="nope", poll_interval=0).follow(timeout=1)


def test_follower_stops_at_its_timeout_with_the_state_so_far(deps: Dependencies) -> None:
    _job(deps, "job-1")
    ticks = iter(range(100))
    follower = Follower(
        deps, Feed(), Recorder(), job_id="job-1", poll_interval=0, clock=lambda: next(ticks)
    )
    assert follower.follow(timeout=3) == "REQUESTED"


def test_text_output_draws_a_bar_in_place_on_a_terminal() -> None:
    stream = io.StringIO()
    out = TextOutput(stream, live=True)
    out.progress(Progress("job-1", 10, 40, {"train_total_loss": 1.5}))
    out.progress(Progress("job-1", 20, 40, {"train_total_loss": 1.0}))
    out.state(StateChange("job-1", "SUCCEEDED", START.isoformat(), model="m"))
    text = stream.getvalue()
    assert text.count("\r") == 2 and "[############------------] step 20/40  loss 1.0000" in text
    assert text.endswith("10:00:00  job-1  SUCCEEDED          model m\n")


def test_json_output_writes_one_object_a_line() -> None:
    stream = io.StringIO()
    out = JsonOutput(stream)
    out.state(StateChange("job-1", "FAILED", START.isoformat(), reason="out of memory"))
    out.progress(Progress("job-1", 5, 10, {"step": 5, "train_steps": 10, "phase": "train"}))
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first == {
        "event": "state",
        "job_id": "job-1",
        "state": "FAILED",
        "at": START.isoformat(),
        "reason": "out of memory",
    }
    assert second == {
        "event": "progress",
        "job_id": "job-1",
        "step": 5,
        "train_steps": 10,
        "phase": "train",
    }
