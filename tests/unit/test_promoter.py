"""The promoter on the in-memory ports: gates, champions, canaries, idempotency and rollback."""

from __future__ import annotations

import base64
import dataclasses
import random
import threading
from datetime import timedelta
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from distillery.core.errors import (
    ConfigurationError,
    QuotaExceededError,
    RetryableError,
    ServiceUnavailableError,
)
from distillery.core.models import JobState, StatusEvent
from distillery.core.ports import ModelInfo, canary_split
from distillery.core.runtime import Dependencies, run_handler
from distillery.core.settings import Settings
from distillery.fakes import (
    InMemoryModelEndpoints,
    InMemoryPublisher,
)
from distillery.local.judged import succeeded_job
from distillery.services.promoter import (
    ACCURACY,
    DEPLOY_CLAIM_SECONDS,
    NothingToRollBackError,
    Thresholds,
    UnknownJobError,
    gate,
    handle_status_event,
    promote,
    rollback,
)
from tests.helpers import BUCKET, PROJECT, fake_dependencies, wait_for

FAMILY = "news-distilled"
GOOD = {ACCURACY: 0.9, "eval_total_loss": 0.4, "eval_num_predictions": 500.0}


def _fake(deps: Dependencies) -> InMemoryModelEndpoints:
    assert isinstance(deps.endpoints, InMemoryModelEndpoints)
    return deps.endpoints


def _succeeded(
    deps: Dependencies,
    job_id: str,
    metrics: dict[str, float] | None,
    family: str = FAMILY,
    overrides: dict[str, Any] | None = None,
    *,
    correct: float | None = None,
    eval_set: bool = True,
) -> str:
    """A SUCCEEDED job whose model (registered on the fake, deployed on its own endpoint) has
    the token ``metrics`` and answers ``correct`` of the golden set right (by default its token
    accuracy, else 0.9); its model name."""
    share = correct if correct is not None else (metrics or {}).get(ACCURACY, 0.9)
    return succeeded_job(
        deps,
        job_id,
        family,
        share,
        bucket=BUCKET,
        metrics=metrics,
        overrides=overrides,
        eval_set=eval_set,
    )


def _event(job_id: str, state: str = "SUCCEEDED") -> CloudEvent:
    status = StatusEvent(job_id=job_id, state=JobState(state), at="2026-11-29T10:00:00Z")
    return CloudEvent(
        {
            "id": f"{state}-{random.random()}",
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/p/topics/distill-job-status",
        },
        {
            "message": {
                "data": base64.b64encode(status.to_bytes()).decode(),
                "attributes": status.attributes(),
                "messageId": "1",
            },
            "subscription": "projects/p/subscriptions/promote",
        },
    )


def _job(deps: Dependencies, job_id: str) -> dict[str, Any]:
    record = deps.records.get("jobs", job_id)
    assert record is not None
    return record


def _announced(deps: Dependencies) -> list[tuple[str, str]]:
    assert isinstance(deps.publisher, InMemoryPublisher)
    return [
        (m.attributes["job_id"], m.attributes["state"])
        for m in deps.publisher.on("distill-job-status")
    ]


# --- the gates ------------------------------------------------------------------------------


def test_gate_passes_good_metrics_without_a_champion() -> None:
    assert gate(GOOD, Thresholds(min_eval_accuracy=0.8, max_eval_loss=1.0)) == []


def test_gate_lists_every_failed_rule_with_its_figures() -> None:
    thresholds = Thresholds(min_eval_accuracy=0.95, max_eval_loss=0.3, min_eval_predictions=1000)
    champion = {"job_id": "old", "model": "m-old", "metrics": {ACCURACY: 0.93}}
    failures = gate(GOOD, thresholds, champion)
    assert len(failures) == 4
    assert "0.9 is below the minimum 0.95" in failures[0]
    assert "eval_total_loss 0.4 is above the maximum 0.3" in failures[1]
    assert "eval_num_predictions 500 is below the minimum 1000" in failures[2]
    assert "job old" in failures[3] and "0.93" in failures[3]


