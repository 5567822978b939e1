"""The validation report: what was checked, what was found, and whether the file may be used.

A report lists every rule that found something, with at most ``max_findings_per_rule`` findings
each; ``count`` always holds the total, so a report stays small for a 10,000-line file full of
mistakes while still saying how many there were.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from distillery.validation._names import DatasetKind
from distillery.validation._rules import TOKEN_ESTIMATE_METHOD, Rule, Severity

Labeling = Literal["labeled", "unlabeled", "mixed", "empty"]


class Finding(BaseModel):
    """One occurrence of a rule being broken, as specific as the check can make it."""

    model_config = ConfigDict(frozen=True)

    #: 1-based line number, when the finding is about one line.
    line: int | None = None
    #: The JSON field or config key concerned, when there is one.
    field: str | None = None
    message: str

    def location(self) -> str:
        """``line 12, field input_text`` (or whichever parts are known; empty when none)."""
        parts = []
        if self.line is not None:
            parts.append(f"line {self.line:,}")
        if self.field is not None:
            parts.append(f"field {self.field}")
        return ", ".join(parts)


class RuleResult(BaseModel):
    """Everything one rule found in one file."""

    rule: str
    severity: Severity
    summary: str
    #: Total occurrences, including those not listed in ``findings``.
    count: int = 0
    findings: list[Finding] = Field(default_factory=list)
    #: Context for the rule as a whole (a share, a majority format), when useful.
    note: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def omitted(self) -> int:
        """Occurrences counted but not listed."""
        return max(0, self.count - len(self.findings))


class ValidationReport(BaseModel):
    """The verdict on one dataset or config file, and the figures behind it."""

    source: str
    kind: DatasetKind
    #: Whether the lines that are JSON objects have output_text: all, none or some ("empty" when
    #: no line is an object). ``None`` for a config sidecar.
    labeling: Labeling | None = None
    #: Non-blank lines: each is meant to be one example, valid or not.
    examples: int = 0
    labeled_examples: int = 0
    unlabeled_examples: int = 0
    size_bytes: int = 0
    #: SHA-256 of the exact bytes validated (hex).
    sha256: str = ""
    token_estimate: str = TOKEN_ESTIMATE_METHOD
    max_input_tokens: int = 0
    max_output_tokens: int = 0
    max_findings_per_rule: int = 20
    errors: list[RuleResult] = Field(default_factory=list)
    warnings: list[RuleResult] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def valid(self) -> bool:
        """True when no rule of severity ``error`` found anything."""
        return not any(result.count for result in self.errors)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error_count(self) -> int:
        """Total error occurrences, listed or not."""
        return sum(result.count for result in self.errors)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def warning_count(self) -> int:
        """Total warning occurrences, listed or not."""
        return sum(result.count for result in self.warnings)

    def result_for(self, rule: str) -> RuleResult | None:
        """The result of rule code ``rule``, or ``None`` when it found nothing."""
        for result in (*self.errors, *self.warnings):
            if result.rule == rule:
                return result
        return None

    def add(
        self,
        rule: Rule,
        *findings: Finding,
        count: int | None = None,
        note: str | None = None,
    ) -> RuleResult:
        """Record ``findings`` of ``rule`` (merged into its result if it already has one).

        ``count`` is how many occurrences the findings stand for (default: one each, and at least
        one); findings beyond ``max_findings_per_rule`` are counted but not listed. Raises nothing.
        """
        result = self.result_for(rule.code)
        if result is None:
            result = RuleResult(rule=rule.code, severity=rule.severity, summary=rule.summary)
            (self.errors if rule.severity == "error" else self.warnings).append(result)
        room = max(0, self.max_findings_per_rule - len(result.findings))
        result.findings.extend(findings[:room])
        result.count += count if count is not None else max(1, len(findings))
        if note is not None:
            result.note = note
        return result

    def add_error(
        self,
        code: str,
        summary: str,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
    ) -> RuleResult:
        """Record one error found after validation (e.g. "the eval set … is invalid")."""
        return self.add(
            Rule(code, "error", summary), Finding(line=line, field=field, message=message)
        )

    def add_warning(
        self,
        code: str,
        summary: str,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
    ) -> RuleResult:
        """Record one warning found after validation."""
        return self.add(
            Rule(code, "warning", summary), Finding(line=line, field=field, message=message)
        )

    def to_json_dict(self) -> dict[str, Any]:
        """The report as JSON-safe data (computed totals and the verdict included)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> ValidationReport:
        """Rebuild a report from :meth:`to_json_dict` output.

        Raises:
            pydantic.ValidationError: ``data`` does not have the shape of a report.
        """
        return cls.model_validate(data)
