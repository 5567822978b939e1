"""One decision at a time per family, and deployments that outlive the function.

Jobs of one family succeeding together, a rollback racing a promotion, two first promotions, and a
deployment longer than the function's time budget, on the in-memory ports.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from distillery.core.errors import QuotaExceededError, RetryableError
from distillery.core.models import JobState
from distillery.core.runtime import Dependencies
from distillery.services.promoter import (
    ACCURACY,
    FAMILY_LEASE_SECONDS,
    FamilyBusyError,
    Outcome,
    promote,
    rollback,
)
from distillery.services.status import reconcile
from tests.helpers import fake_dependencies, wait_for
from tests.unit.test_promoter import FAMILY, GOOD, _fake, _job, _succeeded


def _short_waits(seconds: float) -> Dependencies:
    """Fakes whose promote_model waits ``seconds`` for a deployment (on the real monotonic
    clock). The same setting bounds the golden-set asking, on ``deps.clock``: frozen here, so
    the asking never runs out however slow the machine is."""
    deps = fake_dependencies(promote_budget_seconds=seconds)
    frozen = deps.clock()
    deps.clock = lambda: frozen
    return deps


def _until_done(action: Any, *, timeout: float = 20.0) -> Any:
    """Call ``action`` as redeliveries would: again after every RetryableError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except RetryableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _deliver(job_id: str, deps: Dependencies) -> Outcome | None:
    """Deliver the job's SUCCEEDED event until it is acknowledged with an end state."""

    def once() -> Outcome | None:
        outcome = promote(job_id, deps)
        if outcome is not None and outcome.state is JobState.EVALUATING:
            raise RetryableError("still deploying")
        return outcome

    return _until_done(once)


def _agree(deps: Dependencies) -> None:
    """The endpoint serves what ``models/{family}`` says: the champion takes all the traffic."""
    family = deps.records.get("models", FAMILY)
    assert family is not None
    champion = family["champion"]
    fake = _fake(deps)
    assert fake.serving(champion["endpoint"]) == {champion["model"]: 100}
    info = fake.get_endpoint(champion["endpoint"])
    assert info.deployed_id_of(champion["model"]) == champion["deployed_model_id"]


@pytest.mark.parametrize("first", ["job-good", "job-weak"])
def test_jobs_of_one_family_succeeding_together_crown_the_best(first: str) -> None:
    deps = fake_dependencies()
    fake = _fake(deps)
    fake.poll_seconds = 0.1
    _succeeded(deps, "job-0", {**GOOD, ACCURACY: 0.5})
    _deliver("job-0", deps)
    good = _succeeded(deps, "job-good", {**GOOD, ACCURACY: 0.9})
    _succeeded(deps, "job-weak", {**GOOD, ACCURACY: 0.6})
    second = "job-weak" if first == "job-good" else "job-good"
    outcomes: dict[str, Any] = {}
    threads = [
        threading.Thread(target=lambda j=j: outcomes.__setitem__(j, _deliver(j, deps)))
        for j in (first, second)
    ]
    threads[0].start()
    # The second job succeeds while the first one's deployment runs.
    wait_for(lambda: len(fake.operations) == 2, timeout=5, interval=0.005)
    threads[1].start()
    for thread in threads:
        thread.join(timeout=30)
    family = deps.records.get("models", FAMILY) or {}
    assert family["champion"]["job_id"] == "job-good"
    assert family["champion"]["model"] == good
    assert _job(deps, "job-good")["state"] == "PROMOTED"
    if first == "job-good":
        # The weak one was decided again against the new champion, and rejected.
        assert _job(deps, "job-weak")["state"] == "REJECTED"
        assert "job-good" in _job(deps, "job-weak")["reason"]
    _agree(deps)


