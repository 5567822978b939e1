"""Datasets for Gemini supervised tuning: the contents format, conversion, and the validated copy.

Every rule of ``GEMINI_RULES`` failing with the line and field it names, the conversion of
``input_text``/``output_text`` lines and its round trip, one format per file, the base model's
limits read from ``distillery.facts``, and the ``pipeline`` backend's copy and report being the
seed's, unchanged.
"""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillery import facts
from distillery.validation import (
    BACKENDS,
    GEMINI_RULES,
    ConversionError,
    DatasetKind,
    Finding,
    ValidatedCopy,
    ValidationReport,
    convert_jsonl,
    to_contents,
    to_text,
    validate_jsonl,
    validated_copy,
)

SOURCE = "datasets/t.jsonl"


def turn(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"text": text}]}


def chat(i: int, **extra: Any) -> dict[str, Any]:
    """A distinct, valid single-turn contents example."""
    record: dict[str, Any] = {
        "contents": [
            turn("user", f"question: What is {i} plus {i}? context: Arithmetic drill {i}."),
            turn("model", str(2 * i)),
        ]
    }
    record.update(extra)
    return record


def text_example(i: int, *, labeled: bool = True) -> dict[str, Any]:
    record = {"input_text": f"question: What is {i} plus {i}? context: Arithmetic drill {i}."}
    if labeled:
        record["output_text"] = str(2 * i)
    return record


def encode(records: list[Any]) -> bytes:
    lines = []
    for record in records:
        if isinstance(record, bytes):
            lines.append(record)
        elif isinstance(record, str):
            lines.append(record.encode())
        else:
            lines.append(json.dumps(record, ensure_ascii=False).encode())
    return b"".join(line + b"\n" for line in lines)


def copy_of(
    data: bytes | list[Any],
    *,
    backend: str = "gemini",
    kind: DatasetKind = DatasetKind.TRAINING,
    base_model: str | None = None,
) -> tuple[ValidatedCopy, bytes]:
    raw = data if isinstance(data, bytes) else encode(data)
    copy = validated_copy(
        io.BytesIO(raw), backend=backend, kind=kind, source=SOURCE, base_model=base_model
    )
    body = b"".join(copy)
    return copy, body


def report_of(data: bytes | list[Any], **kwargs: Any) -> ValidationReport:
    return copy_of(data, **kwargs)[0].validation.report


def findings(report: ValidationReport, rule: str) -> list[Finding]:
    result = report.result_for(rule)
    assert result is not None, f"{rule} found nothing: {report.to_json_dict()}"
    return result.findings


def located(report: ValidationReport, rule: str) -> list[tuple[int | None, str | None]]:
    return [(finding.line, finding.field) for finding in findings(report, rule)]


def good(count: int = 120) -> list[Any]:
    return [chat(i) for i in range(1, count + 1)]


def with_line(records: list[Any], line: int, record: Any) -> list[Any]:
    """``records`` with 1-based ``line`` replaced by ``record``."""
    changed = list(records)
    changed[line - 1] = record
    return changed


def small_model(monkeypatch: pytest.MonkeyPatch, **limits: int) -> str:
    """Give the default base model smaller limits (the facts are read at call time)."""
    model_id = facts.DEFAULT_GEMINI_BASE_MODEL
    changed = dataclasses.replace(facts.GEMINI_TUNING_MODELS[model_id], **limits)
    monkeypatch.setitem(facts.GEMINI_TUNING_MODELS, model_id, changed)
    return model_id


# --- a valid dataset ------------------------------------------------------------------------------


def test_validation_contents_good_dataset_has_no_findings_and_copies_itself() -> None:
    records = good()
    copy, body = copy_of(records)
    report = copy.validation.report
    assert report.valid and report.errors == [] and report.warnings == []
    assert (report.examples, report.labeled_examples, report.labeling) == (120, 120, "labeled")
    assert copy.validation.labeled is True
    assert [json.loads(line) for line in body.splitlines()] == records
    assert copy.size == len(body) and copy.dataset_tokens > 0
    assert report.max_input_tokens > 0 and report.max_output_tokens >= 1


