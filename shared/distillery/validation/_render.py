"""A validation report as readable text for a terminal."""

from __future__ import annotations

from collections.abc import Sequence

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
    if result.omitted and result.findings:
        lines.append(f"  {len(result.findings):,} listed below, … and {result.omitted:,} more")
    elif result.omitted:
        lines.append(f"  none listed ({result.omitted:,} in all)")
    return lines


def _in_line_order(results: Sequence[RuleResult]) -> list[str]:
    """Every listed finding of ``results``, each with its rule code, sorted by line.

    Findings about no line (the file as a whole, a config key) come first: there are few of them
    and they would be lost below thousands of lines. Ties keep the report's order (rule by rule).
    """
    listed = [(finding, result.rule) for result in results for finding in result.findings]
    listed.sort(key=lambda item: -1 if item[0].line is None else item[0].line)
    lines = []
    for finding, rule in listed:
        where = finding.location()
        lines.append(
            f"  {where} [{rule}]: {finding.message}" if where else f"  [{rule}]: {finding.message}"
        )
    return lines


def render_text(report: ValidationReport) -> str:
    """The report as multi-line text: verdict and figures; each rule that found something (code,
    count, summary); then the errors' findings, and the warnings', each in line order with their
    rule code (findings without a line first).

    Raises nothing.
    """
    lines = [_verdict(report), *_figures(report)]
    results = (*report.errors, *report.warnings)
    if results:
        lines.append("")
    for result in results:
        lines.extend(_rule(result))
    for title, group in (("Errors", report.errors), ("Warnings", report.warnings)):
        findings = _in_line_order(group)
        if findings:
            by_line = any(
                finding.line is not None for result in group for finding in result.findings
            )
            lines.extend(["", f"{title}, by line:" if by_line else f"{title}:", *findings])
    return "\n".join(lines) + "\n"
