"""The LABELING stage on the in-memory ports: REQUESTED → LABELING → SUBMITTED, the teacher's
output judged line by line, the files written once, nothing created twice, and cancel."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from distillery import labeling, policy
from distillery.core.errors import ServiceUnavailableError
from distillery.core.jobs import new_record
from distillery.core.models import JobState, StatusEvent
from distillery.core.runtime import Dependencies
from distillery.fakes import (
    InMemoryBatchPredictions,
    InMemoryObjectStore,
    InMemoryPublisher,
    InMemoryTuningJobs,
)
from distillery.services.labeling import cancel_job
from distillery.services.launcher import resume_requested
from distillery.services.status import poll_tuning_jobs, reconcile
from tests.helpers import (
    BUCKET,
    PROJECT,
    fake_batch,
    fake_dependencies,
    fake_tuning,
    labeling_spec,
)

JOB = "news-distilled-0123456789abcdef01234567"
DATASET = "ds-news"
SOURCE = f"gs://{BUCKET}/validated/abc/news.jsonl"
LABELS = ("business", "sport", "music", "science")


def prompt(n: int) -> str:
    return f"Classify into [business, sport, music, science]. Text: item number {n}"


def teacher_text(n: int) -> str:
    return f"Rationale: item {n} is about {LABELS[n % 4]}.\nAnswer: {LABELS[n % 4]}"


def build_job(
    deps: Dependencies,
    *,
    examples: int = 12,
    mode: str = "labels_and_rationales",
    labeled: bool = False,
    **spec_changes: Any,
) -> labeling.LabelingSpec:
    """A validated copy in the fake bucket and a REQUESTED job record for it, as the launcher
    freezes one (the spec, its batch body, the tuning body training on the two-task file)."""
    lines = []
    for n in range(1, examples + 1):
        contents: list[dict[str, Any]] = [{"role": "user", "parts": [{"text": prompt(n)}]}]
        if labeled:
            contents.append({"role": "model", "parts": [{"text": LABELS[n % 4]}]})
        lines.append(json.dumps({"contents": contents}) + "\n")
    assert isinstance(deps.objects, InMemoryObjectStore)
    deps.objects.put(BUCKET, "validated/abc/news.jsonl", "".join(lines).encode())
    spec = labeling_spec(
        BUCKET,
        deps.settings.validated_prefix,
        JOB,
        source_uri=SOURCE,
        source_examples=examples,
        mode=mode,
        **(
            {
                "min_labeled_fraction": 0.75,
                "estimated_input_tokens": 1000,
                "estimated_output_tokens": 1000,
                "estimated_cost_usd": 0.01,
            }
            | spec_changes
        ),
    )
    body = labeling.batch_job_body(
        spec, display_name=f"{JOB}-labeling", label_key=policy.JOB_LABEL_KEY
    )
    tuning_body = {
        "baseModel": "gemini-2.0-flash-lite-001",
        "supervisedTuningSpec": {"trainingDatasetUri": spec.training_uri},
        "tunedModelDisplayName": "news-distilled",
        "labels": {policy.JOB_LABEL_KEY: JOB},
    }
    record = new_record(
        JOB,
        JobState.REQUESTED,
        datetime(2026, 12, 1, tzinfo=UTC),
        {
            "request": {"dataset_uri": SOURCE, "request_id": "r-1"},
            "dataset_id": DATASET,
            "backend": "gemini",
            "location": "us-central1",
            "spec": {"labeling": spec.to_dict()},
            "request_body": tuning_body,
            "labeling": spec.to_dict(),
            "labeling_body": body,
            "tuning_job": None,
            "pipeline_job": None,
            "tuning_api_version": "v1",
        },
    )
    deps.records.create(deps.settings.jobs_collection, JOB, record)
    deps.records.create(deps.settings.datasets_collection, DATASET, {"id": DATASET})
    return spec


def labeling_dependencies() -> Dependencies:
    """Fakes of every port (gemini backend) whose teacher answers every prompt this module
    makes with a rationale and its label, and whose batch job moves a state a poll."""
    deps = fake_dependencies(backend="gemini")
    assert isinstance(deps.objects, InMemoryObjectStore)
    deps.batch = InMemoryBatchPredictions(deps.objects, PROJECT, polls_per_state=1)
    deps.tuning = InMemoryTuningJobs(PROJECT)
    fake_batch(deps).teach({prompt(n): teacher_text(n) for n in range(1, 100)}, "no idea")
    return deps


@pytest.fixture
def world() -> Dependencies:
    return labeling_dependencies()


def job(deps: Dependencies) -> dict[str, Any]:
    record = deps.records.get(deps.settings.jobs_collection, JOB)
    assert record is not None
    return record


def events(deps: Dependencies) -> list[StatusEvent]:
    assert isinstance(deps.publisher, InMemoryPublisher)
    return [
        StatusEvent.model_validate_json(m.data)
        for m in deps.publisher.on(deps.settings.status_topic)
    ]


def read(deps: Dependencies, uri: str) -> bytes:
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return deps.objects.read_bytes(bucket, name, limit=64 << 20)


def read_lines(deps: Dependencies, uri: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in read(deps, uri).splitlines()]


def poll_until(deps: Dependencies, *states: str, passes: int = 20) -> dict[str, Any]:
    for _ in range(passes):
        if job(deps)["state"] in states:
            return job(deps)
        poll_tuning_jobs(deps)
    raise AssertionError(f"the job stayed {job(deps)['state']}, never {states}")


def finish_batch(deps: Dependencies) -> str:
    """Poll the batch job (only it) until it has written its output; its output file's URI."""
    name = job(deps)["batch_prediction_job"]
    for _ in range(10):
        info = fake_batch(deps).get(name)
        if info.state == "JOB_STATE_SUCCEEDED":
            assert info.output_directory
            return f"{info.output_directory}/predictions.jsonl"
    raise AssertionError("the batch job never succeeded")