def test_rollback_racing_a_promotion_leaves_endpoint_and_family_agreeing() -> None:
    deps = fake_dependencies()
    fake = _fake(deps)
    _succeeded(deps, "job-1", GOOD)
    _deliver("job-1", deps)
    _succeeded(deps, "job-2", {**GOOD, ACCURACY: 0.92})
    _deliver("job-2", deps)
    _succeeded(deps, "job-3", {**GOOD, ACCURACY: 0.95})
    fake.poll_seconds = 0.2
    promoting = threading.Thread(target=lambda: _deliver("job-3", deps))
    promoting.start()
    try:
        wait_for(lambda: len(fake.operations) == 3, timeout=5, interval=0.005)
        # An operator rolls back while job-3's model is being deployed.
        _until_done(lambda: rollback(FAMILY, deps))
    finally:
        promoting.join(timeout=30)
    _agree(deps)
    family = deps.records.get("models", FAMILY) or {}
    # The rollback waited for the promotion, then took its champion off.
    assert family["champion"]["job_id"] == "job-2"
    assert [r["job_id"] for r in family["rolled_back"]] == ["job-3"]
    assert _job(deps, "job-3")["state"] == "ROLLED_BACK"


def test_rollback_refuses_while_a_promotion_holds_the_family() -> None:
    deps = fake_dependencies()
    fake = _fake(deps)
    _succeeded(deps, "job-1", GOOD)
    _deliver("job-1", deps)
    _succeeded(deps, "job-2", {**GOOD, ACCURACY: 0.95})
    fake.poll_seconds = 0.2
    promoting = threading.Thread(target=lambda: _deliver("job-2", deps))
    promoting.start()
    try:
        wait_for(lambda: len(fake.operations) == 2, timeout=5, interval=0.005)
        with pytest.raises(FamilyBusyError, match="job job-2"):
            rollback(FAMILY, deps)
    finally:
        promoting.join(timeout=30)


