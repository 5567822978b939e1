"""The demo's step-by-step narration on the in-memory ports: what it says of a job's labeling
stage (counts, artifacts, a labeled line and its rationale, the two tasks), and when."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from distillery.commands.watch import StateChange
from distillery.core.runtime import Dependencies
from distillery.core.settings import Settings
from distillery.fakes import InMemoryObjectStore, InMemoryPublisher, InMemoryRecordStore
from distillery.labeling import OUTCOMES, LabelingSpec, labeling_paths
from distillery.local import demo

JOB = "news-sbs-distilled-1"
PATHS = labeling_paths("demo-bucket", "validated/", JOB)
SPEC = LabelingSpec(
    mode="labels_and_rationales",
    teacher_model="gemini-2.5-pro",
    location="us-central1",
    source_uri="gs://demo-bucket/validated/abc/news-sbs.jsonl",
    source_examples=3,
    input_uri=PATHS.input_uri,
    output_prefix=PATHS.output_prefix,
    labeled_uri=PATHS.labeled_uri,
    lineage_uri=PATHS.lineage_uri,
    training_uri=PATHS.training_uri,
    instruction_sha256="0" * 64,
    instruction_version=1,
    min_labeled_fraction=0.9,
    rationale_mixture=1.0,
    label_task_prefix="predict: ",
    rationale_task_prefix="explain: ",
    estimated_input_tokens=100,
    estimated_output_tokens=100,
    estimated_cost_usd=0.01,
    job_label=JOB,
)


@pytest.fixture
def deps() -> Dependencies:
    return Dependencies(
        settings=Settings(project="p", bucket="demo-bucket"),
        objects=InMemoryObjectStore(),
        records=InMemoryRecordStore(),
        publisher=InMemoryPublisher(),
    )


def _labeled_line(line: int, text: str, label: str, rationale: str | None) -> str:
    contents = [{"role": "user", "parts": [{"text": f"Classify ... Text: {text}"}]}]
    entry = {"line": line, "contents": contents, "label": label, "label_by": "teacher"}
    return json.dumps(entry | {"rationale": rationale, "rationale_by": "gemini-2.5-pro"})


def _job(**result: Any) -> dict[str, Any]:
    return {"job_id": JOB, "labeling": SPEC.to_dict(), "labeling_result": result}


def test_demo_labeling_says_the_counts_artifacts_a_rationale_and_the_tasks(
    deps: Dependencies, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        _labeled_line(1, "The striker scored twice.", "sports", None),
        _labeled_line(2, "The bank cut its forecast.", "business", "The bank is business."),
    ]
    deps.objects.write_bytes(
        "demo-bucket", PATHS.labeled_uri[len("gs://demo-bucket/") :], "\n".join(lines).encode()
    )
    counts = dict.fromkeys(OUTCOMES, 0) | {"labeled": 2, "failed": 1}
    job = _job(
        counts=counts,
        source_examples=3,
        labeled_fraction=2 / 3,
        report_uri="gs://demo-bucket/reports/x.labeling.json",
        labeled_uri=PATHS.labeled_uri,
        lineage_uri=PATHS.lineage_uri,
        training_uri=PATHS.training_uri,
        label_tasks=2,
        rationale_tasks=1,
    )
    demo._labeling(deps, job)
    out = capsys.readouterr().out
    assert "labeled 2, " in out and "failed 1" in out and "(of 3: 66.7% labeled, 90% needed)" in out
    assert "labeling report: gs://demo-bucket/reports/x.labeling.json" in out
    assert f"labeled set: {PATHS.labeled_uri}" in out and f"lineage:     {PATHS.lineage_uri}" in out
    # The first line with a rationale, not the first line.
    assert "e.g. line 2: 'The bank cut its forecast.' -> 'business'" in out
    assert "rationale (gemini-2.5-pro): 'The bank is business.'" in out
    assert "2 label tasks ('predict: ') + 1 rationale tasks ('explain: ')" in out


def test_demo_labeling_of_a_job_that_failed_before_its_labeled_set_gives_the_counts_only(
    deps: Dependencies, capsys: pytest.CaptureFixture[str]
) -> None:
    counts = dict.fromkeys(OUTCOMES, 0) | {"labeled": 1, "unparseable": 2}
    demo._labeling(
        deps, _job(counts=counts, source_examples=3, labeled_fraction=1 / 3, report_uri="r")
    )
    out = capsys.readouterr().out
    assert "unparseable 2" in out and "labeling report: r" in out
    assert "labeled set" not in out and "rationale" not in out
    demo._labeling(deps, {"job_id": JOB, "labeling": SPEC.to_dict()})
    assert capsys.readouterr().out == ""


def test_demo_narration_runs_after_each_state_line() -> None:
    said: list[str] = []
    output = demo._Narrated(lambda change: said.append(f"then {change.state}"))
    output.stream = stream = io.StringIO()
    for state in ("REQUESTED", "LABELING"):
        output.state(StateChange(job_id=JOB, state=state, at="2026-12-02T10:00:00+00:00"))
        said.append(stream.getvalue().splitlines()[-1].split()[-1])
    assert said == ["then REQUESTED", "REQUESTED", "then LABELING", "LABELING"]