def test_gate_applies_no_service_gate_the_service_does_not_report() -> None:
    # The token metrics are extra gates where they are found: the golden set decides.
    train_only = {"train_total_loss": 0.2}
    assert gate(train_only, Thresholds(min_eval_accuracy=0.9)) == []
    champion = {"job_id": "old", "model": "m", "metrics": {ACCURACY: 0.5}}
    assert gate(train_only, Thresholds(min_eval_accuracy=0.9), champion) == []
    assert gate({ACCURACY: 0.9}, Thresholds(max_eval_loss=1.0, min_eval_predictions=10)) == []
    # A champion without token metrics: nothing to compare them with.
    assert gate({ACCURACY: 0.1}, Thresholds(), {"job_id": "old", "model": "m"}) == []


@pytest.mark.parametrize(
    ("ours", "margin", "passes"),
    [(0.90, 0.0, True), (0.89, 0.0, False), (0.92, 0.05, False), (0.95, 0.05, True)],
)
def test_gate_champion_comparison_with_margin(ours: float, margin: float, passes: bool) -> None:
    champion = {"job_id": "old", "model": "m", "metrics": {ACCURACY: 0.9}}
    failures = gate({ACCURACY: ours}, Thresholds(promotion_margin=margin), champion)
    assert (failures == []) is passes
    if not passes:
        assert "DISTILLERY_PROMOTION_MARGIN" in failures[0]


# --- promotion ------------------------------------------------------------------------------


def test_promoter_first_model_creates_the_endpoint_and_becomes_champion(deps: Dependencies) -> None:
    model = _succeeded(deps, "job-1", GOOD)
    outcome = handle_status_event(_event("job-1"), deps)
    assert outcome is not None and outcome.state is JobState.PROMOTED
    fake = _fake(deps)
    # The model's own endpoint (its pipeline's deployment) is gone; the family's serves it.
    [(endpoint, info)] = fake.endpoints.items()
    assert info["display_name"] == f"{FAMILY}-serving" and outcome.endpoint == endpoint
    assert fake.serving(endpoint) == {model: 100}
    record = _job(deps, "job-1")
    assert record["state"] == "PROMOTED" and record["endpoint"] == endpoint
    assert record["promotion"]["decision"] == "promote"
    assert [h["state"] for h in record["history"]] == ["SUCCEEDED", "EVALUATING", "PROMOTED"]
    family = deps.records.get("models", FAMILY)
    assert family is not None
    assert family["champion"]["job_id"] == "job-1" and family["champion"]["metrics"] == GOOD
    assert family["champion"]["golden_metrics"]["accuracy"] == 0.9
    assert family["history"] == []
    # The job's eval set became the family's golden set, frozen.
    assert family["golden"]["source"] == "the eval set of job job-1"
    assert family["golden"]["uri"].startswith(f"gs://{BUCKET}/golden/")
    assert _announced(deps) == [("job-1", "EVALUATING"), ("job-1", "PROMOTED")]
    message = [m for m in deps.publisher.on("distill-job-status")][-1]  # type: ignore[attr-defined]
    assert StatusEvent.model_validate_json(message.data).endpoint == endpoint


def test_promoter_better_model_replaces_the_champion_keeping_history(deps: Dependencies) -> None:
    old = _succeeded(deps, "job-1", GOOD)
    promote("job-1", deps)
    new = _succeeded(deps, "job-2", {**GOOD, ACCURACY: 0.95})
    outcome = promote("job-2", deps)
    assert outcome is not None and outcome.state is JobState.PROMOTED
    assert _fake(deps).serving(str(outcome.endpoint)) == {new: 100}
    family = deps.records.get("models", FAMILY)
    assert family is not None
    assert family["champion"]["job_id"] == "job-2"
    assert [h["job_id"] for h in family["history"]] == ["job-1"]
    # The previous champion stays deployed (no traffic) so a rollback is instant.
    info = _fake(deps).get_endpoint(str(outcome.endpoint))
    assert info.deployed_id_of(old) is not None


