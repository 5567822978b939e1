"""The gemini launch through the product's tuning adapter (the GAPIC REST client) against the
local Vertex AI API: the planned body is accepted as sent, and a redelivery after a crash between
the create and the record adopts the one tuning job by its label."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import GenAiTuningServiceClient, ListTuningJobsRequest

from distillery.adapters.tuning import VertexTuningJobsAdapter
from distillery.core.errors import ContentionError
from distillery.core.models import LaunchRequest
from distillery.core.runtime import Dependencies
from distillery.core.settings import Settings
from distillery.fakes import (
    InMemoryObjectStore,
    InMemoryPublisher,
)
from distillery.local.emulator import EmulatorServer
from distillery.services.launcher import LaunchInProgressError, launch
from tests.helpers import CrashOnSubmitted
from tests.integration.tuning_api import contents_lines, tuning_emulator

pytestmark = pytest.mark.integration

PROJECT = "p-launch"
BUCKET = "bkt-launch"
PARENT = f"projects/{PROJECT}/locations/us-central1"
VALIDATED = "validated/abc/news.jsonl"


@pytest.fixture
def store() -> InMemoryObjectStore:
    objects = InMemoryObjectStore()
    data, _ = contents_lines(16)
    objects.put(BUCKET, VALIDATED, data)
    return objects


@pytest.fixture
def server(store: InMemoryObjectStore, tmp_path: Path) -> Iterator[EmulatorServer]:
    # Nothing here needs the job to train: it only has to exist.
    with tuning_emulator(
        store, tmp_path / "emulator", project=PROJECT, bucket=BUCKET, start_delay_seconds=600.0
    ) as running:
        yield running


def test_launch_creates_then_a_redelivery_adopts_through_the_official_client(
    server: EmulatorServer, store: InMemoryObjectStore
) -> None:
    records = CrashOnSubmitted()
    records.create(
        "datasets",
        "ds-1",
        {
            "id": "ds-1",
            "bucket": BUCKET,
            "object": "datasets/news.jsonl",
            "generation": 1,
            "validated_uri": f"gs://{BUCKET}/{VALIDATED}",
            "reports": [{"kind": "training", "examples": 16, "dataset_tokens": 800}],
        },
    )
    now = [datetime(2026, 1, 5, 9, 0, tzinfo=UTC)]
    deps = Dependencies(
        settings=Settings(project=PROJECT, bucket=BUCKET, backend="gemini"),
        objects=store,
        records=records,
        publisher=InMemoryPublisher(),
        tuning=VertexTuningJobsAdapter(PROJECT, api_endpoint=server.url),
        clock=lambda: now[0],
    )
    request = LaunchRequest(
        dataset_uri=f"gs://{BUCKET}/{VALIDATED}", dataset_id="ds-1", request_id="req-1"
    )
    with pytest.raises(ContentionError, match="injected"):
        launch(request, deps)
    with pytest.raises(LaunchInProgressError):
        launch(request, deps)  # the crashed delivery's claim still holds
    now[0] += timedelta(seconds=deps.settings.launch_claim_seconds + 1)
    job_id = launch(request, deps)

    record = records.get("jobs", job_id)
    assert record is not None and record["state"] == "SUBMITTED"
    assert record["spec"]["dataset_tokens"] == 800
    client = GenAiTuningServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": server.url},
    )
    listed = list(
        client.list_tuning_jobs(
            request=ListTuningJobsRequest(
                parent=PARENT, filter=f'labels.distillery-job-id="{job_id}"'
            )
        )
    )
    assert [job.name for job in listed] == [record["tuning_job"]]
    [job] = listed
    assert job.base_model == "gemini-2.5-flash"
    assert job.supervised_tuning_spec.hyper_parameters.epoch_count == 3
    assert job.tuned_model_display_name == "news-distilled"
