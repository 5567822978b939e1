"""track_status does no work twice: a duplicate event costs one read and no write."""

from __future__ import annotations

from typing import Any

import pytest

from distillery.adapters import PubsubPublisher
from distillery.core.jobs import new_record
from distillery.core.models import JobState
from distillery.core.ports import Mutation
from distillery.core.runtime import Dependencies
from distillery.fakes import InMemoryPublisher, InMemoryRecordStore
from distillery.services.status import apply_pipeline_state

JOB = "news-distilled-0001"


class _Counting(InMemoryRecordStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.transactions = 0

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        self.reads += 1
        return super().get(collection, doc_id)

    def transact(self, collection: str, doc_id: str, mutate: Mutation) -> dict[str, Any] | None:
        self.transactions += 1
        return super().transact(collection, doc_id, mutate)


def _running(deps: Dependencies, announced: list[str]) -> _Counting:
    store = _Counting()
    deps.records = store
    record = new_record(JOB, JobState.SUBMITTED, deps.clock(), {})
    record["history"].append({"state": "RUNNING", "at": record["created_at"]})
    record["state"] = "RUNNING"
    record["announced"] = announced
    store.set("jobs", JOB, record)
    return store


def _published(deps: Dependencies) -> list[str]:
    assert isinstance(deps.publisher, InMemoryPublisher)
    return [m.attributes["state"] for m in deps.publisher.on("distill-job-status")]


def test_a_duplicate_event_reads_once_and_writes_nothing(deps: Dependencies) -> None:
    store = _running(deps, announced=["SUBMITTED", "RUNNING"])
    for state in ("PIPELINE_STATE_RUNNING", "PIPELINE_STATE_PENDING"):
        applied = apply_pipeline_state(JOB, state, deps)
        assert not applied.moved and applied.known
    assert (store.reads, store.transactions) == (2, 0)
    assert _published(deps) == []


def test_a_duplicate_still_announces_what_a_crash_left_unannounced(deps: Dependencies) -> None:
    store = _running(deps, announced=["SUBMITTED"])
    applied = apply_pipeline_state(JOB, "PIPELINE_STATE_RUNNING", deps)
    assert not applied.moved
    assert _published(deps) == ["RUNNING"]
    record = store.get("jobs", JOB)
    assert record is not None and record["announced"] == ["RUNNING", "SUBMITTED"]


def test_a_forward_event_still_moves_and_announces(deps: Dependencies) -> None:
    _running(deps, announced=["SUBMITTED", "RUNNING"])
    applied = apply_pipeline_state(JOB, "PIPELINE_STATE_FAILED", deps, reason="oom")
    assert applied.moved
    assert _published(deps) == ["FAILED"]


def test_the_publisher_sends_each_message_without_waiting_for_a_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "localhost:1")
    client = PubsubPublisher("p").client
    assert client.batch_settings.max_messages == 1