def test_validation_contents_system_instruction_and_multi_turn_are_valid() -> None:
    record = {
        "systemInstruction": {"role": "system", "parts": [{"text": "Answer with a number."}]},
        "contents": [
            turn("user", "What is 1 plus 1?"),
            turn("model", "2"),
            turn("user", "And times 3?"),
            {"role": "model", "parts": [{"text": "6"}, {"text": "."}]},
        ],
    }
    copy, body = copy_of([record, *good(119)])
    assert copy.validation.report.valid, copy.validation.report.to_json_dict()
    assert json.loads(body.splitlines()[0]) == record


# --- every rule, with its line and field ----------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "rule", "where"),
    [
        (
            {"systemInstruction": {"parts": [{"text": "Be brief."}]}},
            "contents_missing",
            (3, "contents"),
        ),
        ({"contents": []}, "contents_invalid", (3, "contents")),
        ({"contents": "hello"}, "contents_invalid", (3, "contents")),
        ({"contents": ["hello", turn("model", "x")]}, "contents_turn_invalid", (3, "contents[0]")),
        (
            {"contents": [{"parts": [{"text": "q"}]}, turn("model", "a")]},
            "contents_turn_invalid",
            (3, "contents[0].role"),
        ),
        (
            {"contents": [turn("user", "q"), turn("assistant", "a")]},
            "contents_role_invalid",
            (3, "contents[1].role"),
        ),
        (
            {"contents": [turn("model", "a"), turn("user", "q")]},
            "contents_role_order",
            (3, "contents[0].role"),
        ),
        (
            {"contents": [turn("user", "q"), turn("user", "q2"), turn("model", "a")]},
            "contents_role_order",
            (3, "contents[1].role"),
        ),
        # One user turn is an unlabeled example: among labeled ones, the set is mixed.
        ({"contents": [turn("user", "q")]}, "output_text_required", (3, "contents")),
        (
            {"contents": [turn("user", "q"), turn("model", "a"), turn("user", "q2")]},
            "contents_role_order",
            (3, "contents[2].role"),
        ),
        (
            {"contents": [{"role": "user"}, turn("model", "a")]},
            "contents_parts_invalid",
            (3, "contents[0].parts"),
        ),
        (
            {"contents": [{"role": "user", "parts": []}, turn("model", "a")]},
            "contents_parts_invalid",
            (3, "contents[0].parts"),
        ),
        (
            {"contents": [turn("user", "q"), {"role": "model", "parts": ["a"]}]},
            "contents_parts_invalid",
            (3, "contents[1].parts[0]"),
        ),
        (
            {"contents": [turn("user", "q"), {"role": "model", "parts": [{"text": 7}]}]},
            "contents_parts_invalid",
            (3, "contents[1].parts[0].text"),
        ),
        (
            {"contents": [turn("user", "q"), turn("model", "  ")]},
            "contents_parts_invalid",
            (3, "contents[1].parts[0].text"),
        ),
        (
            {"systemInstruction": "Be brief.", "contents": [turn("user", "q"), turn("model", "a")]},
            "system_instruction_invalid",
            (3, "systemInstruction"),
        ),
        (
            {
                "systemInstruction": {"role": 1, "parts": [{"text": "Be brief."}]},
                "contents": [turn("user", "q"), turn("model", "a")],
            },
            "system_instruction_invalid",
            (3, "systemInstruction.role"),
        ),
        (
            {
                "systemInstruction": {"parts": []},
                "contents": [turn("user", "q"), turn("model", "a")],
            },
            "system_instruction_invalid",
            (3, "systemInstruction.parts"),
        ),
        (
            {"contents": [turn("user", "q"), turn("model", "a")], "metadata": {}},
            "contents_unknown_key",
            (3, "metadata"),
        ),
        (
            {"contents": [turn("user", "q") | {"name": "x"}, turn("model", "a")]},
            "contents_unknown_key",
            (3, "contents[0].name"),
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"fileData": {"fileUri": "gs://b/x.png"}}]},
                    turn("model", "a"),
                ]
            },
            "contents_unknown_key",
            (3, "contents[0].parts[0].fileData"),
        ),
        (
            {"systemInstruction": {"parts": [{"text": "x"}], "extra": 1}, "contents": []},
            "contents_unknown_key",
            (3, "systemInstruction.extra"),
        ),
    ],
)
def test_validation_contents_rule_names_line_and_field(
    record: dict[str, Any], rule: str, where: tuple[int, str]
) -> None:
    report = report_of(with_line(good(), 3, record))
    assert not report.valid
    assert where in located(report, rule)
    # The rest of the file is clean: only this line is at fault.
    lines = {f.line for r in report.errors for f in r.findings}
    assert lines == {3}


