"""kill -9 of a function process in the middle of an event, on a local stack.

The stack's supervisor starts the function again (as Cloud Run starts a new instance), the bridge
redelivers the event whose request died with the function, and the outcome is as if the function
had never died: one pipeline job per request, one validation per upload.

The stack here is a second, ephemeral one: its local Vertex AI API answers ``pipelineJobs.create``
only seconds after it stored the job, which opens the window that matters — Vertex AI accepted the
job, the function has not answered — and its jobs are not trained (no CPU spent on them). The
helpers and the scenarios of ``bench/chaos.py --stack`` are :mod:`distillery.local.chaos_stack`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distillery.core.models import LaunchRequest, StatusEvent
from distillery.local import chaos_stack
from distillery.local.chaos_stack import CREATE_DELAY_SECONDS, StackChaos
from distillery.local.example_data import generate
from distillery.local.stack import Stack
from distillery.local.stack.harness import StackHarness
from tests.helpers import jsonl, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def killable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHarness]:
    """An ephemeral stack with a slow pipelineJobs.create and no trainer."""
    config = chaos_stack.killable_config(tmp_path_factory.mktemp("killstack"))
    assert config.vertex_create_delay_seconds == CREATE_DELAY_SECONDS
    assert not config.vertex_trainer
    stack = Stack(config).start()
    harness = StackHarness(stack)
    try:
        yield harness
    finally:
        harness.close()
        stack.stop()


@pytest.fixture
def fresh(killable: StackHarness) -> StackHarness:
    # Only from a quiet stack: a delivery or job left over would land in the next test.
    assert StackChaos(killable).wait_quiet() is None
    killable.reset()
    return killable


def _pipeline_jobs(stack: StackHarness) -> list[str]:
    return sorted(StackChaos(stack).pipeline_jobs([stack.stack.config.region]))


def _bridge_status(stack: StackHarness) -> dict[str, Any]:
    return StackChaos(stack).bridge()


def _restarts(stack: StackHarness, target: str) -> int:
    return StackChaos(stack).restarts(target)


def _kill_function(stack: StackHarness, target: str) -> None:
    """SIGKILL the function's server process (the supervisor then kills its workers)."""
    StackChaos(stack).kill(target)


def _jobs(stack: StackHarness) -> dict[str, dict[str, Any]]:
    return StackChaos(stack).jobs()


def _history(record: dict[str, Any]) -> list[str]:
    return chaos_stack.history(record)


def _wait_restarted(stack: StackHarness, target: str, restarts: int) -> None:
    assert StackChaos(stack).wait_restarted(target, restarts), f"{target} restarted and answering"


def test_kill_launch_job_after_vertex_accepted_the_job_makes_one_job(
    fresh: StackHarness,
) -> None:
    stack = fresh
    before = _restarts(stack, "launch_job")
    failed_before = _bridge_status(stack)["failed"]
    statuses = stack.subscribe(stack.settings.status_topic)
    train, evaluation = generate(240, 20)
    # track_status is held, as a slow log sink would hold the job's state events: otherwise the
    # PENDING event of the stored job may record it SUBMITTED before the kill lands.
    with StackChaos(stack).frozen("track_status"):
        stack.upload("datasets/news.eval.jsonl", jsonl(evaluation))
        stack.upload("datasets/news.jsonl", jsonl(train))

        # The create is in flight: Vertex AI lists the job, launch_job still waits for the answer.
        [pipeline_job] = wait_for(
            lambda: _pipeline_jobs(stack), timeout=90, interval=0.05, what="a pipeline job"
        )
        _kill_function(stack, "launch_job")
        [(job_id, record)] = _jobs(stack).items()
        assert "SUBMITTED" not in _history(record)  # the function died before it recorded the job

        _wait_restarted(stack, "launch_job", before + 1)

        def submitted() -> dict[str, Any] | None:
            current = _jobs(stack).get(job_id)
            return current if current and "SUBMITTED" in _history(current) else None

        # Only the redelivery to launch_job can record it while track_status is held.
        record = wait_for(submitted, timeout=120, what="the job SUBMITTED after redelivery")
    assert record["pipeline_job"] == pipeline_job
    assert list(_jobs(stack)) == [job_id]
    assert _pipeline_jobs(stack) == [pipeline_job]
    assert _bridge_status(stack)["failed"] > failed_before  # the killed request did fail

    seen: list[StatusEvent] = []

    def announced() -> bool:
        seen.extend(StatusEvent.model_validate(m.json()) for m in statuses.pull(5, timeout=2))
        return any(e.job_id == job_id and e.state.value == "SUBMITTED" for e in seen)

    wait_for(announced, timeout=60, what="SUBMITTED on the status topic")
    assert next(e for e in seen if e.state.value == "SUBMITTED").pipeline_job == pipeline_job
    statuses.close()


def test_kill_validate_dataset_with_the_upload_in_its_hands_validates_once(
    fresh: StackHarness,
) -> None:
    stack = fresh
    before = _restarts(stack, "validate_dataset")
    train, evaluation = generate(2000, 100)
    stack.upload("datasets/big.eval.jsonl", jsonl(evaluation))
    wait_for(
        lambda: _bridge_status(stack)["inflight"] == 0 or None,
        timeout=60,
        what="the eval upload handled",
    )
    launches = stack.subscribe(stack.settings.launch_topic)
    # Freeze the function so the upload's request reaches it and stays unanswered, then kill it:
    # the bridge's request dies with the function, deterministically.
    with StackChaos(stack).frozen("validate_dataset") as frozen:
        assert frozen
        failed_before = _bridge_status(stack)["failed"]
        stack.upload("datasets/big.jsonl", jsonl(train))
        wait_for(
            lambda: _bridge_status(stack)["inflight"] >= 1 or None,
            timeout=60,
            what="the upload's event in flight",
        )
        time.sleep(0.5)  # the request is written to the frozen function's socket
        _kill_function(stack, "validate_dataset")
        # Restarted only once the supervisor killed what was left of it (the stopped workers).
        _wait_restarted(stack, "validate_dataset", before + 1)

    [message] = launches.pull(max_messages=1, timeout=120)
    request = LaunchRequest.model_validate(message.json())
    assert request.dataset_uri.endswith(".jsonl")
    # No second LaunchRequest for the same upload, even as redeliveries settle.
    assert launches.pull(max_messages=5, timeout=10) == []
    launches.close()
    datasets = [d.to_dict() for d in stack.firestore_client().collection("datasets").stream()]
    train_records = [d for d in datasets if "big.jsonl" in json.dumps(d, default=str)]
    assert len(train_records) == 1
    assert _bridge_status(stack)["failed"] > failed_before
    assert all(not Path(f"/proc/{pid}").exists() for pid in frozen)


def test_kill_scenarios_of_the_chaos_bench_hold_one_after_another(killable: StackHarness) -> None:
    # The validate scenario first: its LaunchRequest is still being launched when it ends, and
    # the next one must start only once that work is done.
    results = chaos_stack.run_on(killable)
    assert [(r.name, r.counts.held, r.counts.notes) for r in results] == [
        (name, True, []) for name, _ in chaos_stack.SCENARIOS
    ]
