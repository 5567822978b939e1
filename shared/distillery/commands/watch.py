"""Following jobs live: every state a job reaches, in order, and its training progress.

A :class:`Follower` subscribes to the status topic (a temporary subscription of its own), and
uses each StatusEvent as a signal to read the job's record, whose append-only ``history`` is the
order of truth: a subscriber therefore sees every transition of a job exactly once and in order,
even though status messages are delivered at least once and in any order, and even when a
message is lost (the record is read again every ``poll_interval`` while a job is followed).
While a job is SUBMITTED or RUNNING, its pipeline job's ``progress:*`` values (training step,
losses, eval accuracy) are read as well and reported when they change.

What the follower reports goes to an :class:`Output`: :class:`TextOutput` for people (a
progress bar redrawn in place on a terminal, a line per change elsewhere) or :class:`JsonOutput`
(one JSON object a line) for scripts.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO, TypeVar

from distillery.core.errors import DistilleryError, ObjectNotFoundError
from distillery.core.jobs import STATE_RANK, TERMINAL
from distillery.core.models import JobState, StatusEvent
from distillery.core.pipeline_outputs import read_progress
from distillery.core.runtime import Dependencies

T = TypeVar("T")

#: States after which nothing more happens to a job by itself.
FINAL_STATES: frozenset[str] = frozenset(TERMINAL)
#: States whose pipeline job is worth polling for progress.
TRAINING_STATES: frozenset[str] = frozenset({JobState.SUBMITTED, JobState.RUNNING})

ACCURACY = "eval_fraction_of_correct_next_step_preds"


def wait_until(
    probe: Callable[[], T | None], what: str, timeout: float | None, interval: float = 0.5
) -> T:
    """Call ``probe`` until it returns something (not None); that value.

    Raises:
        TimeoutError: ``timeout`` seconds passed first (None: wait for ever).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class Subscription(Protocol):
    """What the follower needs of a subscription (see ``adapters.pubsub.TemporarySubscription``)."""

    def pull(self, timeout: float, max_messages: int = 100) -> list[Any]:
        """Messages (with ``data`` and ``attributes``) that arrived within ``timeout`` seconds."""
        ...


@dataclass(frozen=True)
class StateChange:
    """A job reached a state (an entry of its history, with what the record says of it)."""

    job_id: str
    state: str
    at: str
    previous_state: str | None = None
    reason: str | None = None
    pipeline_job: str | None = None
    model: str | None = None
    endpoint: str | None = None
    metrics: Mapping[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        """The change as a JSON object (``{"event": "state", ...}``), without empty fields."""
        body = {"event": "state", **self.__dict__}
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in body.items() if v}


@dataclass(frozen=True)
class Progress:
    """A running job's training progress, as its pipeline job exposes it."""

    job_id: str
    step: int
    train_steps: int
    values: Mapping[str, Any] = field(default_factory=dict)

    @property
    def loss(self) -> float | None:
        """The latest training loss, if reported."""
        value = self.values.get("train_total_loss")
        return float(value) if isinstance(value, int | float) else None

    @property
    def eval_accuracy(self) -> float | None:
        """The latest eval token accuracy, if reported."""
        value = self.values.get(ACCURACY)
        return float(value) if isinstance(value, int | float) else None

    def to_json(self) -> dict[str, Any]:
        """The progress as a JSON object (``{"event": "progress", ...}``)."""
        return {
            "event": "progress",
            "job_id": self.job_id,
            "step": self.step,
            "train_steps": self.train_steps,
            **{k: v for k, v in self.values.items() if k not in ("step", "train_steps")},
        }


class Output(Protocol):
    """Where a follower reports to."""

    def state(self, change: StateChange) -> None:
        """A job reached a state."""

    def progress(self, progress: Progress) -> None:
        """A job's training progressed."""


def _clock(at: str) -> str:
    try:
        return datetime.fromisoformat(at).astimezone(UTC).strftime("%H:%M:%S")
    except ValueError:
        return at


