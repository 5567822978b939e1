"""promote_model end to end on the local stack: upload → validation → launch → training →
SUCCEEDED (the model on its own endpoint) → EVALUATING on the family's golden set, side by side
with the champion → PROMOTED on the family's serving endpoint, or REJECTED; the judged model's own
endpoint is gone either way."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from distillery.core.errors import ObjectNotFoundError
from distillery.core.jobs import new_record
from distillery.core.models import JobState, LaunchRequest
from distillery.core.runtime import Dependencies
from distillery.local.chaos_stack import StackChaos
from distillery.local.example_data import generate
from distillery.services.promoter import finish_promotions, promote
from tests.helpers import jsonl, wait_for
from tests.unit.test_reports import parse
from tests.unit.test_reports_browser import _browse

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

    found: dict[str, Any] = wait_for(probe, timeout=300, interval=0.5, what=f"a job {state}")
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


def _gone(stack_deps: Dependencies, endpoint: str) -> bool:
    try:
        stack_deps.require_endpoints().get_endpoint(endpoint)
    except ObjectNotFoundError:
        return True
    return False


def _rerun(stack: Any, of: dict[str, Any], steps: int, request_id: str) -> None:
    rerun = LaunchRequest(
        rerun_of=of["job_id"], overrides={"train_steps": steps}, request_id=request_id
    )
    stack.publish(stack.settings.launch_topic, rerun.to_bytes())


@pytest.mark.timeout(900)  # three trainings, each judged beside the champion
def test_promote_model_judges_on_the_golden_set_side_by_side(
    stack: Any, stack_deps: Dependencies, tmp_path: Path
) -> None:
    """A weak first model is promoted on the absolute thresholds; a better rerun beats it on the
    same golden set and is promoted; a worse rerun is rejected by the side-by-side result. Each
    model is judged on its own endpoint, which is gone once it is decided."""
    train, evaluation = generate(300, 30)
    stack.upload("datasets/promo.eval.jsonl", jsonl(evaluation))
    stack.upload("datasets/promo.config.json", b'{"train_steps": 1}')
    stack.upload("datasets/promo.jsonl", jsonl(train))

    weak = _finished(stack, "PROMOTED")
    assert weak["spec"]["model_display_name"] == FAMILY
    # Its pipeline deployed it on an endpoint of its own before the gate; that one is gone now.
    own = weak["candidate_endpoint"]
    assert weak["promotion"]["candidate_endpoint"] == own != weak["endpoint"]
    assert _gone(stack_deps, own)
    states = [h["state"] for h in weak["history"]]
    assert states[-3:] == ["SUCCEEDED", "EVALUATING", "PROMOTED"]
    golden = weak["promotion"]["evaluation"]["golden"]
    assert golden["examples"] == len(evaluation)
    family = stack.firestore_client().collection("models").document(FAMILY).get().to_dict()
    assert family["golden"]["sha256"] == golden["sha256"]
    serving = family["endpoint"]
    assert weak["endpoint"] == serving
    assert stack_deps.require_endpoints().get_endpoint(serving).display_name == (
        f"{FAMILY}-serving"
    )

    _rerun(stack, weak, 200, "better-rerun")
    better = _finished(stack, "PROMOTED", exclude=frozenset({weak["job_id"]}))
    evaluated = better["promotion"]["evaluation"]
    assert evaluated["golden"]["sha256"] == golden["sha256"]  # the same frozen set
    assert evaluated["comparison"]["mean_difference"] > 0
    assert evaluated["comparison"]["low"] >= -0.02
    assert _gone(stack_deps, better["candidate_endpoint"])
    answers = _predict(stack, serving, [e.input_text for e in evaluation])
    correct = sum(a == e.output_text for a, e in zip(answers, evaluation, strict=True))
    assert correct / len(evaluation) >= 0.9, answers

    _rerun(stack, better, 1, "worse-rerun")
    done = frozenset({weak["job_id"], better["job_id"]})
    rejected = _finished(stack, "REJECTED", exclude=done)
    reason = rejected["reason"]
    assert "on the golden set: mean paired difference" in reason and "CI" in reason, reason
    assert _gone(stack_deps, rejected["promotion"]["candidate_endpoint"])  # nothing billing
    after = stack.firestore_client().collection("models").document(FAMILY).get().to_dict()
    assert after["champion"]["job_id"] == better["job_id"]
    assert [h["job_id"] for h in after["history"]] == [weak["job_id"]]
    assert _predict(stack, serving, [evaluation[0].input_text]) == [evaluation[0].output_text]

    # The decision report is in the bucket, as JSON and as a page.
    report = rejected["promotion"]["report"]
    assert report["html"].endswith(f"decisions/{rejected['job_id']}.html")
    name = report["json"].split("/", 3)[3]
    data = json.loads(stack_deps.objects.read_bytes(stack.settings.bucket, name))
    assert data["decision"] == "reject" and data["comparison"]["mean_difference"] < 0
    assert data["champion"]["job_id"] == better["job_id"]
    assert data["disagreements"]
    # The page, as a user's browser shows it.
    page = stack_deps.objects.read_bytes(stack.settings.bucket, report["html"].split("/", 3)[3])
    text = parse(_browse(tmp_path, page.decode(), "--dump-dom").stdout).visible
    assert rejected["job_id"] in text and "REJECT" in text
    assert f"{data['comparison']['mean_difference']:.4f}" in text, text


def test_a_deployment_longer_than_promote_models_budget_is_finished_once(
    stack: Any, stack_deps: Dependencies
) -> None:
    """On the real adapters (Firestore emulator, the local Vertex AI API's deployModel, which runs
    for a second): a promotion that waits less than that returns with the operation recorded, and
    finish_promotions (reconcile's) polls it by name and finishes the promotion, deploying once."""
    train, evaluation = generate(300, 30)
    stack.upload("datasets/promo.eval.jsonl", jsonl(evaluation))
    stack.upload("datasets/promo.config.json", b'{"train_steps": 200}')
    stack.upload("datasets/promo.jsonl", jsonl(train))
    champion_job = _finished(stack, "PROMOTED")

    # The same model, as a SUCCEEDED job of another family: a new endpoint, a new deployment.
    # The promotion waits 0.1 s for its deployment (it still asks the golden set within the
    # function's whole budget).
    deps = stack_deps
    # As its pipeline would have: the model on an endpoint of its own, named after the family.
    endpoints = deps.require_endpoints()
    own = endpoints.create_endpoint("slow-distilled", "us-central1")
    endpoints.deploy(own.name, champion_job["model"])
    record = new_record(
        "slow-deploy",
        JobState.SUCCEEDED,
        deps.clock(),
        {
            "spec": {
                "model_display_name": "slow-distilled",
                "evaluation_data_uri": champion_job["spec"]["evaluation_data_uri"],
            },
            "model": champion_job["model"],
            "candidate_endpoint": own.name,
            "metrics": champion_job["metrics"],
            "request": {"overrides": {}},
        },
    )
    # The stack's scheduled reconcile would take the job up meanwhile (as it should: it finishes
    # promotions); held here, so this call is the only one working on it.
    # track_status announced SUCCEEDED already (else promote_model would take the job up too).
    record["announced"] = ["SUCCEEDED"]
    with StackChaos(stack).frozen("reconcile"):
        deps.records.set(deps.settings.jobs_collection, "slow-deploy", record)
        outcome = promote("slow-deploy", deps, wait_seconds=0.1)
        assert outcome is not None and outcome.state is JobState.EVALUATING, outcome
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