def test_promoter_worse_model_is_rejected_with_every_reason() -> None:
    deps = fake_dependencies(min_eval_accuracy=0.85)
    _succeeded(deps, "job-1", GOOD)
    promote("job-1", deps)
    _succeeded(deps, "job-2", {**GOOD, ACCURACY: 0.6})
    outcome = promote("job-2", deps)
    assert outcome is not None and outcome.state is JobState.REJECTED
    record = _job(deps, "job-2")
    assert record["state"] == "REJECTED"
    assert "0.6 is below the minimum 0.85" in record["reason"]
    assert "job job-1" in record["reason"] and "0.9" in record["reason"]
    family = deps.records.get("models", FAMILY)
    assert family is not None and family["champion"]["job_id"] == "job-1"
    assert _fake(deps).deploy_calls == 1
    rejected = [m for m in deps.publisher.on("distill-job-status")][-1]  # type: ignore[attr-defined]
    assert StatusEvent.model_validate_json(rejected.data).reason == record["reason"]


def test_promoter_gates_come_from_the_jobs_config_in_place_of_the_settings() -> None:
    deps = fake_dependencies(min_eval_accuracy=0.5, max_eval_loss=10.0)
    _succeeded(deps, "job-1", GOOD, overrides={"min_eval_accuracy": 0.95, "train_steps": 300})
    outcome = promote("job-1", deps)
    assert outcome is not None and outcome.state is JobState.REJECTED
    reason = str(outcome.reason)
    assert "0.9 is below the minimum 0.95 (the job's config min_eval_accuracy)" in reason
    assert "eval_total_loss" not in reason  # the setting's 10.0 still applies and passes
    decision = _job(deps, "job-1")["promotion"]
    assert decision["thresholds"]["min_eval_accuracy"] == 0.95
    assert decision["thresholds"]["max_eval_loss"] == 10.0
    # A config may also loosen a gate for its own dataset.
    _succeeded(deps, "job-2", GOOD, overrides={"min_eval_accuracy": 0.0})
    deps_strict = fake_dependencies(min_eval_accuracy=0.99)
    deps_strict.records = deps.records
    deps_strict.endpoints = deps.endpoints
    deps_strict.objects = deps.objects
    outcome = promote("job-2", deps_strict)
    assert outcome is not None and outcome.state is JobState.PROMOTED


def test_thresholds_name_the_setting_when_the_config_sets_nothing() -> None:
    thresholds = Thresholds.from_settings(
        Settings(project="p", bucket="b", min_eval_predictions=50), {"promotion_margin": 0.1}
    )
    assert thresholds.min_eval_predictions == 50
    assert thresholds.source("min_eval_predictions") == "DISTILLERY_MIN_EVAL_PREDICTIONS"
    assert thresholds.promotion_margin == 0.1
    assert thresholds.source("promotion_margin") == "the job's config promotion_margin"
    failures = gate({ACCURACY: 0.9, "eval_num_predictions": 10.0}, thresholds)
    assert failures == [
        "eval_num_predictions 10 is below the minimum 50 (DISTILLERY_MIN_EVAL_PREDICTIONS)"
    ]


def test_promoter_judges_a_job_without_token_metrics_on_the_golden_set(
    deps: Dependencies,
) -> None:
    _succeeded(deps, "job-1", {"train_total_loss": 0.1}, correct=0.9)
    outcome = promote("job-1", deps)
    assert outcome is not None and outcome.state is JobState.PROMOTED


def test_promoter_rejects_a_job_with_no_golden_set_and_removes_its_endpoint(
    deps: Dependencies,
) -> None:
    _succeeded(deps, "job-1", GOOD, eval_set=False)
    outcome = promote("job-1", deps)
    assert outcome is not None and outcome.state is JobState.REJECTED
    assert "no golden set" in str(outcome.reason)
    assert _fake(deps).endpoints == {}  # nothing left billing


def test_promoter_reads_the_model_metrics_when_the_job_has_none(deps: Dependencies) -> None:
    model = _succeeded(deps, "job-1", None)
    _fake(deps).models[model] = ModelInfo(model, FAMILY, GOOD)  # the registry's metadata
    outcome = promote("job-1", deps)
    assert outcome is not None and outcome.state is JobState.PROMOTED
    assert _job(deps, "job-1")["promotion"]["metrics"] == GOOD