def test_two_first_promotions_create_one_endpoint() -> None:
    deps = fake_dependencies()
    fake = _fake(deps)
    real_create = fake.create_endpoint

    def slow_create(display_name: str, location: str) -> Any:
        time.sleep(0.3)  # both deliveries looked for the endpoint before either created it
        return real_create(display_name, location)

    fake.create_endpoint = slow_create  # type: ignore[method-assign]
    _succeeded(deps, "job-a", GOOD)
    _succeeded(deps, "job-b", {**GOOD, ACCURACY: 0.95})
    threads = [threading.Thread(target=lambda j=j: _deliver(j, deps)) for j in ("job-a", "job-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(fake.endpoints) == 1
    family = deps.records.get("models", FAMILY) or {}
    assert family["champion"]["job_id"] == "job-b"
    assert family["endpoint"] == next(iter(fake.endpoints))
    _agree(deps)


def test_a_deployment_longer_than_the_budget_is_finished_by_reconcile_once() -> None:
    deps = _short_waits(0.3)
    fake = _fake(deps)
    fake.poll_seconds = 0.5  # the deployment runs for 1.5 s, five times the budget
    model = _succeeded(deps, "job-1", GOOD)
    started = time.monotonic()
    outcome = promote("job-1", deps)
    assert time.monotonic() - started < 1.0  # returned within the budget, not after the deploy
    assert outcome is not None and outcome.state is JobState.EVALUATING
    assert outcome.reason and "operations/" in outcome.reason
    job = _job(deps, "job-1")
    assert job["state"] == "EVALUATING"
    assert job["promotion"]["operation"] == fake.operations[0].name
    # The function is gone; reconcile runs meanwhile and again once the operation is done.
    reconcile(deps)
    assert _job(deps, "job-1")["state"] == "EVALUATING"
    wait_for(lambda: fake.deploy_operation(fake.operations[0].name).done, timeout=5)
    reconcile(deps)
    job = _job(deps, "job-1")
    assert job["state"] == "PROMOTED"
    assert fake.deploy_calls == 1
    assert fake.serving(job["endpoint"]) == {model: 100}
    assert (deps.records.get("models", FAMILY) or {})["champion"]["job_id"] == "job-1"


def test_a_deployment_longer_than_the_budget_is_finished_by_a_redelivery_once() -> None:
    deps = _short_waits(0.3)
    fake = _fake(deps)
    fake.poll_seconds = 0.5
    model = _succeeded(deps, "job-1", GOOD)
    first = promote("job-1", deps)
    assert first is not None and first.state is JobState.EVALUATING
    outcome = _deliver("job-1", deps)  # the redeliveries poll the recorded operation
    assert outcome is not None and outcome.state is JobState.PROMOTED
    assert fake.deploy_calls == 1
    assert fake.serving(str(outcome.endpoint)) == {model: 100}
    # The family is free again: the next job's promotion is not refused.
    assert "lease" not in (deps.records.get("models", FAMILY) or {})


def test_a_decision_made_against_a_champion_since_replaced_is_made_again() -> None:
    deps = fake_dependencies()
    fake = _fake(deps)
    _succeeded(deps, "job-0", {**GOOD, ACCURACY: 0.5})
    _deliver("job-0", deps)
    _succeeded(deps, "job-weak", {**GOOD, ACCURACY: 0.6})
    real_start = fake.start_deploy

    def out_of_quota(*args: Any, **kwargs: Any) -> str:
        raise QuotaExceededError("out of serving quota")

    fake.start_deploy = out_of_quota  # type: ignore[method-assign]
    with pytest.raises(QuotaExceededError):
        promote("job-weak", deps)  # decided to promote over job-0, not deployed
    fake.start_deploy = real_start  # type: ignore[method-assign]
    assert _job(deps, "job-weak")["promotion"]["champion"]["job_id"] == "job-0"
    _succeeded(deps, "job-good", {**GOOD, ACCURACY: 0.9})
    _deliver("job-good", deps)
    outcome = _deliver("job-weak", deps)  # the redelivery: decided again against job-good
    assert outcome is not None and outcome.state is JobState.REJECTED
    job = _job(deps, "job-weak")
    assert job["promotion"]["decided_again"]["champion_was"] == "job-0"
    assert job["promotion"]["champion"]["job_id"] == "job-good"
    assert "job-good" in job["reason"]
    assert (deps.records.get("models", FAMILY) or {})["champion"]["job_id"] == "job-good"
    _agree(deps)


def test_a_model_deployed_for_a_decision_that_no_longer_stands_is_taken_off() -> None:
    deps = _short_waits(0.05)
    fake = _fake(deps)
    _succeeded(deps, "job-0", {**GOOD, ACCURACY: 0.5})
    _deliver("job-0", deps)
    weak = _succeeded(deps, "job-weak", {**GOOD, ACCURACY: 0.6})
    fake.poll_seconds = 0.1
    first = promote("job-weak", deps)  # deploying over job-0 when its delivery stops
    assert first is not None and first.state is JobState.EVALUATING
    with pytest.raises(FamilyBusyError):
        rollback(FAMILY, deps)  # the family is held while the deployment runs
    # Nobody came back for the weak job until its lease ran out; another job took the family.
    start = deps.clock()
    later = dataclasses.replace(
        deps, clock=lambda: start + timedelta(seconds=FAMILY_LEASE_SECONDS + 1)
    )
    _succeeded(later, "job-good", {**GOOD, ACCURACY: 0.9})
    assert _deliver("job-good", later).state is JobState.PROMOTED  # type: ignore[union-attr]
    outcome = _deliver("job-weak", later)
    assert outcome is not None and outcome.state is JobState.REJECTED
    family = later.records.get("models", FAMILY) or {}
    assert family["champion"]["job_id"] == "job-good"
    endpoint = family["champion"]["endpoint"]
    assert fake.get_endpoint(endpoint).deployed_id_of(weak) is None
    assert fake.deploy_calls == 3
    _agree(later)


def test_reconcile_promotes_a_job_whose_event_was_given_up_while_the_family_was_busy() -> None:
    deps = _short_waits(0.05)
    fake = _fake(deps)
    fake.poll_seconds = 0.1
    _succeeded(deps, "job-a", GOOD)
    first = promote("job-a", deps)
    assert first is not None and first.state is JobState.EVALUATING  # still deploying
    _succeeded(deps, "job-b", {**GOOD, ACCURACY: 0.95})
    with pytest.raises(FamilyBusyError, match="promotion of job job-a"):
        promote("job-b", deps)  # each delivery refused, until the event is dead-lettered
    assert "promotion" not in _job(deps, "job-b")

    def both_done() -> bool:
        reconcile(deps)
        return {_job(deps, j)["state"] for j in ("job-a", "job-b")} == {"PROMOTED"}

    wait_for(both_done, timeout=10, interval=0.05, what="reconcile finished both promotions")
    family = deps.records.get("models", FAMILY) or {}
    assert family["champion"]["job_id"] == "job-b"
    assert [h["job_id"] for h in family["history"]] == ["job-a"]
    assert fake.deploy_calls == 2
    _agree(deps)
