"""The default backend through every service on the fakes: a dropped dataset is validated and
converted, launched as a tuning job, polled to SUCCEEDED and promoted, each state announced once.

The stages' own tests (test_datasets_gemini, test_launcher_gemini, test_status_gemini,
test_promoter_gemini) build the records between them by hand; this one lets each service read
what the one before it wrote, as the functions do (test_localstack_gemini does it on the stack).
"""

from __future__ import annotations

import json

from distillery.core.models import JobState, LaunchRequest, StorageObject
from distillery.core.settings import DEFAULT_BACKEND
from distillery.fakes import InMemoryObjectStore, InMemoryPublisher
from distillery.local.example_data import generate
from distillery.services.datasets import handle_object
from distillery.services.launcher import launch
from distillery.services.promoter import family_of, promote
from distillery.services.status import poll_tuning_jobs
from tests.helpers import BUCKET, fake_dependencies, jsonl


def test_the_default_backend_goes_from_an_upload_to_promoted() -> None:
    deps = fake_dependencies(backend=DEFAULT_BACKEND)
    assert deps.settings.backend == "gemini"
    objects, publisher = deps.objects, deps.publisher
    assert isinstance(objects, InMemoryObjectStore) and isinstance(publisher, InMemoryPublisher)
    train, golden = generate(48, 12)
    objects.put(BUCKET, "datasets/news.eval.jsonl", jsonl(golden))
    info = objects.put(BUCKET, "datasets/news.jsonl", jsonl(train))
    handle_object(StorageObject(bucket=BUCKET, name=info.name, generation=info.generation), deps)
    [message] = publisher.on(deps.settings.launch_topic)

    job_id = launch(LaunchRequest.model_validate_json(message.data), deps)
    for _ in range(20):  # the fake tuning job takes a few polls to finish
        poll_tuning_jobs(deps)
        record = deps.records.get(deps.settings.jobs_collection, job_id)
        assert record is not None
        if record["state"] == JobState.SUCCEEDED.value:
            break
    assert record["state"] == JobState.SUCCEEDED.value, record
    # The family is the tuned model's display name, which the tuning job was created with.
    assert family_of(record) == record["request_body"]["tunedModelDisplayName"] == "news-distilled"

    outcome = promote(job_id, deps)

    assert outcome.state is JobState.PROMOTED, outcome
    record = deps.records.get(deps.settings.jobs_collection, job_id)
    assert record is not None and record["endpoint"] == outcome.endpoint
    family = deps.records.get(deps.settings.models_collection, "news-distilled")
    assert family is not None and family["champion"]["job_id"] == job_id
    states = [json.loads(m.data)["state"] for m in publisher.on(deps.settings.status_topic)]
    assert states == ["REQUESTED", "SUBMITTED", "RUNNING", "SUCCEEDED", "EVALUATING", "PROMOTED"]
