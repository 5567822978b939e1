"""A supervised gemini training set without answers: valid, its copy the prompts, its report and
record saying the teacher labels it; a mixed set refused with how to fix it; eval sets labeled;
the pipeline backend unchanged; ``distillery validate`` saying what will happen."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from distillery.commands import validate as validation_cli
from distillery.core.models import StorageObject
from distillery.core.settings import ENVIRONMENT
from distillery.services.datasets import Outcome, handle_object
from distillery.validation import DatasetKind, validate_jsonl, validated_copy
from tests.helpers import BUCKET, fake_dependencies
from tests.unit.test_validation_contents import (
    chat,
    copy_of,
    encode,
    findings,
    located,
    report_of,
    text_example,
    turn,
    with_line,
)


def _prompt(i: int, **extra: Any) -> dict[str, Any]:
    """A valid one-user-turn contents example (no answer)."""
    record: dict[str, Any] = {"contents": [turn("user", text_example(i)["input_text"])]}
    record.update(extra)
    return record


def test_validation_labeling_unlabeled_text_set_is_valid_and_its_copy_the_prompts() -> None:
    records = [text_example(i, labeled=False) for i in range(1, 121)]
    copy, body = copy_of(records)
    report = copy.validation.report
    assert report.valid, report.to_json_dict()
    assert (report.labeling, report.unlabeled_examples, report.labeled_examples) == (
        "unlabeled",
        120,
        0,
    )
    assert copy.validation.labeled is False
    [finding] = findings(report, "teacher_labels")
    assert finding.line is None
    assert "none of the 120 examples has an answer" in finding.message
    assert "billed by the teacher's input and output tokens" in finding.message
    assert report.result_for("teacher_labels").severity == "warning"  # type: ignore[union-attr]
    # SPEC: more than 1,000 unlabeled examples are recommended.
    assert report.result_for("few_unlabeled_examples") is not None
    lines = [json.loads(line) for line in body.splitlines()]
    assert lines == [{"contents": [turn("user", r["input_text"])]} for r in records]
    # The tokens the plan prices are the prompts' (the teacher's answers are not known yet).
    assert copy.dataset_tokens == sum(-(-len(r["input_text"]) // 4) for r in records)


def test_validation_labeling_unlabeled_contents_set_keeps_its_system_instruction() -> None:
    system = {"parts": [{"text": "Answer with a number."}]}
    records = [_prompt(i, systemInstruction=system) for i in range(1, 121)]
    copy, body = copy_of(records)
    report = copy.validation.report
    assert report.valid, report.to_json_dict()
    assert report.labeling == "unlabeled"
    first = json.loads(body.splitlines()[0])
    assert first == {"systemInstruction": system, "contents": records[0]["contents"]}
    assert len(body.splitlines()) == 120


def test_validation_labeling_labeled_set_copy_keeps_the_answers() -> None:
    copy, body = copy_of([chat(i) for i in range(1, 121)])
    report = copy.validation.report
    assert report.valid and report.labeling == "labeled"
    assert report.result_for("teacher_labels") is None
    assert json.loads(body.splitlines()[0])["contents"][1] == turn("model", "2")


@pytest.mark.parametrize(
    "records, field, missing",
    [
        (
            with_line([text_example(i) for i in range(1, 121)], 7, text_example(7, labeled=False)),
            "output_text",
            "no output_text",
        ),
        (with_line([chat(i) for i in range(1, 121)], 7, _prompt(7)), "contents", "no model turn"),
    ],
)
def test_validation_labeling_mixed_set_is_refused_with_how_to_fix_it(
    records: list[Any], field: str, missing: str
) -> None:
    report = report_of(records)
    assert not report.valid and report.labeling == "mixed"
    assert located(report, "output_text_required") == [(7, field)]
    message = findings(report, "output_text_required")[0].message
    assert message.startswith(f"the line has {missing}, unlike the 119 labeled examples")
    assert "label it first, or leave every line unlabeled" in message
    assert report.result_for("teacher_labels") is None


def test_validation_labeling_mixed_set_unlabeled_first_is_refused_on_every_unlabeled_line() -> None:
    records = [text_example(i, labeled=i > 3) for i in range(1, 121)]
    report = report_of(records)
    assert not report.valid
    assert located(report, "output_text_required") == [
        (1, "output_text"),
        (2, "output_text"),
        (3, "output_text"),
    ]


def test_validation_labeling_eval_sets_stay_labeled() -> None:
    unlabeled = report_of(
        [text_example(i, labeled=False) for i in range(1, 21)], kind=DatasetKind.EVAL
    )
    assert not unlabeled.valid
    assert findings(unlabeled, "eval_unlabeled")[0].line == 1
    assert unlabeled.result_for("teacher_labels") is None
    prompts = report_of([_prompt(i) for i in range(1, 21)], kind=DatasetKind.EVAL)
    assert not prompts.valid
    assert located(prompts, "contents_role_order")[0] == (1, "contents[0].role")


def test_validation_labeling_pipeline_backend_is_the_seed_byte_for_byte() -> None:
    raw = encode([text_example(i, labeled=False) for i in range(1, 121)])
    copy = validated_copy(
        io.BytesIO(raw), backend="pipeline", kind=DatasetKind.TRAINING, source="s"
    )
    body = b"".join(copy)
    seed = validate_jsonl(io.BytesIO(raw), kind=DatasetKind.TRAINING, source="s")
    assert body == raw
    assert copy.validation.report == seed.report
    assert seed.report.result_for("teacher_labels") is None


def _upload(deps: Any, records: list[dict[str, Any]]) -> tuple[Outcome, dict[str, Any]]:
    info = deps.objects.put(BUCKET, "datasets/prompts.jsonl", encode(records))
    outcome = handle_object(
        StorageObject(bucket=BUCKET, name=info.name, generation=info.generation), deps
    )
    [record] = deps.records.list("datasets", where={"object": "datasets/prompts.jsonl"})
    return outcome, record


def test_validation_labeling_dataset_record_says_labeling() -> None:
    unlabeled = [text_example(i, labeled=False) for i in range(1, 121)]
    outcome, record = _upload(fake_dependencies(backend="gemini"), unlabeled)
    assert outcome is Outcome.LAUNCH_REQUESTED
    assert (record["status"], record["labeling"], record["tuning_mode"]) == (
        "valid",
        "unlabeled",
        "supervised",
    )
    assert record["validated_uri"].startswith(f"gs://{BUCKET}/validated/")
    _, labeled = _upload(
        fake_dependencies(backend="gemini"), [text_example(i) for i in range(1, 121)]
    )
    assert labeled["labeling"] == "labeled"
    # The pipeline's record is the seed's: no labeling recorded.
    _, seed = _upload(fake_dependencies(backend="pipeline"), unlabeled)
    assert "labeling" not in seed


def _run_validate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="distillery")
    validation_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_validation_labeling_validate_cli_says_the_teacher_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], clean_environment: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(encode([text_example(i, labeled=False) for i in range(1, 121)]))
    assert _run_validate(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Labeling: the 120 examples have no answers: a gemini job has the teacher " in out
    assert "gemini-2.5-pro label and explain every one" in out
    assert _run_validate(["validate", str(path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["labeling"]["mode"] == "labels_and_rationales"
    # Not for the pipeline, nor the distillation mode, nor a sidecar that says rationales none.
    for environment, sidecar in (
        ({"DISTILLERY_BACKEND": "pipeline"}, None),
        ({"DISTILLERY_TUNING_MODE": "distillation"}, None),
        ({}, {"rationales": "none"}),
    ):
        with pytest.MonkeyPatch.context() as patch:
            for name, value in environment.items():
                patch.setenv(name, value)
            config = tmp_path / "prompts.config.json"
            if sidecar is not None:
                config.write_text(json.dumps(sidecar))
            _run_validate(["validate", str(path)])
            assert "Labeling:" not in capsys.readouterr().out, (environment, sidecar)
            config.unlink(missing_ok=True)
