"""Which task a golden set is: set by the config, or inferred from its examples."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

TASKS: tuple[str, ...] = ("classification", "summarization", "extractive_qa")

#: An answer of at most this many words is "short" (a class label, not a sentence).
SHORT_ANSWER_WORDS = 5

# The markers SPEC.md's extractive QA example carries ("question: ... context: ...").
_QUESTION_MARKER = re.compile(r"\bquestion\s*:", re.IGNORECASE)
_CONTEXT_MARKER = re.compile(r"\bcontext\s*:", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class TaskChoice:
    """The task a golden set is scored as, and a sentence saying how it was chosen."""

    kind: str
    how: str


def infer_task(
    inputs: Sequence[str], outputs: Sequence[str], configured: str | None = None
) -> TaskChoice:
    """The task of the examples ``inputs`` -> ``outputs``.

    ``configured`` (the config's ``task``) wins when given. Otherwise the rule is, in this order:

    1. **extractive_qa** when more than half of the examples are marked and spanned: the input
       carries both a ``question:`` and a ``context:`` marker (case-insensitive) and the answer,
       case-folded with its whitespace collapsed, is a non-empty substring of the input treated
       the same way;
    2. **classification** when every answer is short (at most ``SHORT_ANSWER_WORDS`` words) and
       the distinct answers (case-folded, surrounding whitespace stripped) are at most half as
       many as the examples, i.e. the same few labels repeat;
    3. **summarization** otherwise.

    Raises:
        ValueError: ``configured`` is not one of ``TASKS``; ``inputs`` and ``outputs`` differ in
            length or are empty (nothing to infer from).
    """
    if configured is not None:
        if configured not in TASKS:
            raise ValueError(
                f"unknown task {configured!r}: the config's task must be one of {', '.join(TASKS)}"
            )
        return TaskChoice(configured, "set by the config's task")
    if len(inputs) != len(outputs):
        raise ValueError(f"cannot infer the task: {len(inputs)} inputs but {len(outputs)} outputs")
    total = len(inputs)
    if total == 0:
        raise ValueError("cannot infer the task of an empty set of examples")

    spanned = sum(
        1 for text, answer in zip(inputs, outputs, strict=True) if _is_marked_span(text, answer)
    )
    if spanned * 2 > total:
        return TaskChoice(
            "extractive_qa",
            f"inferred: {spanned} of {total} answers are spans of their inputs, which carry "
            "question:/context: markers (extractive_qa)",
        )

    long_answers = sum(1 for answer in outputs if len(answer.split()) > SHORT_ANSWER_WORDS)
    distinct = len({answer.strip().casefold() for answer in outputs})
    if long_answers == 0 and distinct * 2 <= total:
        return TaskChoice(
            "classification",
            f"inferred: {distinct} distinct answers over {total} examples, all short "
            "(classification)",
        )
    return TaskChoice(
        "summarization",
        f"inferred: only {spanned} of {total} answers are spans of inputs with question:/context: "
        f"markers, and {distinct} distinct answers over {total} examples, {long_answers} longer "
        f"than {SHORT_ANSWER_WORDS} words, are not a few repeated labels (summarization)",
    )


def _is_marked_span(text: str, answer: str) -> bool:
    if not (_QUESTION_MARKER.search(text) and _CONTEXT_MARKER.search(text)):
        return False
    needle = _SPACES.sub(" ", answer.casefold()).strip()
    return bool(needle) and needle in _SPACES.sub(" ", text.casefold())