def test_labeling_whole_path_requested_labeling_submitted(world: Dependencies) -> None:
    spec = build_job(world)
    resume_requested(JOB, world)
    record = job(world)
    assert record["state"] == "LABELING"
    assert record["batch_prediction_job"].startswith(
        f"projects/{PROJECT}/locations/us-central1/batchPredictionJobs/"
    )
    # The teacher reads exactly the requests written for it.
    requests = read_lines(world, spec.input_uri)
    assert [r["request"]["labels"][labeling.LINE_LABEL_KEY] for r in requests] == [
        str(n) for n in range(1, 13)
    ]
    record = poll_until(world, "SUBMITTED")
    assert [e.state.value for e in events(world)] == ["REQUESTED", "LABELING", "SUBMITTED"]
    assert all(e.batch_prediction_job == record["batch_prediction_job"] for e in events(world)[1:])
    [tuned] = fake_tuning(world).jobs.values()
    assert record["tuning_job"] == tuned["name"]
    assert tuned["supervisedTuningSpec"]["trainingDatasetUri"] == spec.training_uri
    assert len(fake_batch(world).jobs) == 1

    result = record["labeling_result"]
    assert result["counts"]["labeled"] == 12
    assert result["labeled_fraction"] == 1.0
    assert (result["label_tasks"], result["rationale_tasks"]) == (12, 12)
    labeled = read_lines(world, spec.labeled_uri)
    assert [line["line"] for line in labeled] == list(range(1, 13))
    for line in labeled:  # matched by line label though the output came shuffled
        n = line["line"]
        assert line["contents"][0]["parts"][0]["text"] == prompt(n)
        assert (line["label"], line["label_by"]) == (LABELS[n % 4], "teacher")
        assert line["rationale"] == f"item {n} is about {LABELS[n % 4]}."
        assert line["rationale_by"] == "gemini-2.5-pro"
    training = read_lines(world, spec.training_uri)
    texts = {t["contents"][0]["parts"][0]["text"]: t["contents"][1] for t in training}
    assert texts[f"predict: {prompt(5)}"]["parts"][0]["text"] == LABELS[1]
    assert texts[f"explain: {prompt(5)}"]["parts"][0]["text"] == "item 5 is about sport."

    lineage = json.loads(read(world, spec.lineage_uri))
    assert lineage["teacher_model"] == "gemini-2.5-pro"
    assert lineage["instruction_sha256"] == labeling.instruction_sha256()
    assert lineage["batch_prediction_job"] == record["batch_prediction_job"]
    assert lineage["training_sha256"] == labeling.sha256_of(world.objects, spec.training_uri)
    assert lineage["source_sha256"] == labeling.sha256_of(world.objects, SOURCE)
    report = json.loads(read(world, result["report_uri"]))
    assert result["report_uri"] == f"gs://{BUCKET}/reports/{DATASET}.labeling.{JOB}.json"
    assert report["lines"] == [] and report["passed"] is True
    assert "upload" in report["line_numbers"]
    dataset = world.records.get(world.settings.datasets_collection, DATASET)
    assert dataset is not None
    assert dataset["labelings"][JOB]["report_uri"] == result["report_uri"]


