"""Validate a JSON Lines dataset (training or eval set) in one streaming pass.

Every check is cheap per line (the costs that scale with the text are one UTF-8 decode, one
``json.loads``, one SHA-256 pass over the file and one digest of each input and output), and all
state kept across lines is bounded: counters, the first ``max_findings_per_rule`` findings of each
rule, and digest maps capped at :data:`MAX_TRACKED_DIGESTS` entries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from distillery import facts
from distillery._text import describe_json_value, preview
from distillery.validation import _rules as rules
from distillery.validation._lines import LineReader, ReadableStream
from distillery.validation._names import DatasetKind
from distillery.validation._prompts import (
    format_signature,
    has_instructions,
    prompt_markers,
)
from distillery.validation._report import Finding, Labeling, ValidationReport
from distillery.validation._rules import Rule

logger = logging.getLogger(__name__)

#: Digest maps (duplicates, train/eval overlap) stop growing here: a valid dataset has at most
#: 10,000 examples, so only an already-invalid file can reach it.
MAX_TRACKED_DIGESTS = 50_000
#: Distinct prompt-format signatures tracked; examples beyond are left out of the format check.
MAX_TRACKED_SIGNATURES = 10_000
#: Distinct unknown field names tracked.
MAX_TRACKED_FIELDS = 1_000

_UTF8_BOM = b"\xef\xbb\xbf"
_KNOWN_FIELDS = frozenset({"input_text", "output_text"})
#: The sets models are judged on: labeled, with the eval set's size limits.
_JUDGED_SETS = frozenset({DatasetKind.EVAL, DatasetKind.GOLDEN})
_MISSING: Any = object()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


#: Python's json accepts NaN and Infinity; JSON (and the service) does not.
_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def text_digest(text: str) -> bytes:
    """The compact digest used to compare examples: 16 bytes of SHA-256 over the trimmed text.

    Surrounding whitespace is ignored; everything else (case, inner spacing) counts. The text is
    hashed in the narrowest fixed-width encoding that holds it — Latin-1 when every character is
    below U+0100 (ASCII included), UTF-16-LE otherwise — behind a tag byte that keeps the two
    apart. Equal strings always take the same path, so equal texts get equal digests, and both
    encodings are near-copies of CPython's own string storage where UTF-8 would be a
    per-character conversion. SHA-256 rather than BLAKE2 because CPUs with SHA extensions hash it
    about twice as fast. Raises nothing.
    """
    text = text.strip()
    try:
        encoded = text.encode("latin-1")
        digest = hashlib.sha256(b"l")
    except UnicodeEncodeError:
        encoded = text.encode("utf-16-le", "surrogatepass")
        digest = hashlib.sha256(b"u")
    digest.update(encoded)
    return digest.digest()[:16]


@dataclass
class JsonlValidation:
    """The outcome of :func:`validate_jsonl`."""

    report: ValidationReport
    #: True when every example is labeled, False when none is, None when mixed or empty.
    labeled: bool | None
    #: Digest of each distinct input (see :func:`text_digest`) → the first line it is on.
    input_lines: dict[bytes, int] = field(default_factory=dict, repr=False)
    input_digests: frozenset[bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.input_digests = frozenset(self.input_lines)


class _Tally:
    """Occurrences of one rule: the total and the first few findings."""

    __slots__ = ("count", "findings")

    def __init__(self) -> None:
        self.count = 0
        self.findings: list[Finding] = []


class _LineTally:
    """A count and the first few line numbers of something seen on many lines."""

    __slots__ = ("count", "lines")

    def __init__(self) -> None:
        self.count = 0
        self.lines: list[int] = []


class _JsonlChecker:
    """The per-line checks and the state they keep; :meth:`finish` builds the report."""

    def __init__(self, kind: DatasetKind, max_findings: int) -> None:
        self.kind = kind
        self.max_findings = max_findings
        self.tallies: dict[Rule, _Tally] = {}
        self.examples = 0
        self.first_line_over_limit: int | None = None
        self.blank_lines = 0
        self.labeled = _LineTally()
        self.unlabeled = _LineTally()
        self.crlf = _LineTally()
        self.unknown_fields: dict[str, _LineTally] = {}
        self.max_input_tokens = 0
        self.max_output_tokens = 0
        self.input_lines: dict[bytes, int] = {}
        self.example_lines: dict[tuple[bytes, bytes | None], int] = {}
        self.signatures: dict[tuple[str, ...], _LineTally] = {}
        self.inputs_checked = 0
        self.notes: dict[Rule, str] = {}

    # --- bookkeeping ------------------------------------------------------------------------------

    def add(self, rule: Rule, line: int | None, field: str | None, message: str) -> None:
        tally = self.tallies.get(rule)
        if tally is None:
            tally = self.tallies[rule] = _Tally()
        tally.count += 1
        if len(tally.findings) < self.max_findings:
            tally.findings.append(Finding(line=line, field=field, message=message))

    def warn_few_unlabeled(self, examples: int) -> None:
        """Warn that an unlabeled set's ``examples`` are too few for the teacher's labels to cover
        the task; each format's checker decides when it applies."""
        self.add(
            rules.FEW_UNLABELED_EXAMPLES,
            None,
            None,
            f"the dataset has {examples:,} unlabeled examples; more than "
            f"{facts.RECOMMENDED_MIN_UNLABELED:,} are recommended so the teacher's labels "
            "cover the task",
        )

    def _count_line(self, tally: _LineTally, line: int) -> None:
        tally.count += 1
        if len(tally.lines) < self.max_findings:
            tally.lines.append(line)

    # --- per line ---------------------------------------------------------------------------------

    def check_line(self, number: int, data: bytes | None, length: int, offset: int) -> None:
        """Check line ``number`` (1-based); ``data`` is ``None`` for a line over the cap."""
        if data is None:
            self._count_example(number)
            self.add(
                rules.LINE_TOO_LONG,
                number,
                None,
                f"the line is {length:,} bytes, over the {rules.MAX_LINE_BYTES:,}-byte cap; "
                "it was skipped without being parsed",
            )
            return
        skipped = 0
        if number == 1 and data.startswith(_UTF8_BOM):
            self.add(
                rules.UTF8_BOM,
                1,
                None,
                "the file starts with the bytes EF BB BF (a UTF-8 byte order mark); "
                "save it as UTF-8 without BOM",
            )
            data = data[len(_UTF8_BOM) :]
            skipped = len(_UTF8_BOM)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._count_example(number)
            position = exc.start + skipped
            bad = data[exc.start : exc.end].hex(" ").upper()
            self.add(
                rules.INVALID_UTF8,
                number,
                None,
                f"invalid UTF-8 at byte offset {position:,} of the line "
                f"(offset {offset + position:,} in the file): bytes {bad} ({exc.reason})",
            )
            return
        if not text or text.isspace():
            self.blank_lines += 1
            what = "empty" if not text else "only whitespace"
            self.add(rules.BLANK_LINE, number, None, f"the line is {what}")
            return
        self._count_example(number)
        if text[-1] == "\r":
            self._count_line(self.crlf, number)
        try:
            example = _STRICT_JSON.decode(text)
        except json.JSONDecodeError as exc:
            if text[0] == "\ufeff":
                message = "the line starts with a byte order mark (U+FEFF), which JSON forbids"
            else:
                message = f"{exc.msg} at column {exc.colno:,}"
            self.add(rules.INVALID_JSON, number, None, message)
            return
        except (ValueError, RecursionError) as exc:
            # Integers beyond Python's digit limit, or nesting deeper than the parser's stack.
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            self.add(rules.INVALID_JSON, number, None, f"the JSON cannot be read: {reason}")
            return
        if type(example) is not dict:
            self.add(
                rules.NOT_AN_OBJECT,
                number,
                None,
                f"the line is {describe_json_value(example)}, expected an object "
                '{"input_text": ..., "output_text": ...}',
            )
            return
        self._check_example(number, example)

    def _count_example(self, number: int) -> None:
        self.examples += 1
        if self.examples == facts.MAX_DATASET_EXAMPLES + 1:
            self.first_line_over_limit = number

    def _check_example(self, number: int, example: dict[str, Any]) -> None:
        is_labeled = "output_text" in example
        self._count_line(self.labeled if is_labeled else self.unlabeled, number)
        if len(example) > ("input_text" in example) + is_labeled:
            for name in example:
                if name not in _KNOWN_FIELDS:
                    self._note_unknown_field(name, number)
        input_text = self._checked_input(number, example)
        output_text = self._checked_output(number, example["output_text"]) if is_labeled else None
        if input_text is None:
            return
        self._check_prompt(number, input_text)
        if is_labeled and output_text is None:
            return  # A broken output cannot be compared.
        self._check_duplicate(number, input_text, output_text)

    def _checked_input(self, number: int, example: dict[str, Any]) -> str | None:
        """``input_text`` when it is a usable prompt; otherwise record why and return None."""
        input_text = example.get("input_text", _MISSING)
        if input_text is _MISSING:
            present = ", ".join(sorted(example)) or "none"
            if len(present) > 80:
                present = present[:79] + "…"
            self.add(
                rules.INPUT_TEXT_MISSING,
                number,
                "input_text",
                f"the example has no input_text (fields present: {present})",
            )
            return None
        if not isinstance(input_text, str):
            self.add(
                rules.INPUT_TEXT_NOT_STRING,
                number,
                "input_text",
                f"input_text is {describe_json_value(input_text)}, expected a non-empty string",
            )
            return None
        if not input_text or input_text.isspace():
            what = "an empty string" if not input_text else "only whitespace"
            self.add(
                rules.INPUT_TEXT_EMPTY,
                number,
                "input_text",
                f"input_text is {what}, expected the prompt",
            )
            return None
        tokens = -(-len(input_text) // rules.CHARS_PER_TOKEN)
        self.max_input_tokens = max(self.max_input_tokens, tokens)
        if tokens > facts.MAX_INPUT_TOKENS:
            self.add(
                rules.INPUT_TOO_LONG,
                number,
                "input_text",
                f"input_text is about {tokens:,} tokens ({len(input_text):,} characters), "
                f"over the {facts.MAX_INPUT_TOKENS:,}-token limit; the service will truncate it",
            )
        return input_text

    def _checked_output(self, number: int, output_text: Any) -> str | None:
        """``output_text`` when it is a string; otherwise record why and return None."""
        if not isinstance(output_text, str):
            self.add(
                rules.OUTPUT_TEXT_NOT_STRING,
                number,
                "output_text",
                f"output_text is {describe_json_value(output_text)}, expected a string",
            )
            return None
        tokens = -(-len(output_text) // rules.CHARS_PER_TOKEN)
        self.max_output_tokens = max(self.max_output_tokens, tokens)
        if tokens > facts.MAX_OUTPUT_TOKENS:
            self.add(
                rules.OUTPUT_TOO_LONG,
                number,
                "output_text",
                f"output_text is about {tokens:,} tokens ({len(output_text):,} characters), "
                f"over the {facts.MAX_OUTPUT_TOKENS:,}-token limit; the service will truncate it",
            )
        return output_text

    def _check_duplicate(self, number: int, input_text: str, output_text: str | None) -> None:
        """Remember the example's digests; warn when an earlier line had the same example."""
        input_digest = text_digest(input_text)
        if len(self.input_lines) < MAX_TRACKED_DIGESTS:
            self.input_lines.setdefault(input_digest, number)
        key = (input_digest, None if output_text is None else text_digest(output_text))
        first = self.example_lines.get(key)
        if first is not None:
            same = "input_text" if output_text is None else "input_text and output_text"
            self.add(
                rules.DUPLICATE_EXAMPLES, number, None, f"duplicates line {first:,} (same {same})"
            )
        elif len(self.example_lines) < MAX_TRACKED_DIGESTS:
            self.example_lines[key] = number

    def _note_unknown_field(self, name: str, number: int) -> None:
        tally = self.unknown_fields.get(name)
        if tally is None:
            if len(self.unknown_fields) >= MAX_TRACKED_FIELDS:
                return
            tally = self.unknown_fields[name] = _LineTally()
        self._count_line(tally, number)

    def _check_prompt(self, number: int, text: str) -> None:
        self.inputs_checked += 1
        markers = prompt_markers(text)
        tally = self.signatures.get(markers)
        if tally is None and len(self.signatures) < MAX_TRACKED_SIGNATURES:
            tally = self.signatures[markers] = _LineTally()
        if tally is not None:
            self._count_line(tally, number)
        if not has_instructions(text, markers):
            self.add(
                rules.MISSING_INSTRUCTIONS,
                number,
                "input_text",
                "no marker such as 'question:' or 'Text:' and no instruction such as "
                f"'Classify the following text ...': the input starts {preview(text)}",
            )

    # --- end of file ------------------------------------------------------------------------------

    def finish(self, report: ValidationReport) -> Labeling:
        """Add the whole-file findings, then every tally, to ``report``; return the labeling."""
        labeled, unlabeled = self.labeled.count, self.unlabeled.count
        labeling: Labeling
        if labeled and unlabeled:
            labeling = "mixed"
        elif labeled:
            labeling = "labeled"
        elif unlabeled:
            labeling = "unlabeled"
        else:
            labeling = "empty"
        self._check_size(labeling)
        self._check_labeling(labeling)
        self._summarise_unknown_fields()
        self._summarise_crlf()
        self._summarise_instructions()
        self._summarise_prompt_formats()
        for rule in rules.JSONL_RULES:
            tally = self.tallies.get(rule)
            if tally is not None:
                report.add(rule, *tally.findings, count=tally.count, note=self.notes.get(rule))
        return labeling

    def _check_size(self, labeling: Labeling) -> None:
        examples = self.examples
        if examples == 0:
            found = f" (only {self.blank_lines:,} blank lines)" if self.blank_lines else ""
            self.add(rules.DATASET_EMPTY, None, None, f"the file holds no examples{found}")
            return
        limit = facts.MAX_DATASET_EXAMPLES
        if examples > limit:
            self.add(
                rules.TOO_MANY_EXAMPLES,
                self.first_line_over_limit,
                None,
                f"the dataset has {examples:,} examples, {examples - limit:,} over the limit of "
                f"{limit:,} (this line holds example {limit + 1:,})",
            )
        if self.kind in _JUDGED_SETS:
            if examples < facts.EVAL_MIN_EXAMPLES:
                self.add(
                    rules.EVAL_TOO_FEW_EXAMPLES,
                    None,
                    None,
                    f"the {self.kind.value} set has {examples:,} examples; "
                    f"it needs {facts.EVAL_MIN_EXAMPLES} to {facts.EVAL_MAX_EXAMPLES}",
                )
            elif examples > facts.EVAL_MAX_EXAMPLES:
                self.add(
                    rules.EVAL_TOO_MANY_EXAMPLES,
                    None,
                    None,
                    f"the {self.kind.value} set has {examples:,} examples; "
                    f"it needs {facts.EVAL_MIN_EXAMPLES} to {facts.EVAL_MAX_EXAMPLES}",
                )
            return
        if labeling == "labeled" and examples < facts.RECOMMENDED_MIN_LABELED:
            self.add(
                rules.FEW_LABELED_EXAMPLES,
                None,
                None,
                f"the dataset has {examples:,} labeled examples; a few hundred high-quality "
                "examples are recommended",
            )
        elif labeling == "unlabeled" and examples <= facts.RECOMMENDED_MIN_UNLABELED:
            self.warn_few_unlabeled(examples)

    def _check_labeling(self, labeling: Labeling) -> None:
        labeled, unlabeled = self.labeled, self.unlabeled
        if self.kind in _JUDGED_SETS:
            if unlabeled.count:
                self._add_lines(
                    rules.EVAL_UNLABELED,
                    unlabeled,
                    "output_text",
                    "the example has no output_text, which the eval metrics compare against",
                )
            return
        if labeling != "mixed":
            return
        if unlabeled.count <= labeled.count:
            self._add_lines(
                rules.MIXED_LABELING,
                unlabeled,
                "output_text",
                f"the example has no output_text, unlike the {labeled.count:,} labeled examples",
            )
        else:
            self._add_lines(
                rules.MIXED_LABELING,
                labeled,
                "output_text",
                f"the example has output_text, unlike the {unlabeled.count:,} unlabeled examples",
            )

    def _add_lines(self, rule: Rule, tally: _LineTally, field: str | None, message: str) -> None:
        """Record ``tally`` as findings of ``rule``: its first lines listed, all of it counted."""
        summary = self.tallies.setdefault(rule, _Tally())
        summary.count += tally.count
        summary.findings.extend(
            Finding(line=line, field=field, message=message)
            for line in tally.lines[: self.max_findings - len(summary.findings)]
        )

    def _summarise_unknown_fields(self) -> None:
        # One finding per distinct field, at its first line: the count is of distinct fields.
        for name, tally in self.unknown_fields.items():
            lines = "1 line" if tally.count == 1 else f"{tally.count:,} lines"
            self.add(
                rules.UNKNOWN_FIELDS,
                tally.lines[0],
                name,
                f"unknown field {preview(name)} (on {lines}) is ignored: "
                "only input_text and output_text are used",
            )

    def _summarise_crlf(self) -> None:
        if not self.crlf.count:
            return
        tally = self.tallies.setdefault(rules.CRLF_LINE_ENDINGS, _Tally())
        tally.count = self.crlf.count
        lines = "1 line ends" if self.crlf.count == 1 else f"{self.crlf.count:,} lines end"
        tally.findings.append(
            Finding(
                line=self.crlf.lines[0],
                message=f"{lines} in \\r\\n (Windows line endings), the first on this line; "
                "accepted, since \\r is JSON whitespace",
            )
        )

    def _summarise_instructions(self) -> None:
        tally = self.tallies.get(rules.MISSING_INSTRUCTIONS)
        if tally is None:
            return
        share = tally.count / self.inputs_checked
        self.notes[rules.MISSING_INSTRUCTIONS] = (
            f"examples without task instructions: {tally.count:,} of {self.inputs_checked:,} "
            f"({share:.1%}); include the instructions in every example, as production prompts will"
        )

    def _summarise_prompt_formats(self) -> None:
        """Flag examples whose markers differ from the majority format.

        A marker present in at least half of the examples belongs to the dataset's format; its
        order is the most common order among examples that have all of them. An example that
        lacks one of them, or has them in another order, is flagged; extra markers are fine.
        """
        total = sum(tally.count for tally in self.signatures.values())
        if not total:
            return
        frequency: Counter[str] = Counter()
        for markers, tally in self.signatures.items():
            for marker in markers:
                frequency[marker] += tally.count
        majority = {marker for marker, seen in frequency.items() if seen * 2 >= total}
        if not majority:
            return
        orders: Counter[tuple[str, ...]] = Counter()
        for markers, tally in self.signatures.items():
            projected = tuple(marker for marker in markers if marker in majority)
            if len(projected) == len(majority):
                orders[projected] += tally.count
        if orders:
            expected = orders.most_common(1)[0][0]
        else:
            expected = tuple(sorted(majority, key=lambda marker: (-frequency[marker], marker)))
        shown = format_signature(expected)
        flagged: list[tuple[int, str]] = []
        differing = 0
        for markers, tally in self.signatures.items():
            projected = tuple(marker for marker in markers if marker in majority)
            if projected == expected:
                continue
            differing += tally.count
            missing = [marker for marker in expected if marker not in projected]
            if missing:
                message = (
                    f"lacks {', '.join(f'{marker}:' for marker in missing)} of the majority "
                    f"format {shown}"
                )
            else:
                message = (
                    f"has the markers in the order {format_signature(projected)}, not the "
                    f"majority format {shown}"
                )
            flagged.extend((line, message) for line in tally.lines)
        if not differing:
            return
        flagged.sort()
        result = self.tallies.setdefault(rules.INCONSISTENT_PROMPT_FORMAT, _Tally())
        result.count = differing
        result.findings = [
            Finding(line=line, field="input_text", message=message)
            for line, message in flagged[: self.max_findings]
        ]
        self.notes[rules.INCONSISTENT_PROMPT_FORMAT] = (
            f"majority format {shown}; {differing:,} of {total:,} examples differ: production "
            "prompts must match the training format"
        )


def validate_jsonl(
    stream: ReadableStream,
    *,
    kind: DatasetKind,
    source: str,
    max_findings_per_rule: int = 20,
) -> JsonlValidation:
    """Validate the JSON Lines dataset read from binary ``stream``, streaming it once.

    ``kind`` is TRAINING or EVAL (an eval set has its own size and labeling rules); ``source``
    names the file in the report. Only ``stream.read(n)`` is called, and memory is bounded by the
    longest line up to the 8 MiB cap: a longer line is reported and skipped without buffering.

    Raises:
        ValueError: ``kind`` is CONFIG (use :func:`validate_config`).
        Exception: whatever ``stream.read`` raises (e.g. a storage error) propagates unchanged.
    """
    if kind is DatasetKind.CONFIG:
        raise ValueError("a config sidecar is validated with validate_config, not validate_jsonl")
    checker = _JsonlChecker(kind, max_findings_per_rule)
    reader = LineReader(stream, max_line_bytes=rules.MAX_LINE_BYTES)
    with contextlib.closing(reader.lines()) as lines:
        for number, line in enumerate(lines, start=1):
            checker.check_line(number, line.data, line.length, line.offset)
    report = ValidationReport(
        source=source,
        kind=kind,
        size_bytes=reader.size,
        sha256=reader.sha256,
        max_findings_per_rule=max_findings_per_rule,
    )
    labeling = checker.finish(report)
    report.labeling = labeling
    report.examples = checker.examples
    report.labeled_examples = checker.labeled.count
    report.unlabeled_examples = checker.unlabeled.count
    report.max_input_tokens = checker.max_input_tokens
    report.max_output_tokens = checker.max_output_tokens
    logger.debug(
        "validated %s: %s examples, %s errors, %s warnings",
        source,
        report.examples,
        report.error_count,
        report.warning_count,
    )
    labeled = {"labeled": True, "unlabeled": False}.get(labeling)
    return JsonlValidation(report=report, labeled=labeled, input_lines=checker.input_lines)


def add_overlap_findings(
    train: JsonlValidation, eval_digests: frozenset[bytes], *, eval_source: str
) -> None:
    """Warn in ``train.report`` about training inputs that also appear in the eval set.

    ``eval_digests`` is the eval set's :attr:`JsonlValidation.input_digests`. The warning counts
    the distinct shared inputs and lists the first training line of each (up to the report's
    cap). Adds nothing when there is no overlap. Raises nothing.
    """
    shared_lines = sorted(
        line for digest in eval_digests if (line := train.input_lines.get(digest)) is not None
    )
    if not shared_lines:
        return
    report = train.report
    findings = [
        Finding(
            line=line,
            field="input_text",
            message=f"this input_text also appears in the eval set {eval_source}",
        )
        for line in shared_lines[: report.max_findings_per_rule]
    ]
    report.add(
        rules.TRAIN_EVAL_OVERLAP,
        *findings,
        count=len(shared_lines),
        note=(
            f"{len(shared_lines):,} distinct training inputs also appear in the eval set "
            f"{eval_source}; remove them from one of the two"
        ),
    )
