"""The golden-set evaluation within one call's budget, on the in-memory ports.

Time is a fake clock that the fake endpoints advance by one second per answer, so a golden set
is "too big for one call" by arithmetic, never by machine speed. A call that runs out of budget
records each side's answers (``reports/answers/<job_id>/<side>/``) and the job's
``evaluation_progress``, and raises a retryable error; the redelivery asks only what is left,
and the decision is the one an uninterrupted evaluation of the same job reaches.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from distillery.core.errors import RetryableError, ServiceUnavailableError
from distillery.core.models import JobState
from distillery.core.ports import ObjectInfo
from distillery.core.runtime import Dependencies
from distillery.fakes import InMemoryObjectStore
from distillery.local.judged import CLASSES, succeeded_job
from distillery.services import evaluation
from distillery.services.evaluation import EvaluationBudgetSpentError, journal_folder
from distillery.services.promoter import Outcome, handle_status_event
from tests.helpers import BUCKET, fake_dependencies, fake_endpoints
from tests.unit.test_promoter import _event

FAMILY = "news-distilled"
#: A golden set of 60 examples: at one second an answer, 60 s of asking for each side.
EXAMPLES: tuple[tuple[str, str], ...] = tuple(
    (
        "Classify the following text into one of the following classes: "
        f"[{', '.join(CLASSES)}] Text: headline number {index}",
        CLASSES[index % len(CLASSES)],
    )
    for index in range(60)
)
START = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
#: The pause Pub/Sub makes before it delivers a failed event again.
BACKOFF = timedelta(seconds=10)


class FakeClock:
    """The world's time (``deps.clock``): it moves only when a test or a fake moves it."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FlakyObjects(InMemoryObjectStore):
    """An object store whose writes of answer journals fail on demand, as Cloud Storage may:
    ``fail_journal_writes`` writes refused outright, then ``lose_journal_answers`` writes stored
    whose answer is lost (the caller sees a failure, the object is there)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_journal_writes = 0
        self.lose_journal_answers = 0
        #: Every write of a journal tried, failed or not.
        self.journal_writes = 0

    def write_bytes(
        self,
        bucket: str,
        name: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_absent: bool = False,
    ) -> ObjectInfo:
        journal = f"/{evaluation.ANSWERS_FOLDER}" in name
        self.journal_writes += journal
        if journal and self.fail_journal_writes > 0:
            self.fail_journal_writes -= 1
            raise ServiceUnavailableError(f"writing gs://{bucket}/{name}: 503")
        info = super().write_bytes(
            bucket, name, data, content_type=content_type, if_absent=if_absent
        )
        if journal and self.lose_journal_answers > 0:
            self.lose_journal_answers -= 1
            raise ServiceUnavailableError(f"writing gs://{bucket}/{name}: the answer was lost")
        return info


@dataclass
class World:
    """Fresh fakes with a fake clock; every prompt a fake endpoint is asked, in order."""

    deps: Dependencies
    clock: FakeClock
    asked: list[tuple[str, str]] = field(default_factory=list)
    #: Called after each answer with how many prompts were asked so far.
    on_answer: Callable[[int], None] | None = None

    @classmethod
    def make(cls, budget: float, objects: InMemoryObjectStore | None = None) -> World:
        deps = fake_dependencies(promote_budget_seconds=budget)
        if objects is not None:
            deps.objects = objects
        clock = FakeClock()
        deps.clock = clock
        world = cls(deps, clock)
        endpoints = fake_endpoints(deps)
        real_predict = endpoints.predict

        def predict(endpoint: str, prompts: Any, parameters: Any = None) -> Any:
            result = real_predict(endpoint, prompts, parameters)
            for prompt in prompts:
                world.asked.append((endpoint, prompt))
                clock.advance(1.0)
            if world.on_answer is not None:
                world.on_answer(len(world.asked))
            return result

        endpoints.predict = predict  # type: ignore[method-assign]
        return world

    def job(self, job_id: str, correct: float) -> str:
        """A SUCCEEDED pipeline job whose model answers ``correct`` of the 60 right; its model."""
        return succeeded_job(self.deps, job_id, FAMILY, correct, bucket=BUCKET, examples=EXAMPLES)

    def record(self, job_id: str) -> dict[str, Any]:
        record = self.deps.records.get("jobs", job_id)
        assert record is not None
        return record

    def deliver(self, job_id: str) -> Outcome | None:
        """One delivery of the job's SUCCEEDED event (what raises is redelivered)."""
        return handle_status_event(_event(job_id), self.deps)

    def until_decided(self, job_id: str, deliveries: int = 10) -> tuple[Outcome, int]:
        """Deliver until a delivery is acknowledged; its outcome and how many were not."""
        for interrupted in range(deliveries):
            try:
                outcome = self.deliver(job_id)
            except EvaluationBudgetSpentError:
                self.clock.advance(BACKOFF.total_seconds())
                continue
            assert outcome is not None
            return outcome, interrupted
        raise AssertionError(f"job {job_id} was not decided in {deliveries} deliveries")

    def asked_on(self, endpoint: str, since: int = 0) -> list[str]:
        return [prompt for where, prompt in self.asked[since:] if where == endpoint]

    def journals(self, job_id: str, side: str) -> list[dict[str, Any]]:
        """Every journal object of the job's ``side``, oldest first."""
        folder = journal_folder(job_id, side)
        return [
            json.loads(self.deps.objects.read_bytes(BUCKET, name))
            for name in self.deps.objects.list_names(BUCKET, folder)
        ]


