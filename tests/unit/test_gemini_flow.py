"""A gemini job from its upload to its promotion on the in-memory ports, with the spec the
launcher really records (not one written by hand): validated, launched as a tuning job, polled to
SUCCEEDED, evaluated on its own validation set through generateContent, and promoted."""

from __future__ import annotations

import json

from distillery.core.models import JobState
from distillery.fakes import InMemoryPublisher, InMemoryTuningJobs
from distillery.local.example_data import generate
from distillery.services.launcher import launch
from distillery.services.promoter import promote
from distillery.services.status import poll_tuning_jobs
from tests.helpers import fake_dependencies, validated_request


def test_an_uploaded_dataset_goes_from_requested_to_promoted_on_the_gemini_backend() -> None:
    deps = fake_dependencies(backend="gemini")
    request = validated_request(deps)
    job_id = launch(request, deps)
    record = deps.records.get("jobs", job_id)
    assert record is not None and record["backend"] == "gemini"
    assert "model_display_name" not in record["spec"]  # the gemini spec names its tuned model

    while (deps.records.get("jobs", job_id) or {}).get("state") != "SUCCEEDED":
        poll_tuning_jobs(deps)
    record = deps.records.get("jobs", job_id)
    assert record is not None
    tuning = deps.tuning
    assert isinstance(tuning, InMemoryTuningJobs)
    _, evaluation = generate(240, 20)  # the eval set validated_request uploaded
    tuning.teach(
        str(record["candidate_endpoint"]),
        {e.input_text: str(e.output_text) for e in evaluation},
        "no idea",
    )

    outcome = promote(job_id, deps)

    assert outcome is not None and outcome.state is JobState.PROMOTED, outcome
    assert outcome.endpoint == record["candidate_endpoint"]
    family = deps.records.get("models", record["spec"]["tuned_model_display_name"])
    assert family is not None and family["champion"]["backend"] == "gemini"
    assert family["golden"]["source"].startswith(f"the eval set of job {job_id}")
    assert isinstance(deps.publisher, InMemoryPublisher)
    states = [
        json.loads(m.data)["state"]
        for m in deps.publisher.on(deps.settings.status_topic)
        if json.loads(m.data)["job_id"] == job_id
    ]
    assert states == ["REQUESTED", "SUBMITTED", "RUNNING", "SUCCEEDED", "EVALUATING", "PROMOTED"]
