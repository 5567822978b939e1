"""The JSON Lines rules of ``validate_jsonl``: each one failing, and passing on a near miss."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pytest

from distillery.validation import (
    DatasetKind,
    JsonlValidation,
    ValidationReport,
    add_overlap_findings,
    text_digest,
    validate_jsonl,
)


def example(i: int, *, labeled: bool = True, **extra: Any) -> dict[str, Any]:
    """A distinct, well-formed example with instructions and the question/context format."""
    record: dict[str, Any] = {
        "input_text": f"question: What is {i} plus {i}? context: Arithmetic drill number {i}."
    }
    if labeled:
        record["output_text"] = str(2 * i)
    record.update(extra)
    return record


def encode(records: list[Any]) -> bytes:
    """JSON Lines bytes: dicts and lists are dumped, bytes and str are taken as the raw line."""
    lines = []
    for record in records:
        if isinstance(record, bytes):
            lines.append(record)
        elif isinstance(record, str):
            lines.append(record.encode())
        else:
            lines.append(json.dumps(record, ensure_ascii=False).encode())
    return b"".join(line + b"\n" for line in lines)


def run(
    data: bytes | list[Any],
    kind: DatasetKind = DatasetKind.TRAINING,
    max_findings_per_rule: int = 20,
) -> JsonlValidation:
    raw = data if isinstance(data, bytes) else encode(data)
    return validate_jsonl(
        io.BytesIO(raw),
        kind=kind,
        source="datasets/t.jsonl",
        max_findings_per_rule=max_findings_per_rule,
    )


def rules_of(report: ValidationReport) -> set[str]:
    return {result.rule for result in (*report.errors, *report.warnings)}


def good(count: int = 120, **kwargs: Any) -> list[Any]:
    return [example(i, **kwargs) for i in range(1, count + 1)]


def test_validate_jsonl_good_labeled_dataset_has_no_findings() -> None:
    data = encode(good())
    result = run(data)
    report = result.report
    assert report.valid and report.errors == [] and report.warnings == []
    assert (report.examples, report.labeled_examples, report.unlabeled_examples) == (120, 120, 0)
    assert report.labeling == "labeled" and result.labeled is True
    assert report.size_bytes == len(data)
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    assert report.max_input_tokens > 0 and report.max_output_tokens == 1
    assert "characters / 4" in report.token_estimate
    assert len(result.input_digests) == 120


def test_validate_jsonl_rejects_config_kind() -> None:
    with pytest.raises(ValueError, match="validate_config"):
        run(good(3), kind=DatasetKind.CONFIG)


# --- errors ---------------------------------------------------------------------------------------


def test_validate_jsonl_invalid_utf8_names_line_and_byte_offset() -> None:
    records = good(120)
    records[4] = b'{"input_text": "question: caf\xe9 context: x", "output_text": "y"}'
    report = run(records).report
    result = report.result_for("invalid_utf8")
    assert result is not None and not report.valid
    finding = result.findings[0]
    assert finding.line == 5
    assert "byte offset 29 of the line" in finding.message and "E9" in finding.message


def test_validate_jsonl_valid_non_ascii_utf8_passes() -> None:
    records = good(120)
    records[4] = {"input_text": "question: café? context: naïve 日本 🙂", "output_text": "ü"}
    assert "invalid_utf8" not in rules_of(run(records).report)


def test_validate_jsonl_bom_is_an_error_but_the_line_is_still_checked() -> None:
    report = run(b"\xef\xbb\xbf" + encode(good())).report
    assert report.result_for("utf8_bom") is not None
    assert rules_of(report) == {"utf8_bom"}
    assert report.examples == 120


def test_validate_jsonl_bom_free_file_passes() -> None:
    assert "utf8_bom" not in rules_of(run(good()).report)


def test_validate_jsonl_blank_and_whitespace_lines_are_named() -> None:
    data = encode(good(60)) + b"\n   \t\n" + encode(good(60))
    result = run(data).report.result_for("blank_line")
    assert result is not None and result.count == 2
    assert [(f.line, f.message) for f in result.findings] == [
        (61, "the line is empty"),
        (62, "the line is only whitespace"),
    ]


def test_validate_jsonl_final_newline_is_not_a_blank_line() -> None:
    with_newline = encode(good())
    assert "blank_line" not in rules_of(run(with_newline).report)
    assert "blank_line" not in rules_of(run(with_newline[:-1]).report)
    assert "blank_line" in rules_of(run(with_newline + b"\n").report)


def test_validate_jsonl_invalid_json_reports_the_column() -> None:
    records = good()
    records[2] = '{"input_text": "question: a context: b",}'
    result = run(records).report.result_for("invalid_json")
    assert result is not None
    assert result.findings[0].line == 3
    assert "column 41" in result.findings[0].message


def test_validate_jsonl_deeply_nested_json_is_invalid_not_a_crash() -> None:
    records = good()
    records[0] = "[" * 100_000 + "]" * 100_000
    result = run(records).report.result_for("invalid_json")
    assert result is not None and "nested too deeply" in result.findings[0].message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"input_text": "question: a? context: b", "output_text": NaN}', "NaN is not valid JSON"),
        ('{"input_text": "question: a? context: b", "score": -Infinity}', "-Infinity is not valid"),
        ('\ufeff{"input_text": "question: a? context: b"}', "byte order mark (U+FEFF)"),
    ],
)
def test_validate_jsonl_rejects_what_python_accepts_but_json_does_not(
    line: str, expected: str
) -> None:
    records = good()
    records[5] = line
    result = run(records).report.result_for("invalid_json")
    assert result is not None and result.findings[0].line == 6
    assert expected in result.findings[0].message


def test_text_digest_ignores_surrounding_whitespace_only() -> None:
    assert text_digest("  café \n") == text_digest("café")
    assert text_digest("Café") != text_digest("café")
    assert text_digest("a  b") != text_digest("a b")
    # Latin-1 and UTF-16 paths are tagged apart: "ā" is U+0101, stored as bytes 01 01 in UTF-16.
    assert text_digest("ā") != text_digest("\x01\x01")
    assert len(text_digest("日本語 🙂")) == 16


@pytest.mark.parametrize(
    ("line", "described"),
    [
        ("[1, 2]", "an array"),
        ('"text"', 'a string ("text")'),
        ("42", "a number (42)"),
        ("null", "null"),
    ],
)
def test_validate_jsonl_non_object_line_says_what_it_is(line: str, described: str) -> None:
    records = good()
    records[0] = line
    result = run(records).report.result_for("not_an_object")
    assert result is not None and result.findings[0].line == 1
    assert result.findings[0].message.startswith(f"the line is {described}")


def test_validate_jsonl_missing_input_text_lists_fields_present() -> None:
    records = good()
    records[1] = {"prompt": "question: a context: b", "output_text": "x"}
    result = run(records).report.result_for("input_text_missing")
    assert result is not None
    finding = result.findings[0]
    assert (finding.line, finding.field) == (2, "input_text")
    assert "output_text, prompt" in finding.message


def test_validate_jsonl_input_text_not_a_string() -> None:
    records = good()
    records[0] = {"input_text": 42, "output_text": "x"}
    result = run(records).report.result_for("input_text_not_string")
    assert result is not None
    assert result.findings[0].message == "input_text is a number (42), expected a non-empty string"


@pytest.mark.parametrize("text", ["", "  \n\t "])
def test_validate_jsonl_empty_input_text_is_an_error(text: str) -> None:
    records = good()
    records[0] = {"input_text": text, "output_text": "x"}
    assert "input_text_empty" in rules_of(run(records).report)


def test_validate_jsonl_output_text_not_a_string() -> None:
    records = good()
    records[0] = {"input_text": "question: a? context: b", "output_text": None}
    result = run(records).report.result_for("output_text_not_string")
    assert result is not None
    assert result.findings[0].message == "output_text is null, expected a string"
    assert result.findings[0].field == "output_text"


def test_validate_jsonl_string_inputs_and_outputs_pass_the_type_rules() -> None:
    found = rules_of(run(good()).report)
    assert not found & {"input_text_missing", "input_text_not_string", "output_text_not_string"}


def test_validate_jsonl_more_than_10000_examples_counts_them_all() -> None:
    records = [{"input_text": f"Classify: item {i}", "output_text": "a"} for i in range(10_003)]
    report = run(records).report
    result = report.result_for("too_many_examples")
    assert result is not None and report.examples == 10_003
    assert result.findings[0].line == 10_001
    assert "10,003 examples, 3 over the limit of 10,000" in result.findings[0].message


def test_validate_jsonl_exactly_10000_examples_is_allowed() -> None:
    records = [{"input_text": f"Classify: item {i}", "output_text": "a"} for i in range(10_000)]
    assert "too_many_examples" not in rules_of(run(records).report)


def test_validate_jsonl_mixed_labeling_lists_the_minority() -> None:
    records = good(120)
    for index in (9, 19, 29):
        records[index] = example(index + 1, labeled=False)
    result = run(records)
    mixed = result.report.result_for("mixed_labeling")
    assert mixed is not None and mixed.count == 3
    assert [f.line for f in mixed.findings] == [10, 20, 30]
    assert result.report.labeling == "mixed" and result.labeled is None


def test_validate_jsonl_mixed_labeling_minority_can_be_the_labeled_lines() -> None:
    records = good(120, labeled=False)
    records[4] = example(5)
    mixed = run(records).report.result_for("mixed_labeling")
    assert mixed is not None and [f.line for f in mixed.findings] == [5]
    assert "has output_text" in mixed.findings[0].message


def test_validate_jsonl_unlabeled_dataset_is_not_mixed() -> None:
    result = run(good(1_001, labeled=False))
    assert result.report.valid and result.labeled is False
    assert result.report.labeling == "unlabeled"


@pytest.mark.parametrize("data", [b"", b"\n"])
def test_validate_jsonl_empty_dataset_is_an_error(data: bytes) -> None:
    report = run(data).report
    assert "dataset_empty" in rules_of(report) and report.labeling == "empty"


def test_validate_jsonl_one_example_is_not_empty() -> None:
    assert "dataset_empty" not in rules_of(run(good(1)).report)


@pytest.mark.parametrize(
    ("count", "rule"), [(9, "eval_too_few_examples"), (251, "eval_too_many_examples")]
)
def test_validate_jsonl_eval_size_out_of_range(count: int, rule: str) -> None:
    assert rule in rules_of(run(good(count), kind=DatasetKind.EVAL).report)


@pytest.mark.parametrize("count", [10, 250])
def test_validate_jsonl_eval_size_at_the_bounds_is_valid(count: int) -> None:
    report = run(good(count), kind=DatasetKind.EVAL).report
    assert report.valid and report.warnings == []


def test_validate_jsonl_eval_set_must_be_labeled() -> None:
    records = good(20)
    records[3] = example(4, labeled=False)
    report = run(records, kind=DatasetKind.EVAL).report
    result = report.result_for("eval_unlabeled")
    assert result is not None and [f.line for f in result.findings] == [4]
    assert "mixed_labeling" not in rules_of(report)
    fully_unlabeled = run(good(20, labeled=False), kind=DatasetKind.EVAL).report
    unlabeled = fully_unlabeled.result_for("eval_unlabeled")
    assert unlabeled is not None and unlabeled.count == 20


# --- warnings -------------------------------------------------------------------------------------


def test_validate_jsonl_unknown_fields_are_named_once_each() -> None:
    records = good()
    records[0] = example(1, id=1)
    records[1] = example(2, id=2, meta={"a": 1})
    report = run(records).report
    result = report.result_for("unknown_fields")
    assert report.valid and result is not None and result.count == 2
    by_field = {f.field: f for f in result.findings}
    assert by_field["id"].line == 1 and "(on 2 lines) is ignored" in by_field["id"].message
    assert by_field["meta"].line == 2


def test_validate_jsonl_known_fields_only_pass() -> None:
    assert "unknown_fields" not in rules_of(run(good()).report)


def test_validate_jsonl_crlf_is_accepted_and_said_once() -> None:
    data = encode(good()).replace(b"\n", b"\r\n")
    report = run(data).report
    result = report.result_for("crlf_line_endings")
    assert report.valid and rules_of(report) == {"crlf_line_endings"}
    assert result is not None and result.count == 120 and len(result.findings) == 1
    assert "120 lines end in \\r\\n" in result.findings[0].message


def test_validate_jsonl_duplicates_name_the_line_they_repeat() -> None:
    records = good()
    records[6] = example(3)
    records[7] = {"input_text": "  " + example(3)["input_text"] + "\n", "output_text": "6"}
    result = run(records).report.result_for("duplicate_examples")
    assert result is not None and result.count == 2
    assert [(f.line, f.message) for f in result.findings] == [
        (7, "duplicates line 3 (same input_text and output_text)"),
        (8, "duplicates line 3 (same input_text and output_text)"),
    ]


def test_validate_jsonl_same_input_with_another_output_is_not_a_duplicate() -> None:
    records = good()
    records[6] = {**example(3), "output_text": "seven"}
    assert "duplicate_examples" not in rules_of(run(records).report)


@pytest.mark.parametrize(("count", "warned"), [(99, True), (100, False)])
def test_validate_jsonl_few_labeled_examples(count: int, warned: bool) -> None:
    report = run(good(count)).report
    assert ("few_labeled_examples" in rules_of(report)) is warned
    if warned:
        result = report.result_for("few_labeled_examples")
        assert result is not None and "a few hundred high-quality" in result.findings[0].message


@pytest.mark.parametrize(("count", "warned"), [(1_000, True), (1_001, False)])
def test_validate_jsonl_few_unlabeled_examples(count: int, warned: bool) -> None:
    report = run(good(count, labeled=False)).report
    assert ("few_unlabeled_examples" in rules_of(report)) is warned


def test_validate_jsonl_eval_set_gets_no_training_size_advice() -> None:
    assert "few_labeled_examples" not in rules_of(run(good(20), kind=DatasetKind.EVAL).report)


@pytest.mark.parametrize(("chars", "warned"), [(7_168 * 4, False), (7_168 * 4 + 1, True)])
def test_validate_jsonl_input_token_limit(chars: int, warned: bool) -> None:
    records = good()
    prefix = "question: why? context: "
    records[0] = {"input_text": prefix + "x" * (chars - len(prefix)), "output_text": "y"}
    report = run(records).report
    assert report.valid
    assert ("input_too_long" in rules_of(report)) is warned
    assert report.max_input_tokens == -(-chars // 4)
    if warned:
        result = report.result_for("input_too_long")
        assert result is not None
        assert "about 7,169 tokens (28,673 characters)" in result.findings[0].message


@pytest.mark.parametrize(("chars", "warned"), [(1_024 * 4, False), (1_024 * 4 + 1, True)])
def test_validate_jsonl_output_token_limit(chars: int, warned: bool) -> None:
    records = good()
    records[0] = {**example(1), "output_text": "y" * chars}
    report = run(records).report
    assert ("output_too_long" in rules_of(report)) is warned
    assert report.max_output_tokens == -(-chars // 4)


def test_validate_jsonl_missing_instructions_reports_lines_and_share() -> None:
    records = good(120)
    records[4] = {"input_text": "Is the sky blue?", "output_text": "yes"}
    records[5] = {"input_text": "Which planet is largest?", "output_text": "Jupiter"}
    report = run(records).report
    result = report.result_for("missing_instructions")
    assert result is not None and [f.line for f in result.findings] == [5, 6]
    assert result.note is not None and "instructions: 2 of 120 (1.7%)" in result.note
    assert '"Is the sky blue?"' in result.findings[0].message


def test_validate_jsonl_instructions_without_markers_pass() -> None:
    records = [
        {"input_text": f"Translate to French: cat number {i}", "output_text": "chat"}
        for i in range(120)
    ]
    records[0] = {"input_text": "Please classify this review as positive or negative. Great!"}
    records[0]["output_text"] = "positive"
    assert "missing_instructions" not in rules_of(run(records).report)


def test_validate_jsonl_inconsistent_prompt_format_flags_missing_and_reordered() -> None:
    records = good(120)
    records[9] = {
        "input_text": "context: Arithmetic. question: What is 1 plus 1?",
        "output_text": "2",
    }
    records[19] = {"input_text": "question: What is 2 plus 2?", "output_text": "4"}
    result = run(records).report.result_for("inconsistent_prompt_format")
    assert result is not None and result.count == 2
    first, second = result.findings
    assert first.line == 10 and "order context: → question:" in first.message
    assert second.line == 20 and "lacks context:" in second.message
    assert result.note is not None and "majority format question: → context:" in result.note


def test_validate_jsonl_consistent_format_with_extra_markers_passes() -> None:
    records = good(120)
    records[3] = {
        "input_text": "question: What is 4 plus 4? context: Drill. Note: show work.",
        "output_text": "8",
    }
    assert "inconsistent_prompt_format" not in rules_of(run(records).report)


def test_validate_jsonl_findings_are_capped_but_counted() -> None:
    records = good(120)
    for index in range(30):
        records[index] = {"input_text": 7, "output_text": "x"}
    report = run(records, max_findings_per_rule=5).report
    result = report.result_for("input_text_not_string")
    assert result is not None
    assert (result.count, len(result.findings), result.omitted) == (30, 5, 25)
    assert report.error_count == 30


# --- overlap --------------------------------------------------------------------------------------


def test_add_overlap_findings_warns_with_training_lines() -> None:
    train = run(good(120))
    evaluation = run([example(i) for i in (5, 50, 500, 501, 502, 503, 504, 505, 506, 507)])
    add_overlap_findings(train, evaluation.input_digests, eval_source="datasets/t.eval.jsonl")
    result = train.report.result_for("train_eval_overlap")
    assert result is not None and result.count == 2
    assert [f.line for f in result.findings] == [5, 50]
    assert "datasets/t.eval.jsonl" in result.findings[0].message
    assert train.report.valid


def test_add_overlap_findings_without_overlap_adds_nothing() -> None:
    train = run(good(120))
    evaluation = run([example(i) for i in range(500, 510)])
    add_overlap_findings(train, evaluation.input_digests, eval_source="datasets/t.eval.jsonl")
    assert train.report.result_for("train_eval_overlap") is None