def test_labeling_bad_lines_are_counted_listed_and_left_out(world: Dependencies) -> None:
    spec = build_job(world, examples=20, min_labeled_fraction=0.5)
    fake_batch(world).fail_lines({1: json.dumps({"error": {"code": 13, "message": "internal"}})})
    fake_batch(world).teach(
        {prompt(n): teacher_text(n) for n in range(1, 21)} | {prompt(4): "It is music."}, ""
    )
    resume_requested(JOB, world)
    uri = finish_batch(world)
    # Shape the output as the service may: one line blocked, one cut, one never written.
    lines = read_lines(world, uri)
    kept = []
    for line in lines:
        n = int(line["request"]["labels"][labeling.LINE_LABEL_KEY])
        if n == 6:
            line["response"] = {"promptFeedback": {"blockReason": "SAFETY"}}
        elif n == 7:
            line["response"]["candidates"][0]["finishReason"] = "MAX_TOKENS"
        elif n == 8:
            continue
        kept.append(json.dumps(line) + "\n")
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    assert isinstance(world.objects, InMemoryObjectStore)
    world.objects.put(bucket, name, "".join(kept).encode())

    record = poll_until(world, "SUBMITTED")
    result = record["labeling_result"]
    assert result["counts"] == {
        "labeled": 15,
        "disagreed": 0,
        "failed": 1,
        "missing": 1,
        "blocked": 1,
        "unparseable": 2,
    }
    report = json.loads(read(world, result["report_uri"]))
    assert [(p["line"], p["outcome"]) for p in report["lines"]] == [
        (2, "failed"),
        (4, "unparseable"),
        (6, "blocked"),
        (7, "unparseable"),
        (8, "missing"),
    ]
    assert report["lines"][0]["detail"] == "internal"
    labeled_lines = [line["line"] for line in read_lines(world, spec.labeled_uri)]
    assert labeled_lines == [n for n in range(1, 21) if n not in (2, 4, 6, 7, 8)]


def test_labeling_too_few_labeled_fails_naming_lines(world: Dependencies) -> None:
    spec = build_job(world, examples=10, min_labeled_fraction=0.9)
    fake_batch(world).fail_lines({0: "quota", 3: "quota"})
    resume_requested(JOB, world)
    record = poll_until(world, "FAILED")
    reason = record["reason"]
    assert "8 of 10" in reason and "90.0%" in reason
    assert "1 (failed: quota)" in reason and "4 (failed: quota)" in reason
    assert record["labeling_result"]["report_uri"] in reason
    assert fake_tuning(world).jobs == {}
    assert world.objects.find(BUCKET, spec.training_uri.split(f"{BUCKET}/", 1)[1]) is None
    assert [e.state.value for e in events(world)] == ["REQUESTED", "LABELING", "FAILED"]


def test_labeling_rationales_mode_keeps_user_labels_and_counts_disagreement(
    world: Dependencies,
) -> None:
    spec = build_job(world, examples=8, mode="rationales", labeled=True, min_labeled_fraction=0.5)
    answers = {prompt(n): teacher_text(n) for n in range(1, 9)}
    answers[prompt(3)] = "Rationale: it is about sport.\nAnswer: sport"  # the label is science
    fake_batch(world).teach(answers, "")
    resume_requested(JOB, world)
    requests = read_lines(world, spec.input_uri)
    hint = requests[2]["request"]["systemInstruction"]["parts"][0]["text"]
    assert "The correct answer to this task is given: " + LABELS[3] in hint
    record = poll_until(world, "SUBMITTED")
    assert record["labeling_result"]["counts"]["disagreed"] == 1
    labeled = {line["line"]: line for line in read_lines(world, spec.labeled_uri)}
    assert len(labeled) == 8  # every line keeps its label task
    assert (labeled[3]["label"], labeled[3]["label_by"], labeled[3]["rationale"]) == (
        "science",
        "user",
        None,
    )
    assert labeled[4]["rationale_by"] == "gemini-2.5-pro"
    training = read_lines(world, spec.training_uri)
    assert sum(t["contents"][0]["parts"][0]["text"].startswith("explain: ") for t in training) == 7
    assert sum(t["contents"][0]["parts"][0]["text"].startswith("predict: ") for t in training) == 8


