"""The job-info dataclasses share one reading of a Vertex AI job's id and labels."""

from __future__ import annotations

import pytest

from distillery.core.ports import BatchPredictionJobInfo, TuningJobInfo, VertexJobInfo

NAME = "projects/p/locations/us-central1/{}/4711"


@pytest.mark.parametrize(
    ("info_type", "collection"),
    [(TuningJobInfo, "tuningJobs"), (BatchPredictionJobInfo, "batchPredictionJobs")],
)
def test_id_is_the_last_name_segment_and_labels_are_strings(
    info_type: type[TuningJobInfo] | type[BatchPredictionJobInfo], collection: str
) -> None:
    info = info_type(
        name=NAME.format(collection),
        state="JOB_STATE_RUNNING",
        resource={"labels": {"distillery-job-id": "job-1", "attempt": 2}},
    )
    assert isinstance(info, VertexJobInfo)
    assert info.job_id == "4711"
    assert info.labels == {"distillery-job-id": "job-1", "attempt": "2"}


@pytest.mark.parametrize("info_type", [TuningJobInfo, BatchPredictionJobInfo])
def test_labels_are_empty_without_a_resource_or_labels(
    info_type: type[TuningJobInfo] | type[BatchPredictionJobInfo],
) -> None:
    assert info_type(name="n/1", state="JOB_STATE_PENDING").labels == {}
    assert info_type(name="n/1", state="JOB_STATE_PENDING", resource={"labels": None}).labels == {}
