"""Job records and their state machine: forward-only, compare-and-set transitions.

``jobs/{job_id}`` holds the request, the resolved spec, the Vertex resource name, ``state``, an
append-only ``history`` and which states have been announced on the status topic. Every writer
goes through :func:`transition`, so duplicated and out-of-order events never move a job backwards
or out of a terminal state, and every state reached is announced at least once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from distillery.core.models import JobState, StatusEvent
from distillery.core.ports import Mutation
from distillery.core.runtime import Dependencies

logger = logging.getLogger(__name__)

#: How far along each state is; a transition must strictly increase the rank.
STATE_RANK: dict[JobState, int] = {
    JobState.REQUESTED: 0,
    JobState.LABELING: 1,
    JobState.SUBMITTED: 2,
    JobState.RUNNING: 3,
    JobState.SUCCEEDED: 4,
    JobState.FAILED: 4,
    JobState.CANCELLED: 4,
    JobState.REJECTED_BY_POLICY: 4,
    JobState.EVALUATING: 5,
    JobState.PROMOTED: 6,
    JobState.REJECTED: 6,
    JobState.ROLLED_BACK: 7,
}

#: States where a job's work is over: no event moves it on (a rollback: PROMOTED → ROLLED_BACK).
TERMINAL: frozenset[JobState] = frozenset(
    {
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.REJECTED_BY_POLICY,
        JobState.PROMOTED,
        JobState.REJECTED,
        JobState.ROLLED_BACK,
    }
)


def can_move(current: JobState, target: JobState) -> bool:
    """Whether a job in ``current`` may move to ``target`` (forward only; terminal is final,
    except that a rollback takes a PROMOTED job to ROLLED_BACK)."""
    if target is JobState.ROLLED_BACK:
        return current is JobState.PROMOTED
    if current in TERMINAL:
        return False
    if target is JobState.EVALUATING:
        return current is JobState.SUCCEEDED
    if target in (JobState.PROMOTED, JobState.REJECTED):
        return current is JobState.EVALUATING
    return STATE_RANK[target] > STATE_RANK[current]


@dataclass(frozen=True)
class Transition:
    """The outcome of one attempted transition."""

    record: dict[str, Any]
    previous: JobState | None
    moved: bool


def new_record(
    job_id: str, state: JobState, at: datetime, fields: Mapping[str, Any], reason: str | None = None
) -> dict[str, Any]:
    """A fresh ``jobs/{job_id}`` document in ``state``."""
    entry: dict[str, Any] = {"state": state.value, "at": at.isoformat()}
    if reason:
        entry["reason"] = reason
    return {
        "job_id": job_id,
        **fields,
        "state": state.value,
        "created_at": at.isoformat(),
        "updated_at": at.isoformat(),
        "history": [entry],
        "announced": [],
    }


def update_job(deps: Dependencies, job_id: str, mutate: Mutation) -> dict[str, Any]:
    """Read-modify-write job ``job_id``'s record with ``mutate`` (which returns None to leave it
    as it is, and may run more than once); the record as it now stands.

    Raises:
        ObjectNotFoundError: there is no such job record.
        ContentionError: concurrent writers kept winning.
    """
    from distillery.core.errors import ObjectNotFoundError

    record = deps.records.transact(deps.settings.jobs_collection, job_id, mutate)
    if record is None:
        raise ObjectNotFoundError(f"there is no job {job_id}")
    return record


def transition(
    deps: Dependencies,
    job_id: str,
    target: JobState,
    *,
    fields: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> Transition:
    """Move job ``job_id`` to ``target`` if that is forward; record it in its history.

    ``fields`` are merged into the record only when the job moves. A job that is already at or
    past ``target`` is left as it is (``moved`` is False).

    Raises:
        ObjectNotFoundError: there is no such job record.
        ContentionError: concurrent writers kept winning.
    """
    at = deps.clock()
    seen: dict[str, Any] = {}

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        seen.clear()
        if current is None:
            return None
        seen["previous"] = current["state"]
        if not can_move(JobState(current["state"]), target):
            return None
        entry: dict[str, Any] = {"state": target.value, "at": at.isoformat()}
        if reason:
            entry["reason"] = reason
        current.update(fields or {})
        current["state"] = target.value
        current["updated_at"] = at.isoformat()
        current["history"] = [*current.get("history", []), entry]
        if reason:
            current["reason"] = reason
        seen["moved"] = True
        return current

    record = update_job(deps, job_id, mutate)
    previous = JobState(seen["previous"]) if "previous" in seen else None
    return Transition(record=record, previous=previous, moved=bool(seen.get("moved")))


def status_event(
    record: Mapping[str, Any], state: JobState, previous: JobState | None, at: datetime
) -> StatusEvent:
    """The StatusEvent announcing that the job of ``record`` reached ``state``."""
    return StatusEvent(
        job_id=record["job_id"],
        state=state,
        previous_state=previous,
        at=at,
        dataset_uri=(record.get("request") or {}).get("dataset_uri"),
        pipeline_job=record.get("pipeline_job"),
        tuning_job=record.get("tuning_job"),
        batch_prediction_job=record.get("batch_prediction_job"),
        model=record.get("model"),
        endpoint=record.get("endpoint"),
        metrics=record.get("metrics"),
        reason=record.get("reason") if state is JobState(record["state"]) else None,
        prompt_prefix=record.get("prompt_prefix") if state is JobState.PROMOTED else None,
    )


def announce(deps: Dependencies, record: Mapping[str, Any]) -> int:
    """Publish every state in the record's history not yet announced, oldest first.

    At least once: a state is marked announced only after its publish succeeded, so a crash in
    between announces it again on redelivery (subscribers may dedupe on job_id + state).

    Returns:
        How many messages were published.

    Raises:
        ServiceUnavailableError: Pub/Sub did not take a message (retry the event).
    """
    announced = set(record.get("announced", []))
    history = record.get("history", [])
    published: list[str] = []
    for index, entry in enumerate(history):
        if entry["state"] in announced:
            continue
        previous = JobState(history[index - 1]["state"]) if index else None
        event = status_event(
            record, JobState(entry["state"]), previous, datetime.fromisoformat(entry["at"])
        )
        deps.publisher.publish(deps.settings.status_topic, event.to_bytes(), event.attributes())
        published.append(entry["state"])
        logger.info(
            "job %s is %s", record["job_id"], entry["state"], extra={"job_id": record["job_id"]}
        )
    if not published:
        return 0

    def mark(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None:
            return None
        current["announced"] = sorted(set(current.get("announced", [])) | set(published))
        return current

    deps.records.transact(deps.settings.jobs_collection, record["job_id"], mark)
    return len(published)