@pytest.mark.parametrize(("mixture", "expected"), [(0.0, 0), (1.0, 12)])
def test_labeling_mixture_decides_the_rationale_tasks(
    world: Dependencies, mixture: float, expected: int
) -> None:
    build_job(world, rationale_mixture=mixture)
    resume_requested(JOB, world)
    record = poll_until(world, "SUBMITTED")
    assert record["labeling_result"]["rationale_tasks"] == expected
    assert record["labeling_result"]["label_tasks"] == 12


def test_labeling_half_mixture_is_the_drawn_lines(world: Dependencies) -> None:
    build_job(world, examples=40, rationale_mixture=0.5)
    resume_requested(JOB, world)
    record = poll_until(world, "SUBMITTED")
    drawn = [n for n in range(1, 41) if labeling.gives_rationale_task(JOB, n, 0.5)]
    assert record["labeling_result"]["rationale_tasks"] == len(drawn)
    assert 0 < len(drawn) < 40


def test_labeling_crash_after_the_batch_create_adopts_it(world: Dependencies) -> None:
    build_job(world)
    fake_batch(world).lose_answers = 1
    with pytest.raises(ServiceUnavailableError):
        resume_requested(JOB, world)
    assert job(world)["state"] == "REQUESTED"
    assert job(world).get("tuning_claim") is None  # released: the next delivery may go on
    resume_requested(JOB, world)
    assert job(world)["state"] == "LABELING"
    # A redelivered launch event for a LABELING job creates nothing.
    resume_requested(JOB, world)
    assert (len(fake_batch(world).jobs), fake_batch(world).create_calls) == (1, 1)
    poll_until(world, "SUBMITTED")
    assert len(fake_tuning(world).jobs) == 1


def test_labeling_crash_after_the_files_writes_the_same_bytes_and_one_tuning_job(
    world: Dependencies,
) -> None:
    spec = build_job(world, rationale_mixture=0.5)
    fake_tuning(world).lose_answers = 1  # the tuning job is made, the answer lost
    resume_requested(JOB, world)
    for _ in range(10):
        summary = poll_tuning_jobs(world)
        if summary.errors:
            break
    assert JOB in summary.errors and job(world)["state"] == "LABELING"
    uris = (spec.labeled_uri, spec.training_uri, spec.lineage_uri, spec.input_uri)
    before = {
        uri: (read(world, uri), world.objects.stat(BUCKET, uri.split(f"{BUCKET}/")[1]).generation)
        for uri in uris
    }
    record = poll_until(world, "SUBMITTED")
    after = {
        uri: (read(world, uri), world.objects.stat(BUCKET, uri.split(f"{BUCKET}/")[1]).generation)
        for uri in uris
    }
    assert after == before  # nothing rewritten
    assert len(fake_tuning(world).jobs) == 1
    assert record["tuning_job"] == next(iter(fake_tuning(world).jobs))
    assert [e.state.value for e in events(world)] == ["REQUESTED", "LABELING", "SUBMITTED"]


def test_labeling_refuses_a_file_that_is_there_with_other_bytes(world: Dependencies) -> None:
    spec = build_job(world)
    assert isinstance(world.objects, InMemoryObjectStore)
    world.objects.put(BUCKET, spec.input_uri.split(f"{BUCKET}/")[1], b"someone else's\n")
    resume_requested(JOB, world)
    record = job(world)
    assert record["state"] == "FAILED"
    assert "already exists with other bytes" in record["reason"]
    assert fake_batch(world).jobs == {}


def test_labeling_batch_job_failed_fails_the_job(world: Dependencies) -> None:
    build_job(world)
    resume_requested(JOB, world)
    name = job(world)["batch_prediction_job"]
    fake_batch(world).fail(name, "the teacher model is unavailable in us-central1")
    record = poll_until(world, "FAILED")
    assert "the teacher model is unavailable in us-central1" in record["reason"]
    assert name in record["reason"]
    assert fake_tuning(world).jobs == {}


def test_labeling_progress_is_recorded_while_running(world: Dependencies) -> None:
    build_job(world)
    fake_batch(world).polls_per_state = 3
    resume_requested(JOB, world)
    poll_tuning_jobs(world)
    record = job(world)
    assert record["state"] == "LABELING"
    assert record["labeling_progress"]["batch_state"].startswith("JOB_STATE_")


