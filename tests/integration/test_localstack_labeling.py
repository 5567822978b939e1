"""Distilling step-by-step on the default backend, end to end on a local stack of its own: an
UNLABELED training set dropped in the bucket is labeled by the teacher (one batch prediction
job), with a rationale for every answer, before the student is tuned on the two-task data, then
judged.

The teacher is the local model ``distillery dev up`` trains on the example task with rationales
(:func:`~distillery.local.teachers.cached_local_teacher`), handed to the stack's Vertex AI
emulator as ``gemini-2.5-pro``; the emulator's fault injection fails the teacher's rows for the
two training prompts that carry :data:`MARKER`, as the service fails a row. The job is
announced REQUESTED → LABELING → SUBMITTED → RUNNING → SUCCEEDED → EVALUATING → PROMOTED or
REJECTED; the labeled set (with rationales), its lineage, the labeling report (listing the two
failed lines by number) and the two-task training file are where ``labeling_paths`` puts them;
exactly one batch prediction job and one tuning job carry the job's label.

Budget: the teacher trains for a minute or two, the labeling of 48 prompts takes seconds, the
tuning (46 label and 46 rationale lines, the default epochs) a minute or two on two cores.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import (
    GenAiTuningServiceClient,
    JobServiceClient,
    ListBatchPredictionJobsRequest,
    ListTuningJobsRequest,
)

from distillery import policy
from distillery.core.runtime import Dependencies
from distillery.labeling import LabelingSpec, instruction_sha256, labeling_paths
from distillery.local.emulator._config import BatchFaults
from distillery.local.example_data import CLASSES, Example, generate
from distillery.local.stack import StackConfig
from distillery.local.stack.harness import StackHarness
from distillery.local.teachers import LocalTeacher
from tests.helpers import jsonl
from tests.integration.default_stack import default_backend_stack, follow, stack_dependencies

pytestmark = pytest.mark.integration

#: Training prompts that carry it get a failed row from the teacher's batch job.
MARKER = "Filed by the wire desk."
#: The (1-based) lines of the training set whose prompts carry the marker.
FAILED_LINES = (5, 20)
TRAIN_SIZE = 48
#: The states a step-by-step gemini job is announced in, in order, up to its decision.
LABELED_PATH = ["REQUESTED", "LABELING", "SUBMITTED", "RUNNING", "SUCCEEDED", "EVALUATING"]
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


@pytest.fixture(scope="module")
def teacher(local_teacher: LocalTeacher) -> LocalTeacher:
    """The local teacher ``distillery dev up`` provides: trained on examples with rationales (a
    seed of its own), once a session."""
    assert local_teacher.label_accuracy >= 0.9, local_teacher
    return local_teacher


@pytest.fixture(scope="module")
def labeling_stack(
    tmp_path_factory: pytest.TempPathFactory, teacher: LocalTeacher
) -> Iterator[StackHarness]:
    """A default-backend stack whose emulator has the local teacher and fails marked rows."""
    config = StackConfig.ephemeral(
        tmp_path_factory.mktemp("labelingstack"),
        startup_timeout=180.0,
        poll_tuning_jobs_seconds=1,
        vertex_env={**teacher.env(), **BatchFaults(marker=MARKER).env()},
    )
    with default_backend_stack(config) as harness:
        yield harness


def _unlabeled_training_set() -> list[Example]:
    """Prompts only; the lines of :data:`FAILED_LINES` carry the marker."""
    prompts, _ = generate(TRAIN_SIZE, 12, seed=7, labeled=False)
    return [
        Example(f"{e.input_text} {MARKER}", None) if number in FAILED_LINES else e
        for number, e in enumerate(prompts, start=1)
    ]


def _read(deps: Dependencies, uri: str) -> bytes:
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return deps.objects.read_bytes(bucket, name)


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value (keys and values), depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _line_entries(value: Any) -> Iterator[dict[str, Any]]:
    """Every object in a JSON value that names a ``line`` and its ``outcome``."""
    if isinstance(value, dict):
        if "line" in value and "outcome" in value:
            yield value
        for item in value.values():
            yield from _line_entries(item)
    elif isinstance(value, list):
        for item in value:
            yield from _line_entries(item)


def _labeling_report(
    harness: StackHarness, deps: Dependencies, record: dict[str, Any], job_id: str
) -> Any:
    """The labeling report: the ``reports/`` URI the job's ``labeling_result`` names, else the
    one object under ``reports/`` whose name has the job id and "labeling"."""
    settings = harness.settings
    reports = f"gs://{settings.bucket}/{settings.reports_prefix}"
    named = [s for s in _strings(record.get("labeling_result")) if s.startswith(reports)]
    if not named:
        blobs = harness.storage_client().list_blobs(settings.bucket, prefix=settings.reports_prefix)
        named = [
            f"gs://{settings.bucket}/{blob.name}"
            for blob in blobs
            if job_id in blob.name and "labeling" in blob.name and blob.name.endswith(".json")
        ]
    assert len(set(named)) == 1, (named, record.get("labeling_result"))
    return json.loads(_read(deps, named[0]))


@pytest.mark.timeout(900)  # trains the teacher (the module fixture), a minute or three
def test_the_local_teacher_explains_before_it_answers(teacher: LocalTeacher) -> None:
    """What the stack's teacher answers an instructed request: a rationale in the example
    task's form, then a label (checked here, so a failure above is not the teacher's)."""
    from distillery.local.trainer import load_predictor

    predictor = load_predictor(Path(teacher.model_dir))
    assert predictor.can_explain
    prompts = [e.input_text for e in _unlabeled_training_set()]
    labels, rationales = predictor.predict(prompts), predictor.explain(prompts)
    assert all(label in CLASSES for label in labels), labels
    classes = "|".join(CLASSES)
    form = re.compile(
        rf'The subject "[^"]+" and the event "[^"]+" are ({classes}) words, '
        rf"so the text is about ({classes})\."
    )
    # A small model: a rationale may still be off, but few are.
    off = [r for r in rationales if not form.fullmatch(r)]
    assert len(off) <= len(rationales) // 10, off


@pytest.mark.timeout(1500)
def test_an_unlabeled_set_is_labeled_step_by_step_then_tuned_and_judged(
    labeling_stack: StackHarness, teacher: LocalTeacher
) -> None:
    harness, settings = labeling_stack, labeling_stack.settings
    status = harness.subscribe(settings.status_topic)
    _, golden = generate(TRAIN_SIZE, 12, seed=7)
    train = _unlabeled_training_set()
    assert all(e.output_text is None for e in train)
    harness.upload("datasets/news-sbs.eval.jsonl", jsonl(golden))
    harness.upload("datasets/news-sbs.jsonl", jsonl(train))

    announced = follow(harness, status, timeout=1200)
    [(job_id, states)] = announced.items()
    assert states[:-1] == LABELED_PATH and states[-1] in {"PROMOTED", "REJECTED"}, states

    deps = stack_dependencies(harness)
    record = deps.records.get(settings.jobs_collection, job_id)
    assert record is not None and record["state"] == states[-1], record
    assert record["backend"] == "gemini"
    spec = LabelingSpec.from_dict(record["labeling"])
    assert spec.teacher_model == teacher.model_id == "gemini-2.5-pro"
    assert spec.mode == "labels_and_rationales" and spec.source_examples == TRAIN_SIZE
    paths = labeling_paths(settings.bucket, settings.validated_prefix, job_id)
    assert (spec.labeled_uri, spec.lineage_uri, spec.training_uri) == (
        paths.labeled_uri,
        paths.lineage_uri,
        paths.training_uri,
    )
    assert paths.labeled_uri == (
        f"gs://{settings.bucket}/{settings.validated_prefix}labeled/{job_id}/labeled.jsonl"
    )
    assert record["labeling_body"]["labels"] == {policy.JOB_LABEL_KEY: spec.job_label}
    assert record["request_body"]["supervisedTuningSpec"]["trainingDatasetUri"] == (
        spec.training_uri
    )

    # The labeled set: every line the teacher answered, with its rationale; not the failed two.
    labeled = [json.loads(line) for line in _read(deps, spec.labeled_uri).splitlines()]
    by_line = {int(entry["line"]): entry for entry in labeled}
    kept = {n: e for n, e in by_line.items() if e.get("label") is not None}
    assert not set(FAILED_LINES) & set(kept), sorted(by_line)
    assert len(kept) == TRAIN_SIZE - len(FAILED_LINES), sorted(kept)
    for entry in kept.values():
        assert isinstance(entry["rationale"], str) and entry["rationale"].strip(), entry
        assert entry["label"] in CLASSES, entry
        assert entry.get("label_by") in (None, "teacher"), entry

    # Its lineage names the teacher, the instruction, the batch job and when.
    lineage = json.loads(_read(deps, spec.lineage_uri))
    told = set(_strings(lineage))
    assert "gemini-2.5-pro" in " ".join(told), lineage
    assert instruction_sha256(spec.mode) in told, lineage
    assert record["batch_prediction_job"] in told, lineage
    assert any(RFC3339.match(text) for text in told), lineage

    # The labeling report lists the two failed lines by number.
    report = _labeling_report(harness, deps, record, job_id)
    entries = list(_line_entries(report))
    failed = {int(e["line"]) for e in entries if e["outcome"] == "failed"}
    assert failed == set(FAILED_LINES), entries
    assert not {int(e["line"]) for e in entries} - set(FAILED_LINES) - set(by_line), entries

    # The two-task training file: a label task and a rationale task per labeled example.
    lines = [json.loads(line) for line in _read(deps, spec.training_uri).splitlines()]
    prompts = [line["contents"][-2]["parts"][0]["text"] for line in lines]
    label_tasks = [p for p in prompts if p.startswith(spec.label_task_prefix)]
    rationale_tasks = [p for p in prompts if p.startswith(spec.rationale_task_prefix)]
    assert len(label_tasks) == len(kept) and len(label_tasks) + len(rationale_tasks) == len(lines)
    assert spec.rationale_mixture == 1.0 and len(rationale_tasks) == len(kept)
    assert all(line["contents"][-1]["role"] == "model" for line in lines)

    # Exactly one batch prediction job and one tuning job carry the job's label.
    label = spec.job_label
    assert label == policy.job_label(job_id)
    parent = f"projects/{settings.project}/locations/{spec.location}"
    options = {"api_endpoint": harness.stack.vertex_url}
    credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    batch_client = JobServiceClient(
        transport="rest", credentials=credentials, client_options=options
    )
    [batch_job] = batch_client.list_batch_prediction_jobs(
        request=ListBatchPredictionJobsRequest(
            parent=parent, filter=f'labels.{policy.JOB_LABEL_KEY}="{label}"'
        )
    )
    assert batch_job.name == record["batch_prediction_job"]
    assert batch_job.state.name == "JOB_STATE_SUCCEEDED"
    assert batch_job.model == "publishers/google/models/gemini-2.5-pro"
    stats = batch_job.completion_stats
    assert (stats.successful_count, stats.failed_count) == (
        TRAIN_SIZE - len(FAILED_LINES),
        len(FAILED_LINES),
    )
    tuning_client = GenAiTuningServiceClient(
        transport="rest", credentials=credentials, client_options=options
    )
    [tuning_job] = tuning_client.list_tuning_jobs(
        request=ListTuningJobsRequest(
            parent=f"projects/{settings.project}/locations/{settings.region}",
            filter=f'labels.{policy.JOB_LABEL_KEY}="{label}"',
        )
    )
    assert tuning_job.name == record["tuning_job"]
    assert tuning_job.state.name == "JOB_STATE_SUCCEEDED"
    assert tuning_job.supervised_tuning_spec.training_dataset_uri == spec.training_uri