def test_promoter_canary_splits_the_traffic_with_the_champion() -> None:
    deps = fake_dependencies(canary_percent=10)
    first = _succeeded(deps, "job-1", GOOD)
    endpoint = str(promote("job-1", deps).endpoint)  # type: ignore[union-attr]
    assert _fake(deps).serving(endpoint) == {first: 100}  # the first model takes everything
    second = _succeeded(deps, "job-2", {**GOOD, ACCURACY: 0.92})
    promote("job-2", deps)
    assert _fake(deps).serving(endpoint) == {first: 90, second: 10}
    third = _succeeded(deps, "job-3", {**GOOD, ACCURACY: 0.94})
    promote("job-3", deps)
    # The canary shares with the champion (job-2); job-1 no longer serves and is undeployed.
    assert _fake(deps).serving(endpoint) == {second: 90, third: 10}
    assert _fake(deps).get_endpoint(endpoint).deployed_id_of(first) is None


def test_promoter_redelivered_event_deploys_once(deps: Dependencies) -> None:
    _succeeded(deps, "job-1", GOOD)
    for _ in range(3):
        run_handler("promote_model", _event("job-1"), handle_status_event, deps)
    assert _fake(deps).deploy_calls == 1
    assert _announced(deps) == [("job-1", "EVALUATING"), ("job-1", "PROMOTED")]
    family = deps.records.get("models", FAMILY)
    assert family is not None and family["history"] == []


def test_promoter_redelivery_during_the_deployment_does_not_deploy_again(
    deps: Dependencies,
) -> None:
    model = _succeeded(deps, "job-1", GOOD)
    fake = _fake(deps)
    fake.poll_seconds = 0.5  # the first delivery's deployment runs for 1.5 s
    outcomes: list[Any] = []
    first = threading.Thread(target=lambda: outcomes.append(promote("job-1", deps)))
    first.start()
    try:
        wait_for(lambda: fake.operations, timeout=5, interval=0.01)
        # Redelivered meanwhile: the endpoint does not list the model yet.
        with pytest.raises(RetryableError, match="being deployed by another delivery"):
            promote("job-1", deps)
    finally:
        first.join(timeout=10)
    assert [o.state for o in outcomes] == [JobState.PROMOTED]
    again = promote("job-1", deps)  # the redelivery, later: finds the model deployed
    assert again is not None and again.state is JobState.PROMOTED
    assert fake.deploy_calls == 1
    endpoint = str(again.endpoint)
    [deployed] = fake.get_endpoint(endpoint).deployed_models
    champion = (deps.records.get("models", FAMILY) or {})["champion"]
    assert champion["deployed_model_id"] == deployed.deployed_model_id
    assert fake.serving(endpoint) == {model: 100}


def test_promoter_claim_of_a_vanished_deployment_expires(deps: Dependencies) -> None:
    _succeeded(deps, "job-1", GOOD)
    fake = _fake(deps)
    real_deploy = fake.start_deploy

    def lost(*args: Any, **kwargs: Any) -> str:
        raise ServiceUnavailableError("no answer: the deployment may be running")

    fake.start_deploy = lost  # type: ignore[method-assign]
    with pytest.raises(ServiceUnavailableError):
        promote("job-1", deps)
    fake.start_deploy = real_deploy  # type: ignore[method-assign]
    with pytest.raises(RetryableError, match="being deployed"):
        promote("job-1", deps)  # the claim stands: the deployment may still be running
    start = deps.clock()
    later = dataclasses.replace(
        deps, clock=lambda: start + timedelta(seconds=DEPLOY_CLAIM_SECONDS + 1)
    )
    outcome = promote("job-1", later)
    assert outcome is not None and outcome.state is JobState.PROMOTED
    assert fake.deploy_calls == 1