def test_labeling_cancel_stops_the_batch_job(world: Dependencies) -> None:
    build_job(world)
    fake_batch(world).polls_per_state = 5
    resume_requested(JOB, world)
    name = job(world)["batch_prediction_job"]
    record = cancel_job(JOB, world, by="ops")
    assert record["state"] == "CANCELLED"
    assert "cancelled by ops while LABELING" in record["reason"]
    assert fake_batch(world).jobs[name]["state"] == "JOB_STATE_CANCELLED"
    assert record["batch_cancel_pending"] is False
    assert [e.state.value for e in events(world)] == ["REQUESTED", "LABELING", "CANCELLED"]
    poll_tuning_jobs(world)
    assert job(world)["state"] == "CANCELLED" and fake_tuning(world).jobs == {}
    assert cancel_job(JOB, world)["state"] == "CANCELLED"  # again: nothing changes


class _FlakyCancel(InMemoryBatchPredictions):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cancel_failures = 1

    def cancel(self, name: str) -> None:
        if self.cancel_failures:
            self.cancel_failures -= 1
            raise ServiceUnavailableError("no answer")
        super().cancel(name)


def test_labeling_cancel_that_did_not_get_through_is_finished_by_reconcile(
    world: Dependencies,
) -> None:
    assert isinstance(world.objects, InMemoryObjectStore)
    world.batch = _FlakyCancel(world.objects, PROJECT, polls_per_state=5)
    build_job(world)
    resume_requested(JOB, world)
    name = job(world)["batch_prediction_job"]
    record = cancel_job(JOB, world)
    assert (record["state"], record["batch_cancel_pending"]) == ("CANCELLED", True)
    assert fake_batch(world).jobs[name]["state"] != "JOB_STATE_CANCELLED"
    reconcile(world)
    assert fake_batch(world).jobs[name]["state"] == "JOB_STATE_CANCELLED"
    assert job(world)["batch_cancel_pending"] is False


class _CancelledDuringCreate(InMemoryBatchPredictions):
    """The job is cancelled while its batch job is being created."""

    deps: Dependencies

    def create(self, location: str, body: Any) -> Any:
        info = super().create(location, body)
        cancel_job(JOB, self.deps)
        return info


def test_labeling_cancel_during_the_batch_create_leaves_no_batch_job_running(
    world: Dependencies,
) -> None:
    assert isinstance(world.objects, InMemoryObjectStore)
    racing = _CancelledDuringCreate(world.objects, PROJECT, polls_per_state=5)
    racing.deps = world
    world.batch = racing
    build_job(world)
    record = resume_requested(JOB, world)
    assert record["state"] == "CANCELLED"
    [(name, made)] = racing.jobs.items()
    assert made["state"] == "JOB_STATE_CANCELLED"
    assert (record["batch_prediction_job"], record["batch_cancel_pending"]) == (name, False)


class _CancelledDuringTuningCreate(InMemoryTuningJobs):
    """The job is cancelled while its tuning job is being created."""

    deps: Dependencies

    def create(self, location: str, body: Any, *, api_version: str = "v1") -> Any:
        info = super().create(location, body, api_version=api_version)
        cancel_job(JOB, self.deps)
        return info


def test_labeling_cancel_during_the_tuning_create_stops_the_tuning_job(
    world: Dependencies,
) -> None:
    racing = _CancelledDuringTuningCreate(PROJECT)
    racing.deps = world
    world.tuning = racing
    build_job(world)
    resume_requested(JOB, world)
    record = poll_until(world, "CANCELLED")
    [made] = racing.jobs.values()
    assert made["state"] == "JOB_STATE_CANCELLED"
    assert record.get("tuning_job") is None
    assert [e.state.value for e in events(world)] == ["REQUESTED", "LABELING", "CANCELLED"]


def test_labeling_reconcile_takes_a_labeling_job_on_too(world: Dependencies) -> None:
    build_job(world)
    resume_requested(JOB, world)
    for _ in range(10):
        summary = reconcile(world)
        if job(world)["state"] == "SUBMITTED":
            break
    assert job(world)["state"] == "SUBMITTED"
    assert JOB in summary.moved and not summary.errors
    assert len(fake_tuning(world).jobs) == 1


def test_labeling_progress_follows_the_running_batch_job(world: Dependencies) -> None:
    build_job(world)
    fake_batch(world).polls_per_state = 2
    resume_requested(JOB, world)
    updated = [job(world)["labeling_progress"]]
    for _ in range(4):
        poll_tuning_jobs(world)
        updated.append(job(world)["labeling_progress"])
    states = [p["batch_state"] for p in updated]
    assert states == [
        "JOB_STATE_QUEUED",
        "JOB_STATE_QUEUED",
        "JOB_STATE_PENDING",
        "JOB_STATE_PENDING",
        "JOB_STATE_RUNNING",
    ]
    assert job(world)["state"] == "LABELING"
