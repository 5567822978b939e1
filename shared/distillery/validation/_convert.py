"""Convert between the seed's ``input_text``/``output_text`` lines and Gemini ``contents`` lines.

A Gemini supervised tuning job trains on ``contents`` lines (a user turn, then the model's
answer); the seed's datasets hold ``input_text``/``output_text`` lines. :func:`to_contents` turns
one example into the other, :func:`to_text` turns a single-turn ``contents`` example back, and
:func:`convert_jsonl` streams a whole file. A prompt without ``output_text`` cannot be converted:
supervised tuning learns from the answer, which a later stage (the teacher) has to write first.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from distillery import facts
from distillery._text import describe_json_value
from distillery.validation._lines import LineReader, ReadableStream
from distillery.validation._rules import MAX_LINE_BYTES

_UTF8_BOM = b"\xef\xbb\xbf"


class ConversionError(ValueError):
    """An example (or a line of a file) cannot be converted to the other dataset format."""

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None) -> None:
        where = f"line {line:,}: " if line is not None else ""
        super().__init__(f"{where}{message}")
        self.line = line
        self.field = field


def contents_example(input_text: str, output_text: str) -> dict[str, Any]:
    """The ``contents`` example of a prompt and its answer (unchecked: see :func:`to_contents`)."""
    return {
        "contents": [
            {"role": facts.GEMINI_USER_ROLE, "parts": [{"text": input_text}]},
            {"role": facts.GEMINI_MODEL_ROLE, "parts": [{"text": output_text}]},
        ]
    }


def prompt_example(input_text: str) -> dict[str, Any]:
    """The prompts-only ``contents`` example of a distillation job: the user turn alone (the
    teacher writes the response)."""
    return {"contents": [{"role": facts.GEMINI_USER_ROLE, "parts": [{"text": input_text}]}]}


def _required_text(example: Mapping[str, Any], name: str, missing: str) -> str:
    if name not in example:
        raise ConversionError(missing, field=name)
    value = example[name]
    if not isinstance(value, str) or not value.strip():
        shown = describe_json_value(value) if not isinstance(value, str) else "empty"
        raise ConversionError(f"{name} is {shown}, expected a non-empty string", field=name)
    return value


def to_contents(example: Mapping[str, Any]) -> dict[str, Any]:
    """``{"input_text": I, "output_text": O}`` as ``{"contents": [user I, model O]}``.

    Fields other than ``input_text`` and ``output_text`` are dropped (the validator warns about
    them). Pure: the argument is not changed.

    Raises:
        ConversionError: ``input_text`` or ``output_text`` is missing, not a string or empty
            (an example without ``output_text`` is a prompt only, which supervised tuning cannot
            train on until it is labeled).
    """
    input_text = _required_text(example, "input_text", "the example has no input_text")
    output_text = _required_text(
        example,
        "output_text",
        "the example has no output_text: a prompt-only line cannot be converted for "
        "supervised tuning until it is labeled",
    )
    return contents_example(input_text, output_text)


def to_text(example: Mapping[str, Any]) -> dict[str, str]:
    """A single-turn ``contents`` example as ``{"input_text": ..., "output_text": ...}``.

    The inverse of :func:`to_contents`: exactly one user turn then one model turn, each of text
    parts (joined without separator), and no ``systemInstruction``.

    Raises:
        ConversionError: the example has a ``systemInstruction``, another number or order of
            turns, or a part that is not text.
    """
    if "systemInstruction" in example:
        raise ConversionError(
            "a systemInstruction has no place in input_text/output_text", field="systemInstruction"
        )
    turns = example.get("contents")
    if not isinstance(turns, list) or len(turns) != 2:
        raise ConversionError(
            "only a single-turn example (one user turn, one model turn) converts to "
            "input_text/output_text",
            field="contents",
        )
    texts: list[str] = []
    for index, (turn, role) in enumerate(
        zip(turns, (facts.GEMINI_USER_ROLE, facts.GEMINI_MODEL_ROLE), strict=True)
    ):
        field = f"contents[{index}]"
        if not isinstance(turn, Mapping) or turn.get("role") != role:
            raise ConversionError(f"{field} must be a {role} turn", field=field)
        parts = turn.get("parts")
        if not isinstance(parts, list) or not parts:
            raise ConversionError(f"{field}.parts must be a non-empty array", field=field)
        pieces = [part.get("text") if isinstance(part, Mapping) else None for part in parts]
        if not all(isinstance(piece, str) for piece in pieces):
            raise ConversionError(f"{field}.parts must all be text parts", field=f"{field}.parts")
        texts.append("".join(piece for piece in pieces if isinstance(piece, str)))
    return {"input_text": texts[0], "output_text": texts[1]}


def dump_line(example: Mapping[str, Any]) -> bytes:
    """One JSON Lines line (compact, UTF-8, ending in ``\\n``) holding ``example``.

    Text that UTF-8 cannot encode (a lone surrogate, which JSON's ``\\ud800`` escapes allow) is
    written with ASCII escapes instead, as it arrived. Raises nothing for JSON-decoded data.
    """
    try:
        text = json.dumps(example, ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return json.dumps(example, separators=(",", ":")).encode("ascii") + b"\n"


def convert_jsonl(stream: ReadableStream) -> Iterator[bytes]:
    """Stream the ``input_text``/``output_text`` lines of ``stream`` as ``contents`` lines.

    Strict: every line must be an example :func:`to_contents` accepts (validate the file first
    for every finding at once; this stops at the first problem). Memory is bounded by the
    longest line.

    Raises:
        ConversionError: a line is blank, too long, not UTF-8 JSON, not an object, or not a
            convertible example; the error names the line.
        Exception: whatever ``stream.read`` raises propagates unchanged.
    """
    reader = LineReader(stream, max_line_bytes=MAX_LINE_BYTES)
    with contextlib.closing(reader.lines()) as lines:
        for number, line in enumerate(lines, start=1):
            yield dump_line(_convert_line(number, line.data))


def _convert_line(number: int, data: bytes | None) -> dict[str, Any]:
    if data is None:
        raise ConversionError(f"the line is over the {MAX_LINE_BYTES:,}-byte cap", line=number)
    if number == 1 and data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    try:
        parsed = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConversionError(f"invalid UTF-8: {exc.reason}", line=number) from None
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ConversionError(f"the line is not JSON: {reason}", line=number) from None
    if not isinstance(parsed, dict):
        raise ConversionError(
            f"the line is {describe_json_value(parsed)}, expected an object", line=number
        )
    try:
        return to_contents(parsed)
    except ConversionError as exc:
        raise ConversionError(str(exc), line=number, field=exc.field) from None
