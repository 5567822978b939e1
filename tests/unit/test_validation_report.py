"""The report model: totals, adding findings afterwards, JSON round trip and the text form."""

from __future__ import annotations

import io
import json

from distillery.validation import (
    DatasetKind,
    Finding,
    ValidationReport,
    render_text,
    validate_jsonl,
)
from distillery.validation._rules import BLANK_LINE, CRLF_LINE_ENDINGS


def sample_report() -> ValidationReport:
    lines = [{"input_text": 5, "output_text": "x"}] * 4 + [
        {"input_text": "Is it?", "output_text": "y"}
    ]
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    return validate_jsonl(
        io.BytesIO(data),
        kind=DatasetKind.TRAINING,
        source="datasets/s.jsonl",
        max_findings_per_rule=2,
    ).report


def test_validation_report_totals_include_unlisted_findings() -> None:
    report = sample_report()
    assert not report.valid
    result = report.result_for("input_text_not_string")
    assert result is not None and (result.count, len(result.findings), result.omitted) == (4, 2, 2)
    assert report.error_count == 4
    assert report.warning_count == sum(r.count for r in report.warnings) > 0


def test_validation_report_add_merges_and_respects_the_cap() -> None:
    report = ValidationReport(source="s", kind=DatasetKind.TRAINING, max_findings_per_rule=2)
    assert report.valid
    report.add(BLANK_LINE, Finding(line=1, message="a"), Finding(line=2, message="b"))
    report.add(BLANK_LINE, Finding(line=3, message="c"))
    result = report.result_for("blank_line")
    assert result is not None and result.count == 3 and [f.line for f in result.findings] == [1, 2]
    assert not report.valid and report.error_count == 3
    report.add(CRLF_LINE_ENDINGS, Finding(line=1, message="crlf"), count=40)
    assert report.warning_count == 40 and len(report.warnings) == 1


def test_validation_report_add_error_makes_a_valid_report_invalid() -> None:
    report = ValidationReport(source="datasets/x.jsonl", kind=DatasetKind.TRAINING)
    report.add_error(
        "eval_set_invalid",
        "the eval set that goes with this dataset must be valid",
        "the eval set datasets/x.eval.jsonl is invalid",
    )
    assert not report.valid and report.errors[0].severity == "error"
    report.add_warning("custom_note", "a custom warning", "watch out", line=3, field="input_text")
    assert report.warnings[0].findings[0].location() == "line 3, field input_text"


def test_validation_report_json_round_trip() -> None:
    report = sample_report()
    data = report.to_json_dict()
    text = json.dumps(data)
    assert data["valid"] is False and data["error_count"] == 4
    assert data["errors"][0]["omitted"] == 2 and data["kind"] == "training"
    again = ValidationReport.from_json_dict(json.loads(text))
    assert again == report
    assert again.to_json_dict() == data


def test_render_text_shows_verdict_figures_findings_and_more() -> None:
    text = render_text(sample_report())
    lines = text.splitlines()
    assert lines[0].startswith("INVALID: datasets/s.jsonl (training) — 4 errors, ")
    assert "  examples: 5 (5 labeled, 0 unlabeled; labeling: labeled)" in lines
    assert "characters / 4" in text
    assert "ERROR input_text_not_string (4 occurrences): input_text must be a string" in lines
    assert (
        "  line 1, field input_text [input_text_not_string]: input_text is a number (5), "
        "expected a non-empty string" in lines
    )
    assert "  2 listed below, … and 2 more" in lines
    assert any(line.startswith("WARNING ") for line in lines)


def test_render_text_valid_report_says_valid() -> None:
    report = ValidationReport(source="c.config.json", kind=DatasetKind.CONFIG, sha256="ab")
    text = render_text(report)
    assert text.startswith("VALID: c.config.json (config) — 0 errors, 0 warnings\n")
    assert "examples" not in text