def _figures(world: World, job_id: str) -> dict[str, Any]:
    """What a decision rests on: the decision, its rules' figures and every answer."""
    promotion = world.record(job_id)["promotion"]
    summary = dict(promotion["evaluation"])
    summary["golden"] = {k: v for k, v in summary["golden"].items() if k != "frozen_at"}
    report_name = promotion["report"]["json"].removeprefix(f"gs://{BUCKET}/")
    report = json.loads(world.deps.objects.read_bytes(BUCKET, report_name))
    return {
        "decision": promotion["decision"],
        "failures": promotion["failures"],
        "evaluation": summary,
        "answers": report["answers"],
        "candidate": report["candidate"]["metrics"],
        "champion": (report["champion"] or {}).get("metrics"),
    }


def _uninterrupted(correct: float, champion: float | None = None) -> dict[str, Any]:
    """The figures of the same job(s) on a fresh copy of the fakes with a budget to spare."""
    world = World.make(budget=10_000)
    if champion is not None:
        world.job("job-1", champion)
        crowned, interrupted = world.until_decided("job-1")
        assert crowned.state is JobState.PROMOTED and interrupted == 0
    world.job("job-2", correct)
    _, interrupted = world.until_decided("job-2")
    assert interrupted == 0
    return _figures(world, "job-2")


# --- one side: a golden set too big for one call --------------------------------------------


def test_evaluation_resume_a_golden_set_too_big_for_one_call_finishes_on_redelivery() -> None:
    world = World.make(budget=25)
    world.job("job-2", 0.8)
    endpoint = world.record("job-2")["candidate_endpoint"]

    with pytest.raises(EvaluationBudgetSpentError) as raised:
        world.deliver("job-2")
    # Retryable: the function answers 500 and Pub/Sub delivers the event again.
    assert isinstance(raised.value, RetryableError)
    assert str(raised.value).startswith(
        "evaluated 25 of 60 golden-set prompts of the candidate before the call's budget ran "
        "out (DISTILLERY_PROMOTE_BUDGET_SECONDS=25); a redelivery goes on from there"
    )
    assert len(world.asked_on(endpoint)) == 25
    # Journaled every 10 answers and when the call stopped asking.
    journals = world.journals("job-2", "candidate")
    assert [j["answered"] for j in journals] == [10, 20, 25]
    newest = journals[-1]
    assert newest["identity"]["endpoint"] == endpoint
    assert newest["identity"]["model"] == world.record("job-2")["model"]
    assert newest["identity"]["prompt_prefix"] == ""
    assert newest["texts"] == ["business", "sports"] * 12 + ["business"]
    record = world.record("job-2")
    assert record["state"] == "EVALUATING" and "promotion" not in record
    progress = record["evaluation_progress"]
    assert progress["candidate"] == {"answered": 25, "total": 60}
    assert (
        progress["examples"] == 60
        and progress["updated_at"] == START.replace(second=25).isoformat()
    )
    assert progress["journals"] == f"gs://{BUCKET}/reports/answers/job-2/"
    family = world.deps.records.get("models", FAMILY) or {}
    assert not family.get("champion") and fake_endpoints(world.deps).deploy_calls == 0

    world.clock.advance(BACKOFF.total_seconds())
    outcome, interrupted = world.until_decided("job-2")
    assert outcome.state is JobState.PROMOTED
    assert interrupted == 1  # 25 more, then the last 10
    # Every prompt asked once, in order, across the three calls.
    assert world.asked_on(endpoint) == [prompt for prompt, _ in EXAMPLES]
    record = world.record("job-2")
    assert record["evaluation_progress"]["candidate"] == {"answered": 60, "total": 60}
    assert world.journals("job-2", "candidate")[-1]["answered"] == 60
    assert _figures(world, "job-2") == _uninterrupted(0.8)


