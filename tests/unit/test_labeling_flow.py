"""An unlabeled upload from its drop to its promotion on the in-memory ports, through the real
validation, the launcher's real decision and the labeling runtime (no record written by hand):
validated as prompts, decided with a labeling stage, labeled and explained by the teacher's batch
job (three lines of which fail), trained on the two-task file, evaluated on the label task, and
promoted with the label task's prefix."""

from __future__ import annotations

import json
from typing import Any

import pytest

from distillery import labeling
from distillery.commands import cli
from distillery.commands.ops import jobs as jobs_command
from distillery.core.models import JobState, LaunchRequest, StorageObject
from distillery.core.runtime import Dependencies
from distillery.fakes import (
    InMemoryBatchPredictions,
    InMemoryObjectStore,
    InMemoryPublisher,
    InMemoryTuningJobs,
)
from distillery.local.example_data import Example, generate
from distillery.services.datasets import handle_object
from distillery.services.launcher import launch
from distillery.services.promoter import promote
from distillery.services.status import poll_tuning_jobs
from tests.helpers import BUCKET, fake_dependencies, jsonl

FAILED_LINES = {4: "RESOURCE_EXHAUSTED: the row could not be answered", 17: "INTERNAL", 99: "x"}


def _upload_unlabeled(deps: Dependencies) -> tuple[LaunchRequest, list[Example], list[Example]]:
    """The example task's training set as prompts only (and its labeled eval set), validated."""
    train, evaluation = generate(240, 20)
    assert isinstance(deps.objects, InMemoryObjectStore)
    assert isinstance(deps.publisher, InMemoryPublisher)
    prompts = "".join(json.dumps({"input_text": e.input_text}) + "\n" for e in train).encode()
    deps.objects.put(BUCKET, "datasets/news.eval.jsonl", jsonl(evaluation))
    info = deps.objects.put(BUCKET, "datasets/news.jsonl", prompts)
    handle_object(StorageObject(bucket=BUCKET, name=info.name, generation=info.generation), deps)
    [message] = deps.publisher.on(deps.settings.launch_topic)
    return LaunchRequest.model_validate_json(message.data), train, evaluation


def _read(deps: Dependencies, uri: str) -> bytes:
    bucket, name = uri.removeprefix("gs://").split("/", 1)
    return deps.objects.read_bytes(bucket, name)


def _read_jsonl(deps: Dependencies, uri: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _read(deps, uri).splitlines() if line.strip()]