class TextOutput:
    """Lines for people; on a terminal the progress bar is redrawn in place."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self._bar_shown = False

    def _line(self, text: str) -> None:
        if self._bar_shown:
            self.stream.write("\n")
            self._bar_shown = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def state(self, change: StateChange) -> None:
        """``HH:MM:SS  job  STATE  details``, with the reason, model or endpoint that go with it."""
        details = ""
        if change.state == JobState.SUBMITTED and change.pipeline_job:
            details = f"pipeline job {change.pipeline_job}"
        elif change.state == JobState.SUCCEEDED:
            accuracy = (change.metrics or {}).get(ACCURACY)
            details = f"model {change.model}"
            if accuracy is not None:
                details += f"  eval accuracy {accuracy:.3f}"
        elif change.state == JobState.EVALUATING:
            details = "the model and the champion answer the family's golden set"
        elif change.state == JobState.PROMOTED:
            details = f"serving on {change.endpoint}"
        if change.reason:
            details = f"{details}  {change.reason}".strip()
        self._line(f"{_clock(change.at)}  {change.job_id}  {change.state:<18} {details}".rstrip())

    def progress(self, progress: Progress) -> None:
        """``[#####-----] step 30/60  loss 0.41  eval accuracy 0.95``."""
        total = max(progress.train_steps, 1)
        width = 24
        done = min(width, round(width * progress.step / total))
        text = f"  [{'#' * done}{'-' * (width - done)}] step {progress.step}/{progress.train_steps}"
        if progress.loss is not None:
            text += f"  loss {progress.loss:.4f}"
        if progress.eval_accuracy is not None:
            text += f"  eval accuracy {progress.eval_accuracy:.3f}"
        if self.live:
            columns = shutil.get_terminal_size((100, 20)).columns
            self.stream.write("\r" + text[: columns - 1].ljust(min(len(text), columns - 1)))
            self.stream.flush()
            self._bar_shown = True
        else:
            self._line(text)


class JsonOutput:
    """One JSON object a line: ``{"event": "state", ...}`` and ``{"event": "progress", ...}``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def _write(self, document: Mapping[str, Any]) -> None:
        self.stream.write(json.dumps(document, ensure_ascii=False, sort_keys=True) + "\n")
        self.stream.flush()

    def state(self, change: StateChange) -> None:
        """The change as a JSON line."""
        self._write(change.to_json())

    def progress(self, progress: Progress) -> None:
        """The progress as a JSON line."""
        self._write(progress.to_json())


@dataclass
class _Followed:
    shown: int = 0
    state: str = ""
    pipeline_job: str | None = None
    step: int | None = None


class Follower:
    """Follows one job (``job_id``) or every job that changes after it starts (None).

    ``subscription`` must have been made before the follower reads any record, so nothing is
    missed between the two.
    """

    def __init__(
        self,
        deps: Dependencies,
        subscription: Subscription,
        output: Output,
        *,
        job_id: str | None = None,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deps = deps
        self.subscription = subscription
        self.output = output
        self.job_id = job_id
        self.poll_interval = poll_interval
        self.clock = clock
        self.started_at = deps.clock()
        self.jobs: dict[str, _Followed] = {}

    def _record(self, job_id: str) -> dict[str, Any] | None:
        return self.deps.records.get(self.deps.settings.jobs_collection, job_id)

    def _catch_up(self, job_id: str, record: Mapping[str, Any]) -> None:
        """Report the entries of ``record``'s history not reported yet, oldest first."""
        followed = self.jobs.get(job_id)
        history = list(record.get("history") or [])
        if followed is None:
            followed = self.jobs[job_id] = _Followed()
            if self.job_id is None:  # Watching every job: only what happens from now on.
                followed.shown = sum(
                    1 for e in history if datetime.fromisoformat(e["at"]) < self.started_at
                )
        for index in range(followed.shown, len(history)):
            entry = history[index]
            state = JobState(entry["state"])
            rank = STATE_RANK[state]
            sub, done = STATE_RANK[JobState.SUBMITTED], STATE_RANK[JobState.SUCCEEDED]
            evaluating = STATE_RANK[JobState.EVALUATING]
            latest = index == len(history) - 1
            # What the record says now, given with the states it goes with.
            self.output.state(
                StateChange(
                    job_id=job_id,
                    state=state.value,
                    at=entry["at"],
                    previous_state=history[index - 1]["state"] if index else None,
                    reason=entry.get("reason") or (record.get("reason") if latest else None),
                    pipeline_job=record.get("pipeline_job") if rank >= sub else None,
                    model=record.get("model") if rank >= done else None,
                    endpoint=record.get("endpoint") if rank >= evaluating else None,
                    metrics=record.get("metrics") if rank >= done else None,
                )
            )
        followed.shown = len(history)
        followed.state = str(record.get("state") or "")
        followed.pipeline_job = record.get("pipeline_job")

    def _progress(self, job_id: str, followed: _Followed) -> None:
        vertex = self.deps.vertex
        if vertex is None or not followed.pipeline_job:
            return
        try:
            info = vertex.get(followed.pipeline_job)
        except DistilleryError:
            return  # Progress is best effort: the states still come from the record.
        values = read_progress(info)
        step = values.get("step")
        if not isinstance(step, int | float) or int(step) == followed.step:
            return
        followed.step = int(step)
        total = values.get("train_steps")
        self.output.progress(
            Progress(
                job_id=job_id,
                step=int(step),
                train_steps=int(total) if isinstance(total, int | float) else 0,
                values=values,
            )
        )

    def refresh(self, job_id: str) -> str | None:
        """Read ``job_id``'s record, report what is new; its state (None: no such job)."""
        record = self._record(job_id)
        if record is None:
            return None
        self._catch_up(job_id, record)
        followed = self.jobs[job_id]
        if followed.state in TRAINING_STATES:
            self._progress(job_id, followed)
        return followed.state

    def step(self) -> None:
        """Wait up to ``poll_interval`` for status messages, then bring every job up to date."""
        touched: set[str] = set()
        for message in self.subscription.pull(timeout=self.poll_interval):
            job_id = message.attributes.get("job_id")
            if job_id is None:
                try:
                    job_id = StatusEvent.model_validate_json(message.data).job_id
                except ValueError:
                    continue  # Not a StatusEvent: not ours to report.
            if self.job_id is None or job_id == self.job_id:
                touched.add(job_id)
        if self.job_id is not None:
            touched.add(self.job_id)
        touched |= {j for j, f in self.jobs.items() if f.state not in FINAL_STATES}
        for job_id in sorted(touched):
            self.refresh(job_id)

    def follow(self, timeout: float | None = None) -> str | None:
        """Follow until the job reaches a final state (one job), or until ``timeout`` seconds.

        Returns the job's last state (None when following every job).

        Raises:
            ObjectNotFoundError: the job to follow has no record.
        """
        deadline = None if timeout is None else self.clock() + timeout
        if self.job_id is not None:
            state = self.refresh(self.job_id)
            if state is None:
                raise ObjectNotFoundError(f"there is no job {self.job_id}")
        while True:
            if self.job_id is not None and self.jobs[self.job_id].state in FINAL_STATES:
                return self.jobs[self.job_id].state
            if deadline is not None and self.clock() >= deadline:
                return self.jobs[self.job_id].state if self.job_id else None
            self.step()
