"""Gemini promotion against the local Vertex AI API, through the product's real adapters.

Real tuning jobs, trained by the emulator's local trainer on tiny ``contents`` datasets, succeed
(their model deployed on an endpoint of its own, as the service does); the promoter, with the
tuning adapter (GAPIC REST) and the endpoints adapter, judges each one on the golden set through
``:generateContent``: the first is crowned by record on its own endpoint, a second one trained on
nonsense is REJECTED and its endpoint deleted, while the champion's endpoint keeps serving.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distillery.adapters.tuning import VertexTuningJobsAdapter
from distillery.adapters.vertex import VertexModelEndpointsAdapter
from distillery.core.errors import ObjectNotFoundError
from distillery.core.jobs import new_record
from distillery.core.models import JobState
from distillery.core.ports import TuningJobInfo
from distillery.core.runtime import Dependencies
from distillery.core.settings import Settings
from distillery.fakes import InMemoryObjectStore, InMemoryPublisher, InMemoryRecordStore
from distillery.local.emulator import EmulatorServer
from distillery.local.example_data import generate
from distillery.services.promoter import promote
from distillery.services.status import apply_tuning_state
from tests.helpers import wait_for
from tests.integration.tuning_api import contents_jsonl, tuning_emulator

pytestmark = pytest.mark.integration

PROJECT = "p-promote-gemini"
BUCKET = "bkt-promote-gemini"
REGION = "us-central1"
FAMILY = "news-gemini"
TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")
#: What the second candidate is taught to answer, whatever the prompt.
NONSENSE = "zzz"


@pytest.fixture
def store() -> InMemoryObjectStore:
    train, golden = generate(48, 12)
    pairs = [(e.input_text, str(e.output_text)) for e in train]
    objects = InMemoryObjectStore()
    objects.put(BUCKET, "validated/good/news.jsonl", contents_jsonl(pairs))
    objects.put(
        BUCKET, "validated/bad/news.jsonl", contents_jsonl([(p, NONSENSE) for p, _ in pairs])
    )
    objects.put(
        BUCKET,
        "validated/good/news.eval.jsonl",
        b"".join(e.to_json().encode() + b"\n" for e in golden),
    )
    return objects


@pytest.fixture
def server(store: InMemoryObjectStore, tmp_path: Path) -> Iterator[EmulatorServer]:
    with tuning_emulator(
        store, tmp_path / "emulator", project=PROJECT, bucket=BUCKET, start_delay_seconds=0.2
    ) as running:
        yield running


def _tune(deps: Dependencies, job_id: str, dataset: str, epochs: int) -> TuningJobInfo:
    """Record job ``job_id`` RUNNING, tune it on ``dataset`` through the adapter, and apply the
    succeeded tuning job's state to it (as the status service's poll does)."""
    tuning = deps.require_tuning()
    created = tuning.create(
        REGION,
        {
            "baseModel": "gemini-2.5-flash",
            "supervisedTuningSpec": {
                "trainingDatasetUri": f"gs://{BUCKET}/{dataset}",
                "hyperParameters": {"epochCount": epochs, "learningRateMultiplier": 1.0},
            },
            "tunedModelDisplayName": FAMILY,
            "labels": {"distillery-job-id": job_id},
        },
    )
    record = new_record(
        job_id,
        JobState.RUNNING,
        deps.clock(),
        {
            "backend": "gemini",
            "tuning_job": created.name,
            "location": REGION,
            "spec": {
                "backend": "gemini",
                "tuned_model_display_name": FAMILY,
                "validation_dataset_uri": f"gs://{BUCKET}/validated/good/news.eval.jsonl",
            },
            "request": {"dataset_uri": f"gs://{BUCKET}/{dataset}", "overrides": {}},
        },
    )
    record["announced"] = ["RUNNING"]
    deps.records.set("jobs", job_id, record)

    def finished() -> TuningJobInfo | None:
        info = tuning.get(created.name)
        return info if info.state in TERMINAL else None

    info: TuningJobInfo = wait_for(finished, timeout=240, interval=0.5, what=created.name)
    assert info.state == "JOB_STATE_SUCCEEDED", info.error
    apply_tuning_state(job_id, info, deps)
    return info


def _job(deps: Dependencies, job_id: str) -> dict[str, Any]:
    record = deps.records.get("jobs", job_id)
    assert record is not None
    return record


class _Asking(VertexTuningJobsAdapter):
    """The product's tuning adapter, counting the prompts it sends to ``:generateContent``."""

    def __init__(self, project: str, *, api_endpoint: str) -> None:
        super().__init__(project, api_endpoint=api_endpoint)
        self.asked: list[str] = []

    def generate(self, endpoint: str, prompt: str) -> str:
        self.asked.append(endpoint)
        return super().generate(endpoint, prompt)


@pytest.mark.timeout(600)
def test_gemini_jobs_are_promoted_and_rejected_through_generate_content(
    server: EmulatorServer, store: InMemoryObjectStore
) -> None:
    tuning = _Asking(PROJECT, api_endpoint=server.url)
    deps = Dependencies(
        settings=Settings(project=PROJECT, bucket=BUCKET, region=REGION),
        objects=store,
        records=InMemoryRecordStore(),
        publisher=InMemoryPublisher(),
        endpoints=VertexModelEndpointsAdapter(PROJECT, api_endpoint=server.url),
        tuning=tuning,
    )
    endpoints = deps.require_endpoints()

    good = _tune(deps, "job-good", "validated/good/news.jsonl", epochs=4)
    assert good.endpoint is not None and good.tuned_model is not None
    outcome = promote("job-good", deps)
    assert outcome is not None and outcome.state is JobState.PROMOTED, outcome
    assert outcome.endpoint == good.endpoint
    assert tuning.asked == [good.endpoint] * 12  # the golden set, through :generateContent
    record = _job(deps, "job-good")
    assert [h["state"] for h in record["history"]][-3:] == ["SUCCEEDED", "EVALUATING", "PROMOTED"]
    score = record["promotion"]["evaluation"]["candidate"]["accuracy"]
    assert score > 0  # what the nonsense-trained candidate must fall short of
    family = deps.records.get("models", FAMILY)
    assert family is not None and not family.get("endpoint")
    assert family["champion"]["backend"] == "gemini"
    assert family["champion"]["endpoint"] == good.endpoint
    info = endpoints.get_endpoint(good.endpoint)
    assert family["champion"]["deployed_model_id"] == info.deployed_id_of(good.tuned_model)
    assert info.display_name == FAMILY  # no serving endpoint was made for it

    tuning.asked.clear()
    bad = _tune(deps, "job-bad", "validated/bad/news.jsonl", epochs=4)
    assert bad.endpoint is not None and bad.endpoint != good.endpoint
    outcome = promote("job-bad", deps)
    assert outcome is not None and outcome.state is JobState.REJECTED, (score, outcome)
    assert "on the golden set" in str(outcome.reason)
    # The candidate and the champion both answered through :generateContent.
    assert sorted(set(tuning.asked)) == sorted({good.endpoint, bad.endpoint})
    with pytest.raises(ObjectNotFoundError):
        endpoints.get_endpoint(bad.endpoint)  # nothing left billing
    assert endpoints.get_endpoint(good.endpoint).deployed_id_of(good.tuned_model) is not None
    after = deps.records.get("models", FAMILY)
    assert after is not None and after["champion"]["job_id"] == "job-good"