def test_an_unlabeled_upload_is_labeled_trained_step_by_step_and_promoted() -> None:
    deps = fake_dependencies(backend="gemini")
    request, train, evaluation = _upload_unlabeled(deps)
    batch = deps.batch
    assert isinstance(batch, InMemoryBatchPredictions)
    # The teacher answers in the form the instruction asks for.
    batch.teach(
        {
            e.input_text: f"Rationale: the words of the text point to {e.output_text}.\n"
            f"Answer: {e.output_text}"
            for e in train
        },
        "no idea",
    )
    batch.fail_lines(FAILED_LINES)

    job_id = launch(request, deps)
    record = deps.records.get("jobs", job_id)
    assert record is not None and record["state"] == "LABELING", record.get("reason")
    spec = labeling.LabelingSpec.from_dict(record["labeling"])
    assert spec.mode == "labels_and_rationales" and spec.teacher_model == "gemini-2.5-pro"

    for _ in range(50):  # the batch job takes a few polls per state, as the service does
        if (deps.records.get("jobs", job_id) or {}).get("state") != "LABELING":
            break
        poll_tuning_jobs(deps)
    record = deps.records.get("jobs", job_id)
    assert record is not None and record["state"] == "SUBMITTED", record.get("reason")
    result = record["labeling_result"]
    assert result["counts"]["labeled"] == 237 and result["counts"]["failed"] == 3

    # Every failed line is in the report, by its line number (1-based) in the upload.
    report = json.loads(_read(deps, result["report_uri"]))
    listed = {entry["line"]: entry["outcome"] for entry in report["lines"]}
    assert listed == {number + 1: "failed" for number in FAILED_LINES}

    # The labeled artifact carries rationales; the lineage names teacher, instruction and job.
    labeled = _read_jsonl(deps, spec.labeled_uri)
    assert len(labeled) == 237 and all(line["rationale"] for line in labeled)
    assert {line["label_by"] for line in labeled} == {"teacher"}
    lineage = json.loads(_read(deps, spec.lineage_uri))
    assert lineage["instruction_sha256"] == labeling.instruction_sha256()
    assert lineage["batch_prediction_job"] == record["batch_prediction_job"]
    text = json.dumps(lineage)
    assert "gemini-2.5-pro" in text and record["labeled_at"] in text

    # The tuning job trains on the two-task file: a label task and a rationale task an example.
    tasks = _read_jsonl(deps, spec.training_uri)
    firsts = [t["contents"][0]["parts"][0]["text"] for t in tasks]
    assert sum(f.startswith("predict: ") for f in firsts) == 237
    assert sum(f.startswith("explain: ") for f in firsts) == 237
    tuning = deps.tuning
    assert isinstance(tuning, InMemoryTuningJobs)
    [job] = tuning.jobs.values()
    assert job["supervisedTuningSpec"]["trainingDatasetUri"] == spec.training_uri

    for _ in range(50):
        if (deps.records.get("jobs", job_id) or {}).get("state") == "SUCCEEDED":
            break
        poll_tuning_jobs(deps)
    record = deps.records.get("jobs", job_id)
    assert record is not None
    # The model answers the label task it was trained on, not the bare prompt.
    tuning.teach(
        str(record["candidate_endpoint"]),
        {f"predict: {e.input_text}": str(e.output_text) for e in evaluation},
        "no idea",
    )

    outcome = promote(job_id, deps)

    assert outcome is not None and outcome.state is JobState.PROMOTED, outcome
    family = deps.records.get("models", record["spec"]["tuned_model_display_name"])
    assert family is not None and family["champion"]["prompt_prefix"] == "predict: "
    assert isinstance(deps.publisher, InMemoryPublisher)
    states = [
        json.loads(m.data)["state"]
        for m in deps.publisher.on(deps.settings.status_topic)
        if json.loads(m.data)["job_id"] == job_id
    ]
    assert states == [
        "REQUESTED",
        "LABELING",
        "SUBMITTED",
        "RUNNING",
        "SUCCEEDED",
        "EVALUATING",
        "PROMOTED",
    ]


def test_distillery_show_lists_the_lines_the_teacher_did_not_label(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    deps = fake_dependencies(backend="gemini")
    monkeypatch.setattr(jobs_command, "dependencies", lambda *required: deps)
    request, train, _ = _upload_unlabeled(deps)
    batch = deps.batch
    assert isinstance(batch, InMemoryBatchPredictions)
    batch.teach({e.input_text: f"Rationale: r.\nAnswer: {e.output_text}" for e in train}, "")
    batch.fail_lines(FAILED_LINES)
    job_id = launch(request, deps)

    poll_tuning_jobs(deps)  # the batch job runs: show gives its state and counts so far
    assert cli.main(["show", job_id]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "labeling  labels_and_rationales by gemini-2.5-pro" in out
    assert "  batch job JOB_STATE_" in out

    for _ in range(50):
        if (deps.records.get("jobs", job_id) or {}).get("state") != "LABELING":
            break
        poll_tuning_jobs(deps)
    assert cli.main(["show", job_id]) == cli.EXIT_OK
    out = capsys.readouterr().out
    record = deps.records.get("jobs", job_id)
    assert record is not None
    assert f"batch prediction job {record['batch_prediction_job']}" in out
    assert "failed 3, labeled 237 of 240 examples (labeled fraction 0.988)" in out
    assert f"  report    {record['labeling_result']['report_uri']}" in out
    assert "  line 5: failed: RESOURCE_EXHAUSTED: the row could not be answered" in out
    assert "  line 18: failed: INTERNAL" in out and "  line 100: failed: x" in out
