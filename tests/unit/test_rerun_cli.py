"""``distillery rerun JOB --set ...`` judges the parameters for the backend the job ran on."""

from __future__ import annotations

import json

import pytest

from distillery.commands.cli import main
from distillery.commands.ops import changes
from distillery.core.jobs import new_record
from distillery.core.models import JobState
from distillery.core.runtime import Dependencies
from distillery.fakes import InMemoryPublisher
from tests.helpers import BUCKET, fake_dependencies


@pytest.fixture
def deps(monkeypatch: pytest.MonkeyPatch) -> Dependencies:
    deps = fake_dependencies()  # a pipeline deployment
    monkeypatch.setattr(changes, "dependencies", lambda *required: deps)
    record = new_record(
        "job-g",
        JobState.REJECTED,
        deps.clock(),
        {
            "backend": "gemini",
            "request": {"dataset_uri": f"gs://{BUCKET}/validated/x/a.jsonl", "overrides": {}},
        },
    )
    deps.records.set("jobs", "job-g", record)
    return deps


def test_rerun_of_a_gemini_job_refuses_a_pipeline_key_and_takes_a_gemini_one(
    deps: Dependencies, capsys: pytest.CaptureFixture[str]
) -> None:
    assert isinstance(deps.publisher, InMemoryPublisher)
    assert main(["rerun", "job-g", "--set", "train_steps=500"]) == 1
    assert "train_steps applies to the pipeline backend only" in capsys.readouterr().err
    assert deps.publisher.on(deps.settings.launch_topic) == []

    assert main(["rerun", "job-g", "--set", "epoch_count=2"]) == 0
    [message] = deps.publisher.on(deps.settings.launch_topic)
    sent = json.loads(message.data)
    assert sent["rerun_of"] == "job-g" and sent["overrides"] == {"epoch_count": 2}