def test_evaluation_resume_a_refused_prompt_is_recorded_and_not_asked_again() -> None:
    world = World.make(budget=25)
    model = world.job("job-2", 0.8)
    endpoints = fake_endpoints(world.deps)
    scripted = endpoints.answers[model]
    refused = EXAMPLES[3][0]
    refusals: list[str] = []

    def answer(prompt: str) -> str:
        if prompt == refused:
            refusals.append(prompt)
            from distillery.core.errors import RequestRejectedError

            raise RequestRejectedError("400 the prompt is not allowed")
        return scripted(prompt)

    endpoints.answers[model] = answer
    with pytest.raises(EvaluationBudgetSpentError):
        world.deliver("job-2")
    newest = world.journals("job-2", "candidate")[-1]
    assert newest["texts"][3] is None and newest["errors"] == ["400 the prompt is not allowed"]
    world.until_decided("job-2")
    assert refusals == [refused]  # asked once, by the first call
    report = _figures(world, "job-2")
    assert report["answers"]["candidate"][3] is None
    assert world.record("job-2")["promotion"]["evaluation"]["candidate_errors"] == 1


# --- both sides ------------------------------------------------------------------------------


def test_evaluation_resume_the_budget_runs_out_during_the_champions_answers() -> None:
    world = World.make(budget=80)
    world.job("job-1", 0.6)
    first, interrupted = world.until_decided("job-1")
    assert first.state is JobState.PROMOTED and interrupted == 0
    serving = first.endpoint
    assert serving is not None
    world.job("job-2", 0.9)
    candidate = world.record("job-2")["candidate_endpoint"]
    since = len(world.asked)

    with pytest.raises(EvaluationBudgetSpentError) as raised:
        world.deliver("job-2")
    assert str(raised.value).startswith(
        "evaluated 20 of 60 golden-set prompts of the champion (job job-1) before the call's "
        "budget ran out"
    )
    progress = world.record("job-2")["evaluation_progress"]
    assert progress["candidate"] == {"answered": 60, "total": 60}
    assert progress["champion"] == {"answered": 20, "total": 60}
    assert world.journals("job-2", "champion")[-1]["answered"] == 20
    assert (
        world.journals("job-2", "champion")[-1]["identity"]["model"]
        == world.record("job-1")["model"]
    )

    outcome, interrupted = world.until_decided("job-2")
    assert outcome.state is JobState.PROMOTED and interrupted == 0
    # The candidate's journal was reused: it was asked each prompt once; so was the champion.
    assert world.asked_on(candidate, since) == [prompt for prompt, _ in EXAMPLES]
    assert world.asked_on(serving, since) == [prompt for prompt, _ in EXAMPLES]
    assert world.record("job-2")["evaluation_progress"]["champion"] == {
        "answered": 60,
        "total": 60,
    }
    assert _figures(world, "job-2") == _uninterrupted(0.9, champion=0.6)


# --- a journal of something else -------------------------------------------------------------


@pytest.mark.parametrize("changed", ["golden_sha256", "prompt_prefix", "model", "endpoint"])
def test_evaluation_resume_a_journal_of_another_identity_is_ignored_and_replaced(
    changed: str,
) -> None:
    world = World.make(budget=25)
    world.job("job-2", 0.8)
    endpoint = world.record("job-2")["candidate_endpoint"]
    with pytest.raises(EvaluationBudgetSpentError):
        world.deliver("job-2")
    # The newest journal now answers for another golden set, prefix, model or endpoint, with
    # answers that would fail the model if they were used.
    newest = world.journals("job-2", "candidate")[-1]
    newest["identity"][changed] = "something else"
    newest["texts"] = ["poison"] * len(newest["texts"])
    folder = journal_folder("job-2", "candidate")
    names = world.deps.objects.list_names(BUCKET, folder)
    world.deps.objects.write_bytes(
        BUCKET, f"{folder}{len(names) + 1:06d}.json", json.dumps(newest).encode()
    )
    since = len(world.asked)

    outcome, _ = world.until_decided("job-2")
    assert outcome.state is JobState.PROMOTED
    # Not used: every prompt asked again, from the first.
    assert world.asked_on(endpoint, since) == [prompt for prompt, _ in EXAMPLES]
    # Replaced: the newest journal is this job's, with every answer.
    latest = world.journals("job-2", "candidate")[-1]
    assert latest["identity"][changed] != "something else"
    assert latest["answered"] == 60 and "poison" not in latest["texts"]
    assert _figures(world, "job-2") == _uninterrupted(0.8)