def test_validation_contents_file_part_reports_both_unknown_key_and_missing_text() -> None:
    record = {"contents": [{"role": "user", "parts": [{"fileData": {}}]}, turn("model", "a")]}
    report = report_of(with_line(good(), 2, record))
    assert located(report, "contents_parts_invalid") == [(2, "contents[0].parts[0]")]
    assert "only text parts are supported" in findings(report, "contents_parts_invalid")[0].message


def test_validation_contents_invalid_line_is_left_out_of_the_copy() -> None:
    records = with_line(good(), 2, {"contents": [turn("model", "a"), turn("user", "q")]})
    copy, body = copy_of(records)
    assert not copy.validation.report.valid
    assert len(body.splitlines()) == 119


# --- input_text/output_text lines for the gemini backend ------------------------------------------


def test_validation_contents_text_lines_are_converted_in_the_copy() -> None:
    records = [text_example(i) for i in range(1, 121)]
    raw = encode(records)
    copy, body = copy_of(raw)
    assert copy.validation.report.valid, copy.validation.report.to_json_dict()
    assert body == b"".join(convert_jsonl(io.BytesIO(raw)))
    first = json.loads(body.splitlines()[0])
    assert first == {
        "contents": [
            {"role": "user", "parts": [{"text": records[0]["input_text"]}]},
            {"role": "model", "parts": [{"text": "2"}]},
        ]
    }
    assert copy.sha256 != copy.validation.report.sha256  # The copy is not the input.


def test_validation_contents_unlabeled_line_cannot_be_converted() -> None:
    records = with_line([text_example(i) for i in range(1, 121)], 4, text_example(4, labeled=False))
    copy, body = copy_of(records)
    report = copy.validation.report
    assert located(report, "output_text_required") == [(4, "output_text")]
    assert "label it first" in findings(report, "output_text_required")[0].message
    # Under the gemini backend this is the one finding, not the seed's mixed_labeling too.
    assert report.result_for("mixed_labeling") is None
    assert len(body.splitlines()) == 119


def test_validation_contents_all_unlabeled_dataset_is_labeled_by_the_teacher() -> None:
    # Supervised tuning of an unlabeled set: the teacher labels it first, the copy is prompts.
    records = [text_example(i, labeled=False) for i in range(1, 11)]
    copy, body = copy_of(records)
    report = copy.validation.report
    assert report.valid, report.to_json_dict()
    assert report.labeling == "unlabeled"
    assert report.result_for("output_text_required") is None
    assert (
        "teacher model answer and explain every prompt"
        in findings(report, "teacher_labels")[0].message
    )
    lines = [json.loads(line) for line in body.splitlines()]
    assert len(lines) == 10
    assert lines[0] == {
        "contents": [{"role": "user", "parts": [{"text": records[0]["input_text"]}]}]
    }


def test_validation_contents_empty_output_text_is_an_error() -> None:
    report = report_of(
        with_line(
            [text_example(i) for i in range(1, 121)],
            5,
            {"input_text": "question: a", "output_text": ""},
        )
    )
    assert located(report, "output_text_empty") == [(5, "output_text")]


def test_validation_contents_seed_field_rules_still_apply_to_text_lines() -> None:
    records = [text_example(i) for i in range(1, 121)]
    report = report_of(with_line(records, 7, {"input_text": 3, "output_text": "x"}))
    assert located(report, "input_text_not_string") == [(7, "input_text")]


def test_validation_contents_palm_truncation_limits_do_not_apply_to_gemini() -> None:
    long_input = "question: " + "word " * (facts.MAX_INPUT_TOKENS * 2)
    records = with_line(
        [text_example(i) for i in range(1, 121)], 1, {"input_text": long_input, "output_text": "x"}
    )
    assert report_of(records).valid
    pipeline = report_of(records, backend="pipeline")
    assert pipeline.result_for("input_too_long") is not None


# --- one format a file ----------------------------------------------------------------------------


