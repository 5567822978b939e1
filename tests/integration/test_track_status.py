"""track_status and reconcile on the local stack: pipeline events from the local Vertex AI API move
job records forward, and a job whose events were lost is recovered by reconcile."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest

from distillery.adapters.vertex import VertexPipelineAdapter
from distillery.core.jobs import new_record
from distillery.core.models import JobState, StatusEvent
from distillery.local.example_data import generate
from tests.helpers import jsonl, wait_for

pytestmark = pytest.mark.integration


def _jobs(stack: Any) -> dict[str, dict[str, Any]]:
    return {d.id: d.to_dict() for d in stack.firestore_client().collection("jobs").stream()}


def _vertex(stack: Any) -> VertexPipelineAdapter:
    return VertexPipelineAdapter(
        stack.project, api_endpoint=stack.env["DISTILLERY_VERTEX_API_ENDPOINT"]
    )


def test_track_status_follows_the_pipeline_job_to_its_end(stack: Any) -> None:
    statuses = stack.subscribe(stack.settings.status_topic)
    train, _ = generate(150, 20)
    stack.upload("datasets/tracked.config.json", b'{"train_steps": 10}')  # a short job
    stack.upload("datasets/tracked.jsonl", jsonl(train))

    # A SUCCEEDED job moves on: promote_model rejects it (it has no golden set to be judged on).
    def finished() -> dict[str, Any] | None:
        ends = ("FAILED", "PROMOTED", "REJECTED")
        done = [j for j in _jobs(stack).values() if j["state"] in ends]
        return done[0] if done else None

    record = wait_for(finished, timeout=240, what="the job to finish")
    history = [h["state"] for h in record["history"]]
    # RUNNING may be skipped: a quick job's FAILED can be delivered before its RUNNING, and an
    # event never moves a job backwards.
    assert history[:2] == ["REQUESTED", "SUBMITTED"]
    assert history[-1] == record["state"] and len(history) == len(set(history))
    info = _vertex(stack).get(record["pipeline_job"])
    assert info.state == "PIPELINE_STATE_SUCCEEDED"
    assert history[-3:] == ["SUCCEEDED", "EVALUATING", "REJECTED"]
    assert record["state"] == "REJECTED"
    # On SUCCEEDED, the model and the metrics of the pipeline job (read from its TensorBoard
    # event files) are recorded, with the training curves.
    assert record["model"].startswith(f"projects/{stack.project}/locations/us-central1/models/")
    assert set(record["metrics"]) >= {
        "train_total_loss",
        "train_fraction_of_correct_next_step_preds",
        "train_num_predictions",
    }
    curves = record["training_curves"]
    assert set(curves) == set(record["metrics"])
    loss = curves["train_total_loss"]
    assert loss["steps"] == sorted(loss["steps"]) and len(loss["steps"]) == len(loss["values"])
    assert loss["values"][-1] == record["metrics"]["train_total_loss"]

    announced: list[StatusEvent] = []

    # At least once: two functions announcing the same job (track_status, promote_model) may
    # both publish a state; subscribers dedupe on job_id + state.
    def states() -> list[str]:
        return list(dict.fromkeys(e.state.value for e in announced))

    def all_announced() -> bool:
        announced.extend(StatusEvent.model_validate(m.json()) for m in statuses.pull(10, timeout=2))
        return set(states()) >= set(history)

    wait_for(all_announced, timeout=30, what="every transition on the status topic")
    assert sorted(states()) == sorted(history)  # every transition, none invented
    assert {m.job_id for m in announced} == {record["job_id"]}


def test_reconcile_recovers_a_job_whose_events_were_lost(stack: Any) -> None:
    vertex = _vertex(stack)
    body = {
        "displayName": "lost-events",
        "templateUri": stack.settings.template_uri,
        "runtimeConfig": {
            "gcsOutputDirectory": f"gs://{stack.bucket}/pipeline-root/lost-events",
            "parameterValues": {
                "project": stack.project,
                "model_display_name": "lost-events",
                "dataset_uri": f"gs://{stack.bucket}/validated/none/lost.jsonl",
                "location": "us-central1",
            },
        },
    }
    info = vertex.create("us-central1", "lost-events-1", body)
    wait_for(
        lambda: vertex.get(info.name).state == "PIPELINE_STATE_FAILED",
        timeout=60,
        what="the pipeline job to fail (its dataset does not exist)",
    )

    # Every event of the job reaches track_status before its record exists (the last, FAILED, is
    # recorded as an event for an unknown job): they are lost to it.
    def failed_event_lost() -> bool:
        failures = stack.firestore_client().collection(stack.settings.failures_collection)
        return any(
            "lost-events-1" in str(doc.get("reason"))
            and "PIPELINE_STATE_FAILED" in str(doc.get("reason"))
            for doc in (snapshot.to_dict() or {} for snapshot in failures.stream())
        )

    wait_for(failed_event_lost, timeout=60, what="track_status to drop the FAILED event")
    record = new_record(
        "lost-events-1",
        JobState.SUBMITTED,
        datetime.now(UTC),
        {"pipeline_job": info.name, "location": "us-central1"},
    )
    stack.firestore_client().collection("jobs").document("lost-events-1").set(record)

    request = urllib.request.Request(stack.function_url("reconcile"), data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        summary = json.loads(response.read())
    # No event is left to move it: only reconcile can — this call, or the bridge's scheduled one
    # (every 30 s) if it came first.
    assert summary["moved"] in (["lost-events-1"], [])
    recovered = _jobs(stack)["lost-events-1"]
    assert recovered["state"] == "FAILED"
    assert "lost.jsonl" in recovered["reason"]
