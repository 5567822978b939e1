"""promote_model end to end on the local stack: upload → validation → launch → training →
SUCCEEDED → promote_model deploys the model on the endpoint named after it, which answers the eval
prompts; then a worse rerun of the same family is REJECTED and the champion stays."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from typing import Any

import pytest

from distillery.core.jobs import new_record
from distillery.core.models import JobState, LaunchRequest
from distillery.core.runtime import Dependencies
from distillery.local.example_data import generate
from distillery.services.promoter import finish_promotions, promote
from tests.helpers import jsonl, wait_for

pytestmark = pytest.mark.integration

FAMILY = "promo-distilled"


def _jobs(stack: Any) -> dict[str, dict[str, Any]]:
    return {d.id: d.to_dict() for d in stack.firestore_client().collection("jobs").stream()}


def _finished(stack: Any, state: str, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The first job (not in ``exclude``) that reached ``state``; fails on another end state."""

    def probe() -> dict[str, Any] | None:
        for job_id, record in _jobs(stack).items():
            if job_id in exclude:
                continue
            if record["state"] in ("FAILED", "CANCELLED", "REJECTED_BY_POLICY") or (
                record["state"] in ("PROMOTED", "REJECTED") and record["state"] != state
            ):
                raise AssertionError(
                    f"job {job_id} ended {record['state']}: {record.get('reason')}"
                )
            if record["state"] == state:
                return record
        return None

    found: dict[str, Any] = wait_for(probe, timeout=150, interval=0.5, what=f"a job {state}")
    return found


def _predict(stack: Any, endpoint: str, prompts: list[str]) -> list[str]:
    url = f"{stack.env['DISTILLERY_VERTEX_API_ENDPOINT']}/v1/{endpoint}:predict"
    body = json.dumps({"instances": [{"prompt": p} for p in prompts]}).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    return [str(p["content"]).strip() for p in answer["predictions"]]


def test_promote_model_serves_the_champion_and_rejects_a_worse_rerun(stack: Any) -> None:
    train, evaluation = generate(300, 30)
    stack.upload("datasets/promo.eval.jsonl", jsonl(evaluation))
    stack.upload("datasets/promo.config.json", b'{"train_steps": 200}')
    stack.upload("datasets/promo.jsonl", jsonl(train))

    champion_job = _finished(stack, "PROMOTED")
    assert champion_job["spec"]["model_display_name"] == FAMILY
    endpoint = champion_job["endpoint"]
    assert champion_job["promotion"]["decision"] == "promote"
    assert "eval_fraction_of_correct_next_step_preds" in champion_job["metrics"]
    family = stack.firestore_client().collection("models").document(FAMILY).get().to_dict()
    assert family["champion"]["job_id"] == champion_job["job_id"]
    assert family["champion"]["endpoint"] == endpoint

    # The endpoint named after the model answers the eval prompts.
    answers = _predict(stack, endpoint, [e.input_text for e in evaluation])
    correct = sum(a == e.output_text for a, e in zip(answers, evaluation, strict=True))
    assert correct / len(evaluation) >= 0.9, answers

    # A worse rerun of the same family (one training step) is rejected; the champion stays.
    rerun = LaunchRequest(
        rerun_of=champion_job["job_id"], overrides={"train_steps": 1}, request_id="worse-rerun"
    )
    stack.publish(stack.settings.launch_topic, rerun.to_bytes())
    rejected = _finished(stack, "REJECTED", exclude=frozenset({champion_job["job_id"]}))
    assert "does not beat" in rejected["reason"] and champion_job["job_id"] in rejected["reason"]
    after = stack.firestore_client().collection("models").document(FAMILY).get().to_dict()
    assert after["champion"]["job_id"] == champion_job["job_id"] and after["history"] == []
    assert _predict(stack, endpoint, [evaluation[0].input_text]) == [evaluation[0].output_text]


def test_a_deployment_longer_than_promote_models_budget_is_finished_once(
    stack: Any, stack_deps: Dependencies
) -> None:
    """On the real adapters (Firestore emulator, the local Vertex AI API's deployModel, which runs
    for a second): a promotion with a shorter budget returns with the operation recorded, and
    finish_promotions (reconcile's) polls it by name and finishes the promotion, deploying once."""
    train, evaluation = generate(300, 30)
    stack.upload("datasets/promo.eval.jsonl", jsonl(evaluation))
    stack.upload("datasets/promo.config.json", b'{"train_steps": 200}')
    stack.upload("datasets/promo.jsonl", jsonl(train))
    champion_job = _finished(stack, "PROMOTED")

    # The same model, as a SUCCEEDED job of another family: a new endpoint, a new deployment.
    deps = dataclasses.replace(
        stack_deps,
        settings=dataclasses.replace(stack_deps.settings, promote_budget_seconds=0.1),
    )
    record = new_record(
        "slow-deploy",
        JobState.SUCCEEDED,
        deps.clock(),
        {
            "spec": {"model_display_name": "slow-distilled"},
            "model": champion_job["model"],
            "metrics": champion_job["metrics"],
            "request": {"overrides": {}},
        },
    )
    deps.records.set(deps.settings.jobs_collection, "slow-deploy", record)
    outcome = promote("slow-deploy", deps)
    assert outcome is not None and outcome.state is JobState.SUCCEEDED, outcome
    job = _jobs(stack)["slow-deploy"]
    operation = job["promotion"]["operation"]
    assert "/operations/" in operation
    family = stack.firestore_client().collection("models").document("slow-distilled").get()
    assert family.to_dict()["lease"]["holder"] == "promotion of job slow-deploy"

    def finished() -> bool:
        finish_promotions(deps)
        return bool(_jobs(stack)["slow-deploy"]["state"] == "PROMOTED")

    wait_for(finished, timeout=30, interval=0.5, what="the slow deployment finished")
    job = _jobs(stack)["slow-deploy"]
    info = deps.require_endpoints().get_endpoint(job["endpoint"])
    assert [d.model for d in info.deployed_models] == [champion_job["model"]]
    assert info.traffic_split == {job["deployed_model_id"]: 100}
    family = stack.firestore_client().collection("models").document("slow-distilled").get()
    assert family.to_dict()["champion"]["job_id"] == "slow-deploy"
    assert "lease" not in family.to_dict()