def test_validation_contents_mixed_formats_name_the_first_line_of_the_other_format() -> None:
    records = [text_example(i) for i in range(1, 121)]
    records = with_line(with_line(records, 3, chat(3)), 9, chat(9))
    report = report_of(records)
    assert not report.valid
    result = report.result_for("mixed_formats")
    assert result is not None and result.count == 2
    [finding] = result.findings
    assert finding.line == 3
    assert "contents format" in finding.message and "from line 1" in finding.message


def test_validation_contents_mixed_formats_from_a_contents_file() -> None:
    report = report_of(with_line(good(), 2, text_example(2)))
    [finding] = findings(report, "mixed_formats")
    assert finding.line == 2 and "input_text/output_text format" in finding.message


# --- the base model's limits, from facts ----------------------------------------------------------


def test_validation_contents_example_over_the_model_token_limit() -> None:
    limit = facts.GEMINI_TUNING_MODELS[facts.DEFAULT_GEMINI_BASE_MODEL].max_example_tokens
    long_answer = "x" * (limit * 4 - 3)  # With the question: over the limit by a few tokens.
    records = with_line(good(), 2, {"contents": [turn("user", "q?"), turn("model", long_answer)]})
    report = report_of(records)
    assert located(report, "example_too_long") == [(2, None)]
    assert f"{limit:,}-token limit" in findings(report, "example_too_long")[0].message
    under = with_line(good(), 2, {"contents": [turn("user", "q"), turn("model", "x" * 40)]})
    assert report_of(under).valid


def test_validation_contents_token_limit_counts_input_and_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small_model(monkeypatch, max_example_tokens=10)
    over = {"contents": [turn("user", "a" * 24), turn("model", "b" * 20)]}  # 6 + 5 tokens
    fits = {"contents": [turn("user", "a" * 20), turn("model", "b" * 20)]}  # 5 + 5 tokens
    assert located(report_of([fits, over, fits]), "example_too_long") == [(2, None)]


def test_validation_contents_too_many_training_examples_for_the_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = small_model(monkeypatch, max_training_examples=5)
    report = report_of(good(7), base_model=model)
    [finding] = findings(report, "too_many_examples_for_model")
    assert finding.line == 6 and "limit of 5" in finding.message
    assert report_of(good(5)).result_for("too_many_examples_for_model") is None


def test_validation_contents_too_many_validation_examples_for_the_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small_model(monkeypatch, max_validation_examples=3)
    report = report_of(good(4), kind=DatasetKind.EVAL)
    assert located(report, "eval_too_many_examples_for_model") == [(4, None)]
    # The seed's 10-to-250 eval size is the PaLM pipeline's, not Gemini's.
    assert report_of(good(3), kind=DatasetKind.EVAL).valid


def test_validation_contents_converted_copy_over_the_file_size_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small_model(monkeypatch, max_dataset_bytes=1_000)
    report = report_of(good())
    [finding] = findings(report, "dataset_too_large")
    assert finding.line is None and "1,000-byte limit" in finding.message


def test_validation_contents_few_examples_is_a_warning() -> None:
    report = report_of(good(5))
    assert report.valid
    assert located(report, "few_tuning_examples") == [(None, None)]
    assert report_of(good(facts.GEMINI_RECOMMENDED_MIN_EXAMPLES)).warnings == []


def test_validation_contents_each_base_model_is_accepted_and_others_are_not() -> None:
    for model_id in facts.GEMINI_TUNING_MODELS:
        assert report_of(good(), base_model=model_id).valid
    with pytest.raises(ValueError, match="text-bison@002"):
        validated_copy(
            io.BytesIO(b""),
            backend="gemini",
            kind=DatasetKind.TRAINING,
            source=SOURCE,
            base_model="text-bison@002",
        )


def test_validation_contents_eval_set_rules() -> None:
    unlabeled = [text_example(i, labeled=False) for i in range(1, 4)]
    report = report_of(unlabeled, kind=DatasetKind.EVAL)
    assert located(report, "eval_unlabeled")[0] == (1, "output_text")
    ends_with_user = [{"contents": [turn("user", "q")]}]
    report = report_of(ends_with_user, kind=DatasetKind.EVAL)
    assert located(report, "contents_role_order") == [(1, "contents[0].role")]


