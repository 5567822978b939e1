"""The distillation mode's training set: a prompts-only ``contents`` copy (the teacher writes the
responses), with line-level findings for native lines that are no prompt."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillery.validation import GEMINI_RULES, DatasetKind, ValidatedCopy, validated_copy
from tests.unit.test_validation_contents import (
    DATASET_RULES,
    _lines,
    chat,
    encode,
    findings,
    located,
    text_example,
    turn,
)

SOURCE = "datasets/prompts.jsonl"


def prompts_copy(
    records: list[Any] | bytes, *, kind: DatasetKind = DatasetKind.TRAINING
) -> tuple[ValidatedCopy, list[dict[str, Any]]]:
    raw = records if isinstance(records, bytes) else encode(records)
    copy = validated_copy(
        io.BytesIO(raw),
        backend="gemini",
        kind=kind,
        source=SOURCE,
        tuning_mode="distillation",
    )
    body = b"".join(copy)
    return copy, [json.loads(line) for line in body.splitlines()]


def test_new_rules_are_reported_rules() -> None:
    codes = {rule.code for rule in GEMINI_RULES}
    assert {"prompt_turns_invalid", "answer_dropped"} <= codes


def test_unlabeled_text_lines_become_user_turns() -> None:
    copy, lines = prompts_copy([text_example(i, labeled=False) for i in range(1, 121)])
    report = copy.validation.report
    assert report.valid, report.to_json_dict()
    assert report.result_for("output_text_required") is None
    assert report.result_for("answer_dropped") is None
    assert len(lines) == 120
    assert lines[0] == {"contents": [turn("user", text_example(1)["input_text"])]}
    # The tokens counted are the prompt's (the teacher's answer is not known yet).
    assert copy.dataset_tokens == sum(
        -(-len(text_example(i)["input_text"]) // 4) for i in range(1, 121)
    )


def test_answers_are_dropped_with_a_warning() -> None:
    records = [text_example(i) for i in range(1, 121)]
    copy, lines = prompts_copy(records)
    report = copy.validation.report
    assert report.valid
    assert all(len(line["contents"]) == 1 for line in lines)
    assert all(line["contents"][0]["role"] == "user" for line in lines)
    dropped = report.result_for("answer_dropped")
    assert dropped is not None and dropped.severity == "warning" and dropped.count == 120
    assert located(report, "answer_dropped")[0] == (1, None)
    # Mixed labeled and unlabeled lines are one dataset to the teacher.
    mixed = [text_example(i, labeled=i % 2 == 0) for i in range(1, 121)]
    assert prompts_copy(mixed)[0].validation.report.result_for("mixed_labeling") is None


def test_native_prompt_lines_keep_the_user_turn_and_the_instruction() -> None:
    system = {"parts": [{"text": "Answer with a number."}]}
    records: list[Any] = [
        {"systemInstruction": system, "contents": [turn("user", f"What is {i} plus {i}?")]}
        for i in range(1, 61)
    ]
    records += [chat(i) for i in range(61, 121)]
    copy, lines = prompts_copy(records)
    report = copy.validation.report
    assert report.valid, report.to_json_dict()
    assert lines[0] == {
        "systemInstruction": system,
        "contents": [turn("user", "What is 1 plus 1?")],
    }
    assert lines[60]["contents"] == [chat(61)["contents"][0]]
    assert report.result_for("answer_dropped").count == 60  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("contents", "field", "words"),
    [
        ([turn("model", "4")], "contents[0].role", 'starts with the "user" turn'),
        ([turn("user", "a"), turn("user", "b")], "contents[1].role", "2 turns (user, user)"),
        (
            [turn("user", "a"), turn("model", "b"), turn("user", "c")],
            "contents[2]",
            "3 turns",
        ),
    ],
)
def test_a_native_line_that_is_no_prompt_is_refused_on_its_line(
    contents: list[dict[str, Any]], field: str, words: str
) -> None:
    records: list[Any] = [chat(i) for i in range(1, 121)]
    records[4] = {"contents": contents}
    copy, lines = prompts_copy(records)
    report = copy.validation.report
    assert not report.valid
    assert located(report, "prompt_turns_invalid") == [(5, field)]
    assert words in findings(report, "prompt_turns_invalid")[0].message
    assert len(lines) == 119


def test_a_text_line_without_input_is_still_refused() -> None:
    records: list[Any] = [text_example(i, labeled=False) for i in range(1, 121)]
    records[2] = {"output_text": "4"}
    report = prompts_copy(records)[0].validation.report
    assert located(report, "input_text_missing") == [(3, "input_text")]


def test_an_eval_set_stays_labeled_in_the_distillation_mode() -> None:
    records = [text_example(i) for i in range(1, 41)]
    copy, lines = prompts_copy(records, kind=DatasetKind.EVAL)
    assert copy.validation.report.valid
    assert copy.prompts_only is False
    assert all(len(line["contents"]) == 2 for line in lines)


def test_an_unknown_tuning_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown tuning mode 'rlhf'"):
        validated_copy(
            io.BytesIO(b""),
            backend="gemini",
            kind=DatasetKind.TRAINING,
            source=SOURCE,
            tuning_mode="rlhf",
        )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=_lines, final_newline=st.booleans())
def test_prompts_only_never_raises_and_copies_user_turns_only(
    lines: list[bytes], final_newline: bool
) -> None:
    raw = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    copy, copied = prompts_copy(raw)
    report = copy.validation.report
    line_count = raw.count(b"\n") + (0 if raw.endswith(b"\n") or not raw else 1)
    for result in (*report.errors, *report.warnings):
        assert result.count >= len(result.findings) >= 1
        for finding in result.findings:
            if result.rule in DATASET_RULES:
                assert finding.line is None, result.rule
            else:
                assert finding.line is not None and 1 <= finding.line <= line_count, result.rule
    for line in copied:
        assert [t["role"] for t in line["contents"]] == ["user"]
    if report.valid:
        assert len(copied) == report.examples
