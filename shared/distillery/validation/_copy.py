"""Validate a dataset for a backend and produce the copy its job trains on, in one streaming pass.

The ``pipeline`` backend (the seed's PaLM template) trains on the file as uploaded: its copy is
the input, byte for byte, and its report is exactly :func:`validate_jsonl`'s. The ``gemini``
backend (supervised tuning) trains on ``contents`` lines: its copy is every line converted
(``input_text``/``output_text``) or normalized (native ``contents``), one compact JSON object a
line, checked against the chosen base model's limits. In the gemini backend's distillation mode
(``tuning_mode="distillation"``) a training set's copy is prompts only: ``contents`` holding the
user turn of each example, since the teacher writes the responses (an eval set stays labeled:
the job validates on it, and the golden set is judged against its answers).

The copy is produced while the file is validated, so the caller can stream it to storage as it
comes; only once the iteration has finished is the verdict known, and a copy whose
:attr:`ValidatedCopy.validation` is invalid is incomplete and must be thrown away.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from typing import Literal, get_args

from distillery import facts
from distillery.validation import _gemini_rules as gemini
from distillery.validation import _rules as rules
from distillery.validation._contents import GeminiChecker
from distillery.validation._convert import dump_line
from distillery.validation._jsonl import JsonlValidation, _JsonlChecker
from distillery.validation._lines import LineReader, ReadableStream
from distillery.validation._names import DatasetKind
from distillery.validation._report import Finding, ValidationReport

logger = logging.getLogger(__name__)

#: The training backends a dataset can be validated for.
Backend = Literal["gemini", "pipeline"]
BACKENDS: tuple[str, ...] = get_args(Backend)


class ValidatedCopy:
    """Iterate over it to validate ``stream`` and receive the lines of the validated copy.

    Each item is one line of the copy, ``\\n`` included (but a pipeline copy's last line, when
    the input's has none). Read it once, to the end; then :attr:`validation` holds the verdict,
    and :attr:`sha256` and :attr:`size` describe the bytes yielded.
    """

    def __init__(
        self,
        stream: ReadableStream,
        *,
        backend: str,
        kind: DatasetKind,
        source: str,
        base_model: str | None = None,
        max_findings_per_rule: int = 20,
        tuning_mode: str = facts.DEFAULT_GEMINI_TUNING_MODE,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        if tuning_mode not in facts.GEMINI_TUNING_MODES:
            raise ValueError(
                f"unknown tuning mode {tuning_mode!r}: expected one of "
                f"{', '.join(facts.GEMINI_TUNING_MODES)}"
            )
        if kind is DatasetKind.CONFIG:
            raise ValueError("a config sidecar is validated with validate_config, not as a copy")
        self.backend = backend
        self.kind = kind
        #: The copy holds prompts only (the distillation mode's training set).
        self.prompts_only = (
            backend == "gemini" and tuning_mode == "distillation" and kind is DatasetKind.TRAINING
        )
        self.source = source
        self.model: facts.GeminiTuningModel | None = None
        if backend == "gemini":
            try:
                self.model = facts.gemini_tuning_model(
                    base_model or facts.DEFAULT_GEMINI_BASE_MODEL
                )
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None
        self._stream = stream
        self._max_findings = max_findings_per_rule
        self._started = False
        self._validation: JsonlValidation | None = None
        self._sha256 = hashlib.sha256()
        self.size = 0
        #: Estimated tokens of the valid examples (gemini only; 0 for pipeline).
        self.dataset_tokens = 0

    @property
    def validation(self) -> JsonlValidation:
        """The verdict on the input.

        Raises:
            RuntimeError: the copy has not been read to the end.
        """
        if self._validation is None:
            raise RuntimeError(f"the copy of {self.source} has not been read to the end")
        return self._validation

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the copy's bytes (for pipeline, the input's own digest).

        Raises:
            RuntimeError: the copy has not been read to the end.
        """
        self.validation  # noqa: B018 - raises until the copy is complete
        return self._sha256.hexdigest()

    def drain(self) -> JsonlValidation:
        """Read the copy to the end without keeping it; return the verdict.

        Raises:
            RuntimeError: the copy was already read.
            Exception: whatever ``stream.read`` raises propagates unchanged.
        """
        for _ in self:
            pass
        return self.validation

    def __iter__(self) -> Iterator[bytes]:
        """Yield the copy's lines; the verdict is set when the last has been taken.

        Raises:
            RuntimeError: the copy was already read (the stream is consumed once).
            Exception: whatever ``stream.read`` raises propagates unchanged.
        """
        if self._started:
            raise RuntimeError(f"the copy of {self.source} is read once")
        self._started = True
        return self._lines()

    def _lines(self) -> Iterator[bytes]:
        checker: _JsonlChecker
        if self.model is not None:
            checker = GeminiChecker(
                self.kind, self._max_findings, self.model, prompts_only=self.prompts_only
            )
        else:
            checker = _JsonlChecker(self.kind, self._max_findings)
        reader = LineReader(self._stream, max_line_bytes=rules.MAX_LINE_BYTES)
        with contextlib.closing(reader.lines()) as lines:
            for number, line in enumerate(lines, start=1):
                checker.check_line(number, line.data, line.length, line.offset)
                if isinstance(checker, GeminiChecker):
                    out = dump_line(checker.converted) if checker.converted is not None else b""
                elif line.data is not None:
                    # The input unchanged: a newline follows this line when the stream holds a
                    # byte after it (the reader has read past a newline it split on).
                    ends = line.offset + line.length < reader.size
                    out = line.data + b"\n" if ends else line.data
                else:
                    out = b""  # Over the cap and skipped: the file is invalid anyway.
                if out:
                    self._sha256.update(out)
                    self.size += len(out)
                    yield out
        self._validation = self._verdict(checker, reader)

    def _verdict(self, checker: _JsonlChecker, reader: LineReader) -> JsonlValidation:
        # The report is assembled exactly as validate_jsonl assembles it (a test holds the two
        # equal for the pipeline backend).
        report = ValidationReport(
            source=self.source,
            kind=self.kind,
            size_bytes=reader.size,
            sha256=reader.sha256,
            max_findings_per_rule=self._max_findings,
        )
        labeling = checker.finish(report)
        report.labeling = labeling
        report.examples = checker.examples
        report.labeled_examples = checker.labeled.count
        report.unlabeled_examples = checker.unlabeled.count
        report.max_input_tokens = checker.max_input_tokens
        report.max_output_tokens = checker.max_output_tokens
        if isinstance(checker, GeminiChecker):
            self.dataset_tokens = checker.dataset_tokens
            limit = checker.model.max_dataset_bytes
            if self.size > limit:
                report.add(
                    gemini.DATASET_TOO_LARGE,
                    Finding(
                        message=f"the converted copy is {self.size:,} bytes, over the "
                        f"{limit:,}-byte limit of {checker.model.name}'s JSONL training file"
                    ),
                )
        logger.debug(
            "validated %s for the %s backend: %s examples, %s errors, %s warnings",
            self.source,
            self.backend,
            report.examples,
            report.error_count,
            report.warning_count,
        )
        labeled = {"labeled": True, "unlabeled": False}.get(labeling)
        return JsonlValidation(report=report, labeled=labeled, input_lines=checker.input_lines)


def validated_copy(
    stream: ReadableStream,
    *,
    backend: str,
    kind: DatasetKind,
    source: str,
    base_model: str | None = None,
    max_findings_per_rule: int = 20,
    tuning_mode: str = facts.DEFAULT_GEMINI_TUNING_MODE,
) -> ValidatedCopy:
    """Validate the dataset in binary ``stream`` for ``backend`` as its copy is read.

    ``backend`` is ``"gemini"`` (the copy is in the ``contents`` format, checked against
    ``base_model``'s limits, default :data:`distillery.facts.DEFAULT_GEMINI_BASE_MODEL`) or
    ``"pipeline"`` (the copy is the input unchanged, the report :func:`validate_jsonl`'s).
    ``tuning_mode`` is the gemini job's: with ``"distillation"`` a training set's copy holds the
    prompts only (see :class:`~distillery.validation._contents.GeminiChecker`). Nothing is read
    until the result is iterated (or drained).

    Raises:
        ValueError: ``backend`` or ``tuning_mode`` is unknown, ``kind`` is CONFIG, or
            ``base_model`` is not a Gemini base model that supports supervised tuning.
    """
    return ValidatedCopy(
        stream,
        backend=backend,
        kind=kind,
        source=source,
        base_model=base_model,
        max_findings_per_rule=max_findings_per_rule,
        tuning_mode=tuning_mode,
    )