# --- a duplicate delivery --------------------------------------------------------------------


def test_evaluation_resume_a_duplicate_delivery_in_the_middle_corrupts_nothing() -> None:
    world = World.make(budget=40)
    world.job("job-2", 0.8)
    endpoint = world.record("job-2")["candidate_endpoint"]
    inner: list[BaseException] = []

    def duplicate(asked: int) -> None:
        # The same event delivered again while the first delivery is between two journal
        # writes (15 answers, 10 recorded): it runs until its own budget is spent before the
        # first one goes on.
        if asked == 15 and not inner:
            with pytest.raises(EvaluationBudgetSpentError) as raised:
                world.deliver("job-2")
            inner.append(raised.value)

    world.on_answer = duplicate
    with pytest.raises(EvaluationBudgetSpentError) as outer:
        world.deliver("job-2")
    world.on_answer = None
    # The second went on from the first's journal (10 answers) to 50; the first, its budget
    # spent too, found its next journal number taken and took up the longer journal.
    assert str(inner[0]).startswith("evaluated 50 of 60 golden-set prompts")
    assert str(outer.value).startswith("evaluated 50 of 60 golden-set prompts")
    assert world.record("job-2")["evaluation_progress"]["candidate"]["answered"] == 50

    outcome, interrupted = world.until_decided("job-2")
    assert outcome.state is JobState.PROMOTED and interrupted == 0
    asked = world.asked_on(endpoint)
    assert len(asked) == 15 + 40 + 10
    assert max(asked.count(prompt) for prompt, _ in EXAMPLES) == 2  # the worst allowed
    # Every journal written is a prefix of the same answers, the newest complete.
    right = _uninterrupted(0.8)
    answers = right["answers"]["candidate"]
    journals = world.journals("job-2", "candidate")
    assert all(j["texts"] == answers[: j["answered"]] for j in journals)
    assert [j["answered"] for j in journals][-1] == 60
    assert _figures(world, "job-2") == right


def test_evaluation_resume_a_duplicate_delivery_that_decides_first_decides_once() -> None:
    world = World.make(budget=1000)
    world.job("job-2", 0.8)
    endpoint = world.record("job-2")["candidate_endpoint"]
    inner: list[Outcome | None] = []

    def duplicate(asked: int) -> None:
        if asked == 15 and not inner:
            inner.append(world.deliver("job-2"))

    world.on_answer = duplicate
    outer = world.deliver("job-2")
    assert inner[0] is not None and inner[0].state is JobState.PROMOTED
    assert outer is not None and outer.state is JobState.PROMOTED
    # The second went on from the first's journal (10 answers) and promoted the model, whose
    # own endpoint is then deleted: the first asks no more and carries out the same decision.
    asked = world.asked_on(endpoint)
    assert len(asked) == 15 + 50
    assert max(asked.count(prompt) for prompt, _ in EXAMPLES) == 2
    right = _uninterrupted(0.8)
    journals = world.journals("job-2", "candidate")
    assert all(j["texts"] == right["answers"]["candidate"][: j["answered"]] for j in journals)
    # Decided once: one deployment, one PROMOTED transition, the figures of one evaluation.
    record = world.record("job-2")
    assert fake_endpoints(world.deps).deploy_calls == 1
    assert [h["state"] for h in record["history"]].count("PROMOTED") == 1
    family = world.deps.records.get("models", FAMILY) or {}
    assert family["champion"]["job_id"] == "job-2" and family["history"] == []
    assert _figures(world, "job-2") == right


# --- transient faults while recording ---------------------------------------------------------


def test_evaluation_resume_a_transient_fault_writing_the_journal_is_retried() -> None:
    objects = FlakyObjects()
    world = World.make(budget=25, objects=objects)
    world.job("job-2", 0.8)
    endpoint = world.record("job-2")["candidate_endpoint"]

    def faults(asked: int) -> None:
        if asked == 10:
            objects.lose_journal_answers = 1  # the write at 10 is stored, its answer lost
        if asked == 25:
            objects.fail_journal_writes = 1  # the write when the budget runs out fails once

    world.on_answer = faults
    with pytest.raises(EvaluationBudgetSpentError):
        world.deliver("job-2")
    assert world.journals("job-2", "candidate")[-1]["answered"] == 25
    world.on_answer = None
    outcome, _ = world.until_decided("job-2")
    assert outcome.state is JobState.PROMOTED
    assert world.asked_on(endpoint) == [prompt for prompt, _ in EXAMPLES]  # nothing lost
    assert _figures(world, "job-2") == _uninterrupted(0.8)


