"""promote_model end to end on the local stack: upload → validation → launch → training →
SUCCEEDED → promote_model deploys the model on the endpoint named after it, which answers the eval
prompts; then a worse rerun of the same family is REJECTED and the champion stays."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from distillery.core.models import LaunchRequest
from distillery.local.example_data import generate
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
