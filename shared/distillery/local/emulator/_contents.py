"""Gemini ``Content`` turns: checked, and rendered into the one prompt the local student reads.

A supervised tuning example and a ``:generateContent`` request carry the same shapes
(``google.cloud.aiplatform.v1.Content``)::

    {"systemInstruction"?: {"role"?: "...", "parts": [{"text": "..."}]},
     "contents": [{"role": "user", "parts": [{"text": "..."}]},
                  {"role": "model", "parts": [{"text": "..."}]}, ...]}

The local student is a text-to-text model with no notion of turns, so a conversation becomes one
prompt by :func:`render_prompt`, the same way for training and for serving: a single user turn
without a system instruction is its text unchanged (so a converted ``input_text`` line trains and
answers exactly as it reads); otherwise the system instruction, then every turn as
``ROLE: TEXT``, one a line. A training example's target is its last ``model`` turn.

Only text parts are understood: the local emulator has no multimodal student, so a part with
``inlineData``, ``fileData`` or a function call is refused, never silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from distillery._text import describe_json_value

USER = "user"
MODEL = "model"
ROLES = (USER, MODEL)
#: What the emulator counts as one token: a run of word characters or one other visible
#: character. Gemini's tokenizer is not available offline; this is the same order of magnitude
#: for English text, which is what the statistics and ``usageMetadata`` are for locally.
_TOKEN = re.compile(r"\w+|[^\w\s]")


class ContentError(ValueError):
    """A ``Content`` that breaks the shape; the message names the field (``contents[1].role``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Turn:
    """One checked turn: its role and the concatenated text of its parts."""

    role: str
    text: str


def count_tokens(text: str) -> int:
    """The emulator's token count of ``text`` (see the module docs)."""
    return len(_TOKEN.findall(text))


def cut_tokens(text: str, limit: int) -> str:
    """The first ``limit`` tokens of ``text`` (the emulator's tokens), as written."""
    matches = list(_TOKEN.finditer(text))
    if len(matches) <= limit:
        return text
    return text[: matches[limit - 1].end()] if limit > 0 else ""


def _field(data: Mapping[str, Any], camel: str, snake: str) -> Any:
    """A field by its JSON name or its proto name (the REST API accepts both)."""
    return data[camel] if camel in data else data.get(snake)


def parse_text_parts(parts: Any, where: str) -> str:
    """The text of a ``parts`` list (``[{"text": "..."}, ...]``), joined.

    Raises:
        ContentError: not a non-empty list of objects with a string ``text``.
    """
    if not isinstance(parts, list) or not parts:
        raise ContentError(f"{where}.parts", "must be a non-empty list of parts")
    texts = []
    for index, part in enumerate(parts):
        if not isinstance(part, Mapping):
            raise ContentError(
                f"{where}.parts[{index}]", f"must be an object, got {describe_json_value(part)}"
            )
        text = part.get("text")
        if not isinstance(text, str):
            others = ", ".join(sorted(str(k) for k in part)) or "nothing"
            raise ContentError(
                f"{where}.parts[{index}]",
                f"must have a string text (the local emulator serves text only; it has {others})",
            )
        texts.append(text)
    return "".join(texts)


def parse_turns(contents: Any, where: str = "contents") -> list[Turn]:
    """The turns of a ``contents`` list.

    Raises:
        ContentError: not a non-empty list of ``{"role": "user"|"model", "parts": [...]}``.
    """
    if not isinstance(contents, list) or not contents:
        raise ContentError(where, "must be a non-empty list of Content objects")
    turns = []
    for index, content in enumerate(contents):
        place = f"{where}[{index}]"
        if not isinstance(content, Mapping):
            raise ContentError(place, f"must be an object, got {describe_json_value(content)}")
        role = content.get("role")
        if role not in ROLES:
            raise ContentError(
                f"{place}.role", f'must be "user" or "model", got {describe_json_value(role)}'
            )
        turns.append(Turn(str(role), parse_text_parts(content.get("parts"), place)))
    return turns


def parse_system_instruction(data: Mapping[str, Any]) -> str | None:
    """The text of ``systemInstruction`` (or ``system_instruction``), None when absent.

    Raises:
        ContentError: present but not a Content with text parts.
    """
    instruction = _field(data, "systemInstruction", "system_instruction")
    if instruction is None:
        return None
    if not isinstance(instruction, Mapping):
        raise ContentError(
            "systemInstruction", f"must be an object, got {describe_json_value(instruction)}"
        )
    return parse_text_parts(instruction.get("parts"), "systemInstruction")


def render_prompt(system_instruction: str | None, turns: Sequence[Turn]) -> str:
    """The one prompt the local student reads for a conversation (see the module docs)."""
    if system_instruction is None and len(turns) == 1 and turns[0].role == USER:
        return turns[0].text
    lines = [system_instruction] if system_instruction else []
    lines.extend(f"{turn.role}: {turn.text}" for turn in turns)
    return "\n".join(lines)


@dataclass(frozen=True)
class TuningExample:
    """One supervised tuning example: the prompt, the target, the counts the statistics need."""

    prompt: str
    target: str
    turns: int
    characters: int
    input_tokens: int
    output_tokens: int

    def as_training_line(self) -> dict[str, str]:
        """The local trainer's ``TrainingExample`` line."""
        return {"input_text": self.prompt, "output_text": self.target}


def parse_tuning_example(data: Any) -> TuningExample:
    """A dataset line (already JSON-decoded) as a :class:`TuningExample`.

    The conversation must end with a ``model`` turn (the target) after at least one ``user``
    turn; everything before the last turn is the prompt.

    Raises:
        ContentError: the line breaks the documented shape.
    """
    if not isinstance(data, Mapping):
        raise ContentError("line", f"must be a JSON object, got {describe_json_value(data)}")
    system_instruction = parse_system_instruction(data)
    turns = parse_turns(data.get("contents"))
    if turns[-1].role != MODEL:
        raise ContentError(
            f"contents[{len(turns) - 1}].role", 'the last turn must be the "model" answer'
        )
    if not any(turn.role == USER for turn in turns[:-1]):
        raise ContentError("contents", 'needs a "user" turn before the "model" answer')
    prompt = render_prompt(system_instruction, turns[:-1])
    target = turns[-1].text
    characters = sum(len(t.text) for t in turns) + len(system_instruction or "")
    return TuningExample(
        prompt=prompt,
        target=target,
        turns=len(turns),
        characters=characters,
        input_tokens=count_tokens(prompt),
        output_tokens=count_tokens(target),
    )