def test_promoter_refused_deployment_leaves_no_claim(deps: Dependencies) -> None:
    _succeeded(deps, "job-1", GOOD)
    fake = _fake(deps)
    real_deploy = fake.start_deploy

    def out_of_quota(*args: Any, **kwargs: Any) -> str:
        raise QuotaExceededError("out of serving quota")

    fake.start_deploy = out_of_quota  # type: ignore[method-assign]
    with pytest.raises(QuotaExceededError):
        promote("job-1", deps)
    fake.start_deploy = real_deploy  # type: ignore[method-assign]
    assert "deploying" not in _job(deps, "job-1")["promotion"]
    outcome = promote("job-1", deps)  # the redelivery deploys at once
    assert outcome is not None and outcome.state is JobState.PROMOTED
    assert fake.deploy_calls == 1


def test_promoter_converges_after_a_crash_between_deploy_and_transition(deps: Dependencies) -> None:
    _succeeded(deps, "job-1", GOOD)
    fake = _fake(deps)
    real_get = fake.get_endpoint
    calls = {"n": 0}

    def crash_after_deploy(name: str) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the read after the deployment, before the champion is crowned
            raise ConnectionError("crash")
        return real_get(name)

    fake.get_endpoint = crash_after_deploy  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        promote("job-1", deps)
    fake.get_endpoint = real_get  # type: ignore[method-assign]
    assert _job(deps, "job-1")["state"] == "EVALUATING"
    promote("job-1", deps)
    promote("job-1", deps)
    assert fake.deploy_calls == 1 and _job(deps, "job-1")["state"] == "PROMOTED"


def test_promoter_decision_never_flips_on_redelivery() -> None:
    deps = fake_dependencies(min_eval_accuracy=0.95)
    _succeeded(deps, "job-1", GOOD)
    assert promote("job-1", deps).state is JobState.REJECTED  # type: ignore[union-attr]
    # Even if the thresholds change, a redelivered event keeps the recorded decision.
    relaxed = dataclasses.replace(deps, settings=Settings(project=PROJECT, bucket=BUCKET))
    assert promote("job-1", relaxed).state is JobState.REJECTED  # type: ignore[union-attr]
    assert _fake(deps).deploy_calls == 0
    assert _announced(deps) == [("job-1", "EVALUATING"), ("job-1", "REJECTED")]


def test_promoter_ignores_other_states_and_unknown_jobs_are_permanent(deps: Dependencies) -> None:
    assert handle_status_event(_event("job-1", "RUNNING"), deps) is None
    assert handle_status_event(_event("job-1", "PROMOTED"), deps) is None
    with pytest.raises(UnknownJobError):
        handle_status_event(_event("nobody"), deps)
    _succeeded(deps, "job-1", GOOD)
    record = _job(deps, "job-1")
    record["state"] = "RUNNING"
    deps.records.set("jobs", "job-1", record)
    assert promote("job-1", deps) is None


def test_promoter_rejects_a_job_without_a_model(deps: Dependencies) -> None:
    _succeeded(deps, "job-1", GOOD)
    record = _job(deps, "job-1")
    del record["model"]
    deps.records.set("jobs", "job-1", record)
    outcome = promote("job-1", deps)
    assert outcome is not None and "no model" in str(outcome.reason)


# --- rollback -------------------------------------------------------------------------------


def test_rollback_restores_the_previous_champion(deps: Dependencies) -> None:
    old = _succeeded(deps, "job-1", GOOD)
    promote("job-1", deps)
    new = _succeeded(deps, "job-2", {**GOOD, ACCURACY: 0.95})
    endpoint = str(promote("job-2", deps).endpoint)  # type: ignore[union-attr]
    published = len(_announced(deps))

    family = rollback(FAMILY, deps, from_job="job-2")
    assert family["champion"]["job_id"] == "job-1" and family["history"] == []
    assert [r["job_id"] for r in family["rolled_back"]] == ["job-2"]
    fake = _fake(deps)
    assert fake.serving(endpoint) == {old: 100}
    assert fake.get_endpoint(endpoint).deployed_id_of(new) is None
    job = _job(deps, "job-2")
    assert job["rolled_back_at"] and job["restored_job_id"] == "job-1"
    assert job["state"] == "ROLLED_BACK"
    assert f"the model of job job-1 serves {endpoint} again" in job["reason"]
    assert _announced(deps)[published:] == [("job-2", "ROLLED_BACK")]
    again = rollback(FAMILY, deps, from_job="job-2")  # a repeated call changes nothing
    assert again["champion"]["job_id"] == "job-1" and fake.serving(endpoint) == {old: 100}
    assert _announced(deps)[published:] == [("job-2", "ROLLED_BACK")]
    with pytest.raises(NothingToRollBackError):
        rollback(FAMILY, deps)  # job-1 has no predecessor


