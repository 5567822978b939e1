"""``distillery cancel`` on the in-memory ports: a LABELING job ends CANCELLED with its batch
prediction job; an unknown job and a pipeline job are refused with the reason (exit 1)."""

from __future__ import annotations

import pytest

from distillery.commands import cli
from distillery.commands.ops import cancel as cancel_command
from distillery.core.jobs import new_record
from distillery.core.models import JobState
from distillery.core.runtime import Dependencies
from distillery.services.launcher import resume_requested
from tests.helpers import fake_batch
from tests.unit.test_labeling_service import JOB, build_job, job, labeling_dependencies


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Dependencies:
    deps = labeling_dependencies()
    monkeypatch.setattr(cancel_command, "dependencies", lambda *required: deps)
    return deps


def test_labeling_cancel_cli_cancels_a_labeling_job(
    world: Dependencies, capsys: pytest.CaptureFixture[str]
) -> None:
    build_job(world)
    fake_batch(world).polls_per_state = 5
    resume_requested(JOB, world)
    assert cli.main(["cancel", JOB]) == cli.EXIT_OK
    assert capsys.readouterr().out.strip() == f"{JOB}: CANCELLED"
    assert job(world)["state"] == "CANCELLED"
    [only] = fake_batch(world).jobs.values()
    assert only["state"] == "JOB_STATE_CANCELLED"


def test_labeling_cancel_cli_refuses_unknown_and_pipeline_jobs(
    world: Dependencies, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["cancel", "no-such-job"]) == cli.EXIT_INVALID
    assert "there is no job 'no-such-job'" in capsys.readouterr().err
    record = new_record("pipe-1", JobState.REQUESTED, world.clock(), {"pipeline_job": None})
    world.records.create(world.settings.jobs_collection, "pipe-1", record)
    world.records.transact(
        world.settings.jobs_collection,
        "pipe-1",
        lambda current: {**(current or {}), "state": "RUNNING", "pipeline_job": "p/pipelineJobs/1"},
    )
    assert cli.main(["cancel", "pipe-1"]) == cli.EXIT_INVALID
    assert "is a pipeline job" in capsys.readouterr().err
