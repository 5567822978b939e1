"""``distillery jobs`` and the "did you mean" look-up ask the record store for a page, not all."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from distillery.commands.ops import jobs as jobs_command
from distillery.commands.ops._common import Invalid, job_record
from distillery.core.jobs import new_record
from distillery.core.models import JobState
from distillery.core.ports import OrderKey
from distillery.core.runtime import Dependencies
from distillery.fakes import InMemoryRecordStore
from tests.helpers import fake_dependencies


class _Counting(InMemoryRecordStore):
    """Records how many documents each query returned."""

    def __init__(self) -> None:
        super().__init__()
        self.returned: list[int] = []

    def list(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: OrderKey | Sequence[OrderKey] = (),
        limit: int | None = None,
        start_at: Sequence[Any] | None = None,
        start_after: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        found = super().list(
            collection,
            where=where,
            order_by=order_by,
            limit=limit,
            start_at=start_at,
            start_after=start_after,
        )
        self.returned.append(len(found))
        return found


def _deps_with_jobs(count: int) -> tuple[Dependencies, _Counting]:
    deps = fake_dependencies()
    store = _Counting()
    deps.records = store
    for number in range(count):
        job_id = f"news-{number:03d}"
        record = new_record(job_id, JobState.RUNNING, deps.clock(), {"request": {}})
        record["created_at"] = f"2026-11-{1 + number % 28:02d}T10:{number % 60:02d}:00"
        record["state"] = "FAILED" if number % 2 else "RUNNING"
        store.set("jobs", job_id, record)
    store.returned.clear()
    return deps, store


def test_jobs_lists_the_newest_first_reading_only_the_limit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    deps, store = _deps_with_jobs(100)
    monkeypatch.setattr(jobs_command, "dependencies", lambda: deps)
    args = argparse.Namespace(state="FAILED", limit=3, as_json=True)
    assert jobs_command._jobs(args) == 0
    rows = json.loads(capsys.readouterr().out)
    every = sorted(
        (r for r in store.list("jobs") if r["state"] == "FAILED"),
        key=lambda r: (r["created_at"], r["job_id"]),
        reverse=True,
    )
    assert [r["job_id"] for r in rows] == [r["job_id"] for r in every[:3]]
    assert store.returned[0] == 3


def test_did_you_mean_reads_three_suggestions_at_most() -> None:
    deps, store = _deps_with_jobs(100)
    with pytest.raises(Invalid, match=r"did you mean news-010, news-011, news-012\?"):
        job_record(deps, "news-01")
    assert store.returned == [3]
    with pytest.raises(Invalid) as caught:
        job_record(deps, "other")
    assert "did you mean" not in str(caught.value)
    assert job_record(deps, "news-042")["job_id"] == "news-042"