def test_rollback_repeated_after_a_crash_moves_the_job(deps: Dependencies) -> None:
    _succeeded(deps, "job-1", GOOD)
    promote("job-1", deps)
    _succeeded(deps, "job-2", {**GOOD, ACCURACY: 0.95})
    promote("job-2", deps)
    published = len(_announced(deps))
    # A crash after the family's record changed, before the job moved: the job is still PROMOTED.
    record = _job(deps, "job-2")
    rollback(FAMILY, deps, from_job="job-2")
    deps.records.set("jobs", "job-2", record)
    del deps.publisher.messages[published:]  # type: ignore[attr-defined]
    rollback(FAMILY, deps, from_job="job-2")
    assert _job(deps, "job-2")["state"] == "ROLLED_BACK"
    assert _announced(deps)[published:] == [("job-2", "ROLLED_BACK")]


def test_a_rolled_back_job_moves_no_further() -> None:
    from distillery.core.jobs import can_move

    assert can_move(JobState.PROMOTED, JobState.ROLLED_BACK)
    for state in JobState:
        assert not can_move(JobState.ROLLED_BACK, state)
        if state is not JobState.PROMOTED:
            assert not can_move(state, JobState.ROLLED_BACK)


def test_rollback_redeploys_a_previous_champion_that_was_undeployed(deps: Dependencies) -> None:
    old = _succeeded(deps, "job-1", GOOD)
    endpoint = str(promote("job-1", deps).endpoint)  # type: ignore[union-attr]
    _succeeded(deps, "job-2", {**GOOD, ACCURACY: 0.95})
    promote("job-2", deps)
    fake = _fake(deps)
    info = fake.get_endpoint(endpoint)
    fake.undeploy(endpoint, str(info.deployed_id_of(old)))
    rollback(FAMILY, deps)
    assert fake.serving(endpoint) == {old: 100}


def test_rollback_of_an_unknown_family_is_refused(deps: Dependencies) -> None:
    with pytest.raises(NothingToRollBackError):
        rollback("nobody", deps)


# --- settings and the split -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DISTILLERY_CANARY_PERCENT", "100"),
        ("DISTILLERY_CANARY_PERCENT", "-1"),
        ("DISTILLERY_MIN_EVAL_ACCURACY", "1.5"),
        ("DISTILLERY_PROMOTION_MARGIN", "-0.1"),
        ("DISTILLERY_MAX_EVAL_LOSS", "-1"),
        ("DISTILLERY_MIN_EVAL_PREDICTIONS", "-5"),
    ],
)
def test_promotion_settings_refuse_out_of_range_values(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


def test_promotion_settings_read_the_environment() -> None:
    settings = Settings.from_env(
        {"DISTILLERY_CANARY_PERCENT": "20", "DISTILLERY_PROMOTE_WITHOUT_EVAL": "true"}
    )
    assert (settings.canary_percent, settings.promote_without_eval) == (20, True)


def test_canary_split_gives_the_rest_to_the_incumbent() -> None:
    assert canary_split({}, 10) == {"0": 100}
    assert canary_split({"a": 100}, 100) == {"0": 100}
    assert canary_split({"a": 70, "b": 30}, 10) == {"0": 10, "a": 90}
    assert canary_split({"a": 70, "b": 30}, 10, incumbent="b") == {"0": 10, "b": 90}
    assert canary_split({"a": 100}, 10, incumbent="gone") == {"0": 100}
