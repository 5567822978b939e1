"""The teacher's request lines: one ``{"request": GenerateContentRequest}`` per example of the
validated copy, in its order, the same bytes every time.

The validated copy (``spec.source_uri``) holds gemini ``contents`` lines: an optional
``systemInstruction`` and then the turns, a labeled line ending with one ``model`` turn
(:mod:`distillery.validation._contents` writes them so). The teacher sees the prompt turns (the
final ``model`` turn left out), the step-by-step instruction as its system instruction (after
the example's own one, when it has one) and, in the ``rationales`` mode, the user's label as a
hint to explain. Each request carries its line number in ``labels[LINE_LABEL_KEY]``: the batch
job's output comes in no promised order, and it is matched back by that label.

Request fields (``google.cloud.aiplatform_v1.types.GenerateContentRequest``): ``contents``,
``system_instruction`` (``systemInstruction`` in JSON, a ``Content`` of ``parts``),
``generation_config`` (``temperature``, ``max_output_tokens``) and ``labels``, a map of strings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from distillery import facts
from distillery.core.errors import PermanentError
from distillery.core.models import split_gcs_uri
from distillery.core.ports import ObjectStore
from distillery.labeling._spec import (
    GIVEN_ANSWER_HINT,
    LINE_LABEL_KEY,
    STEP_BY_STEP_INSTRUCTION,
    LabelingSpec,
)


class LabelingSourceError(PermanentError):
    """The validated copy a labeling run reads does not hold what the run needs."""


@dataclass(frozen=True)
class SourceExample:
    """One example of the validated copy, as the teacher and the training file need it."""

    #: The example's number in the validated copy, from 1 (also its line in the upload: a valid
    #: upload holds no blank line, so the copy keeps every line where it was).
    line: int
    #: The prompt turns (``contents`` without a final ``model`` turn).
    contents: tuple[Mapping[str, Any], ...]
    #: The example's own ``systemInstruction``, or None.
    system_instruction: Mapping[str, Any] | None
    #: The text of the final ``model`` turn (the user's label), or None (an unlabeled line).
    label: str | None


def _texts(content: Mapping[str, Any]) -> str:
    return "".join(str(part.get("text", "")) for part in content.get("parts") or [])


def parse_source_line(line: int, raw: bytes) -> SourceExample:
    """The example on line ``line`` of a validated copy.

    Raises:
        LabelingSourceError: the line is not a ``contents`` object with a user turn.
    """
    where = f"line {line:,} of the validated copy"
    try:
        example = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabelingSourceError(
            f"{where} is not JSON ({exc}): validate the dataset again"
        ) from exc
    turns = example.get("contents") if isinstance(example, dict) else None
    if not isinstance(turns, list) or not turns or not all(isinstance(t, dict) for t in turns):
        raise LabelingSourceError(
            f"{where} has no contents turns: a labeling run reads a gemini copy "
            "(validate the dataset for the gemini backend)"
        )
    label: str | None = None
    prompt = list(turns)
    if prompt[-1].get("role") == facts.GEMINI_MODEL_ROLE:
        label = _texts(prompt.pop())
    if not prompt or prompt[-1].get("role", facts.GEMINI_USER_ROLE) != facts.GEMINI_USER_ROLE:
        raise LabelingSourceError(f"{where} has no user turn before its answer")
    system = example.get("systemInstruction")
    if system is not None and not isinstance(system, dict):
        raise LabelingSourceError(f"{where}: systemInstruction is not an object")
    return SourceExample(line=line, contents=tuple(prompt), system_instruction=system, label=label)


def read_source(objects: ObjectStore, uri: str) -> list[SourceExample]:
    """Every example of the validated copy at ``uri``, in order (streamed line by line).

    Raises:
        ObjectNotFoundError: the copy is gone.
        LabelingSourceError: a line is not a ``contents`` example.
    """
    bucket, name = split_gcs_uri(uri)
    examples: list[SourceExample] = []
    with objects.open_read(bucket, name) as reader:
        for number, raw in enumerate(_lines(reader), start=1):
            examples.append(parse_source_line(number, raw))
    return examples


def _lines(reader: Any) -> Iterator[bytes]:
    """The non-empty lines of a binary reader (a validated copy has no empty one)."""
    for raw in reader:
        stripped = raw.rstrip(b"\r\n")
        if stripped:
            yield stripped


def system_instruction_text(example: SourceExample, mode: str) -> str:
    """What the teacher is told for ``example``: the example's own system instruction first
    (then a blank line), the step-by-step instruction, and in the ``rationales`` mode the hint
    with the user's label.

    Raises:
        LabelingSourceError: the ``rationales`` mode and the example has no label.
    """
    told = STEP_BY_STEP_INSTRUCTION
    if mode == "rationales":
        if example.label is None:
            raise LabelingSourceError(
                f"line {example.line:,} of the validated copy has no label, but the job keeps "
                "the user's labels (rationales: teacher): label every line, or let the teacher "
                "label them all"
            )
        told += GIVEN_ANSWER_HINT.format(label=example.label)
    if example.system_instruction is not None:
        own = "\n".join(
            str(part.get("text", "")) for part in example.system_instruction.get("parts") or []
        )
        if own.strip():
            told = f"{own}\n\n{told}"
    return told


def teacher_request(example: SourceExample, spec: LabelingSpec) -> dict[str, Any]:
    """The request line the teacher answers for ``example`` (``{"request": {...}}``)."""
    return {
        "request": {
            "contents": [dict(turn) for turn in example.contents],
            "systemInstruction": {"parts": [{"text": system_instruction_text(example, spec.mode)}]},
            "generationConfig": {"temperature": 0, "maxOutputTokens": spec.max_output_tokens},
            "labels": {LINE_LABEL_KEY: str(example.line)},
        }
    }


def request_lines(examples: Sequence[SourceExample], spec: LabelingSpec) -> bytes:
    """The batch job's input file: one compact JSON request a line, in the copy's order.

    Raises:
        LabelingSourceError: the ``rationales`` mode and an example has no label.
    """
    return b"".join(
        json.dumps(
            teacher_request(example, spec), ensure_ascii=False, separators=(",", ":")
        ).encode()
        + b"\n"
        for example in examples
    )