def test_validation_contents_duplicates_and_overlap_digests() -> None:
    records = with_line(good(), 5, chat(1))
    copy, _ = copy_of(records)
    report = copy.validation.report
    assert located(report, "duplicate_examples") == [(5, None)]
    # A single-turn contents prompt is keyed like the input_text it would convert from.
    contents_copy, _ = copy_of(good())
    text_copy, _ = copy_of([text_example(i) for i in range(1, 121)])
    assert contents_copy.validation.input_digests == text_copy.validation.input_digests


# --- the pipeline backend: the seed's behaviour, unchanged ---------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        encode([text_example(i) for i in range(1, 121)]),
        encode([text_example(i, labeled=i % 2 == 0) for i in range(1, 30)]),
        b"\xef\xbb\xbf" + encode([text_example(1)]) + b"\r\nnot json\n\n" + b"\xff\xfe\n",
        encode([chat(1), text_example(2)]) + b'{"input_text": "no newline at the end"}',
        b"",
    ],
)
def test_validation_contents_pipeline_copy_is_the_input_and_report_the_seeds(raw: bytes) -> None:
    copy, body = copy_of(raw, backend="pipeline")
    assert body == raw
    assert copy.sha256 == copy.validation.report.sha256 and copy.size == len(raw)
    seed = validate_jsonl(io.BytesIO(raw), kind=DatasetKind.TRAINING, source=SOURCE)
    assert copy.validation.report.to_json_dict() == seed.report.to_json_dict()
    assert copy.validation.labeled == seed.labeled
    assert copy.validation.input_digests == seed.input_digests


# --- the copy object ------------------------------------------------------------------------------


def test_validation_contents_copy_is_read_once_and_to_the_end() -> None:
    copy = validated_copy(
        io.BytesIO(encode(good(3))), backend="gemini", kind=DatasetKind.TRAINING, source=SOURCE
    )
    with pytest.raises(RuntimeError, match="not been read to the end"):
        _ = copy.validation
    lines = iter(copy)
    next(lines)
    with pytest.raises(RuntimeError, match="not been read to the end"):
        _ = copy.sha256
    with pytest.raises(RuntimeError, match="read once"):
        iter(copy)
    assert len(list(lines)) == 2
    assert copy.validation.report.examples == 3


def test_validation_contents_drain_returns_the_verdict() -> None:
    copy = validated_copy(
        io.BytesIO(encode(good(3))), backend="pipeline", kind=DatasetKind.EVAL, source=SOURCE
    )
    assert copy.drain().report.kind is DatasetKind.EVAL


def test_validation_contents_copy_rejects_unknown_backend_and_config() -> None:
    assert set(BACKENDS) == {"gemini", "pipeline"}
    with pytest.raises(ValueError, match="unknown backend 'vertex'"):
        validated_copy(io.BytesIO(b""), backend="vertex", kind=DatasetKind.TRAINING, source=SOURCE)
    with pytest.raises(ValueError, match="validate_config"):
        validated_copy(io.BytesIO(b""), backend="gemini", kind=DatasetKind.CONFIG, source=SOURCE)


def test_validation_contents_rule_codes_are_unique_and_new() -> None:
    from distillery.validation import CONFIG_RULES, JSONL_RULES

    codes = [rule.code for rule in GEMINI_RULES]
    seed = {rule.code for rule in JSONL_RULES + CONFIG_RULES}
    assert len(codes) == len(set(codes)) and not set(codes) & seed
    assert all(code.replace("_", "").isalnum() and code.islower() for code in codes)


# --- conversion -----------------------------------------------------------------------------------


def test_validation_contents_conversion_round_trip() -> None:
    example = {"input_text": "Classify: [a, b] Text: é ☃", "output_text": "a"}
    converted = to_contents(example)
    assert converted == {
        "contents": [
            {"role": "user", "parts": [{"text": example["input_text"]}]},
            {"role": "model", "parts": [{"text": "a"}]},
        ]
    }
    assert to_text(converted) == example
    assert example == {"input_text": "Classify: [a, b] Text: é ☃", "output_text": "a"}


def test_validation_contents_to_contents_drops_other_fields() -> None:
    converted = to_contents({"input_text": "q", "output_text": "a", "id": 7})
    assert set(converted) == {"contents"}


