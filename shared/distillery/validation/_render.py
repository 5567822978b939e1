"""A validation report as readable text for a terminal."""

from __future__ import annotations

from distillery.validation._names import DatasetKind
from distillery.validation._report import RuleResult, ValidationReport


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def _verdict(report: ValidationReport) -> str:
    verdict = "VALID" if report.valid else "INVALID"
    return (
        f"{verdict}: {report.source} ({report.kind.value}) — "
        f"{_plural(report.error_count, 'error')}, {_plural(report.warning_count, 'warning')}"
    )


def _figures(report: ValidationReport) -> list[str]:
    lines = [f"  size: {report.size_bytes:,} bytes, sha256 {report.sha256}"]
    if report.kind is DatasetKind.CONFIG:
        return lines
    lines.append(
        f"  examples: {report.examples:,} ({report.labeled_examples:,} labeled, "
        f"{report.unlabeled_examples:,} unlabeled; labeling: {report.labeling})"
    )
    lines.append(
        f"  longest input_text: ~{report.max_input_tokens:,} tokens; "
        f"longest output_text: ~{report.max_output_tokens:,} tokens"
    )
    lines.append(f"  {report.token_estimate}")
    return lines


def _rule(result: RuleResult) -> list[str]:
    label = "ERROR" if result.severity == "error" else "WARNING"
    lines = [f"{label} {result.rule} ({_plural(result.count, 'occurrence')}): {result.summary}"]
    if result.note:
        lines.append(f"  {result.note}")
    for finding in result.findings:
        where = finding.location()
        lines.append(f"  {where}: {finding.message}" if where else f"  {finding.message}")
    if result.omitted:
        lines.append(f"  … and {result.omitted:,} more")
    return lines


def render_text(report: ValidationReport) -> str:
    """The report as multi-line text: verdict, figures, then each rule with its findings.

    Raises nothing.
    """
    lines = [_verdict(report), *_figures(report)]
    for result in (*report.errors, *report.warnings):
        lines.append("")
        lines.extend(_rule(result))
    return "\n".join(lines) + "\n"