def test_evaluation_resume_a_journal_that_cannot_be_written_surfaces_as_retryable() -> None:
    objects = FlakyObjects()
    world = World.make(budget=25, objects=objects)
    world.job("job-2", 0.8)
    endpoint = world.record("job-2")["candidate_endpoint"]
    objects.fail_journal_writes = 1_000  # storage refuses every journal write of this call
    with pytest.raises(RetryableError) as raised:
        world.deliver("job-2")
    assert isinstance(raised.value, ServiceUnavailableError)
    assert world.journals("job-2", "candidate") == []
    # Tried at 10 and 20 answers and when the budget ran out, each write a few times: not at
    # every answer once one failed.
    assert objects.journal_writes == 3 * evaluation.JOURNAL_ATTEMPTS
    assert world.record("job-2")["state"] == "EVALUATING"
    assert "promotion" not in world.record("job-2")

    objects.fail_journal_writes = 0
    world.clock.advance(BACKOFF.total_seconds())
    outcome, _ = world.until_decided("job-2")
    assert outcome.state is JobState.PROMOTED
    # The first call's answers were asked again, nothing more.
    assert len(world.asked_on(endpoint)) == 25 + 60
    assert _figures(world, "job-2") == _uninterrupted(0.8)


def test_evaluation_resume_an_endpoint_that_stops_answering_leaves_its_answers_recorded() -> None:
    world = World.make(budget=1000)
    model = world.job("job-2", 0.8)
    endpoint = world.record("job-2")["candidate_endpoint"]
    endpoints = fake_endpoints(world.deps)
    scripted = endpoints.answers[model]
    down = [True]

    def answer(prompt: str) -> str:
        if down[0] and prompt == EXAMPLES[17][0]:
            raise ServiceUnavailableError("503 the endpoint is overloaded")
        return scripted(prompt)

    endpoints.answers[model] = answer
    with pytest.raises(ServiceUnavailableError):
        world.deliver("job-2")
    # Tried PROMPT_ATTEMPTS times; the 17 answers before it are recorded.
    assert world.journals("job-2", "candidate")[-1]["answered"] == 17
    down[0] = False
    since = len(world.asked)
    outcome, _ = world.until_decided("job-2")
    assert outcome.state is JobState.PROMOTED
    assert world.asked_on(endpoint, since) == [prompt for prompt, _ in EXAMPLES[17:]]
    assert _figures(world, "job-2") == _uninterrupted(0.8)


# --- reconcile: what is left of its pass ----------------------------------------------------


def test_evaluation_resume_reconcile_asks_within_what_is_left_of_its_pass() -> None:
    from distillery.services.promoter import finish_promotions

    world = World.make(budget=25)
    world.job("job-2", 0.8)
    endpoint = world.record("job-2")["candidate_endpoint"]
    with pytest.raises(EvaluationBudgetSpentError):
        world.deliver("job-2")  # 25 answered; the event goes to the dead-letter topic, say

    def monotonic() -> float:  # reconcile's clock: the same fake time
        return (world.clock.now - START).total_seconds()

    # The deployment a pass starts takes fake time too (a pass does not wait for it).
    fake_endpoints(world.deps).monotonic = monotonic

    # A pass with no time left reaches no job, and says it is not complete.
    nothing = finish_promotions(world.deps, 0, monotonic=monotonic)
    assert not nothing.complete and not nothing.moved and not nothing.errors
    assert len(world.asked_on(endpoint)) == 25

    # A pass with 20 s left asks 20 more prompts (not the function's 25), then leaves the job.
    short = finish_promotions(world.deps, 20, monotonic=monotonic)
    assert short.moved == [] and list(short.errors) == ["job-2"]
    assert "evaluated 45 of 60 golden-set prompts of the candidate" in short.errors["job-2"]
    assert "what was left of the reconcile pass, 20 s" in short.errors["job-2"]
    assert len(world.asked_on(endpoint)) == 45
    assert world.record("job-2")["evaluation_progress"]["candidate"]["answered"] == 45

    # The next pass finishes asking from the journal, and starts the deployment (which it does
    # not wait for); a later pass finds it done: every prompt asked once in all.
    for _ in range(3):
        done = finish_promotions(world.deps, 100, monotonic=monotonic)
        assert done.complete and not done.errors
        if done.moved:
            break
        world.clock.advance(BACKOFF.total_seconds())
    assert done.moved == ["job-2"]
    assert world.record("job-2")["state"] == "PROMOTED"
    assert world.asked_on(endpoint) == [prompt for prompt, _ in EXAMPLES]
    assert _figures(world, "job-2") == _uninterrupted(0.8)