@pytest.mark.parametrize(
    ("example", "field", "message"),
    [
        ({"output_text": "a"}, "input_text", "no input_text"),
        ({"input_text": "q"}, "output_text", "cannot be converted"),
        ({"input_text": "q", "output_text": 3}, "output_text", "a number"),
        ({"input_text": " ", "output_text": "a"}, "input_text", "empty"),
    ],
)
def test_validation_contents_to_contents_refuses(
    example: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ConversionError, match=message) as caught:
        to_contents(example)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "example",
    [
        {"systemInstruction": {"parts": [{"text": "x"}]}, "contents": []},
        {"contents": [turn("user", "q"), turn("model", "a"), turn("user", "q")]},
        {"contents": [turn("model", "a"), turn("user", "q")]},
        {"contents": [turn("user", "q"), {"role": "model", "parts": [{"fileData": {}}]}]},
    ],
)
def test_validation_contents_to_text_refuses_what_has_no_text_form(example: dict[str, Any]) -> None:
    with pytest.raises(ConversionError):
        to_text(example)


def test_validation_contents_convert_jsonl_streams_and_names_the_bad_line() -> None:
    raw = encode([text_example(1), text_example(2)])
    out = list(convert_jsonl(io.BytesIO(raw)))
    assert [to_text(json.loads(line)) for line in out] == [text_example(1), text_example(2)]
    bad = encode([text_example(1), text_example(2, labeled=False)])
    with pytest.raises(ConversionError, match=r"line 2: .*cannot be converted") as caught:
        list(convert_jsonl(io.BytesIO(bad)))
    assert caught.value.line == 2
    for raw_line, expected in ((b"[1]", "an array"), (b"{", "not JSON"), (b"\xff", "UTF-8")):
        with pytest.raises(ConversionError, match=expected):
            list(convert_jsonl(io.BytesIO(encode([text_example(1)]) + raw_line + b"\n")))


def test_validation_contents_copy_escapes_lone_surrogates() -> None:
    raw = b'{"input_text": "question: \\ud800?", "output_text": "a"}\n'
    _, body = copy_of(raw)
    assert b"\\ud800" in body
    assert json.loads(body)["contents"][0]["parts"][0]["text"] == "question: \ud800?"


# --- property: never a traceback, every line finding names a line ---------------------------------

#: Rules about the dataset as a whole: their findings name no line.
DATASET_RULES = frozenset(
    {
        "dataset_empty",
        "few_tuning_examples",
        "dataset_too_large",
        "teacher_labels",
        "few_unlabeled_examples",
    }
)

_texts = st.text(max_size=12)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
    max_leaves=6,
)
_parts = st.lists(st.fixed_dictionaries({"text": _texts}) | _json_values, max_size=3) | _json_values
_turns = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "model", "system"]) | _json_values, "parts": _parts},
    optional={"extra": _json_values},
)
_examples = st.fixed_dictionaries(
    {"contents": st.lists(_turns | _json_values, max_size=4) | _json_values},
    optional={
        "systemInstruction": st.fixed_dictionaries({"parts": _parts}) | _json_values,
        "input_text": _texts,
        "output_text": _texts,
    },
)
_lines = st.lists(
    _examples.map(lambda e: json.dumps(e).encode())
    | st.binary(max_size=20)
    | st.sampled_from([b"", b"{}", b'{"input_text": "q", "output_text": "a"}']),
    max_size=8,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=_lines, eval_set=st.booleans(), final_newline=st.booleans())
def test_validation_contents_never_raises_and_findings_name_their_line(
    lines: list[bytes], eval_set: bool, final_newline: bool
) -> None:
    raw = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    kind = DatasetKind.EVAL if eval_set else DatasetKind.TRAINING
    copy, body = copy_of(raw, kind=kind)
    report = copy.validation.report
    line_count = raw.count(b"\n") + (0 if raw.endswith(b"\n") or not raw else 1)
    for result in (*report.errors, *report.warnings):
        assert result.count >= len(result.findings) >= 1
        for finding in result.findings:
            if result.rule in DATASET_RULES:
                assert finding.line is None, result.rule
            else:
                assert finding.line is not None and 1 <= finding.line <= line_count, result.rule
    # The copy is valid contents JSON Lines, one line per valid example.
    copied = body.splitlines()
    assert all(isinstance(json.loads(line)["contents"], list) for line in copied)
    if report.valid:
        assert len(copied) == report.examples
