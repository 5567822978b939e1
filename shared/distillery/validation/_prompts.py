"""Heuristics for the prompt side of a dataset: task instructions and prompt-format markers.

Both feed warnings only, so they lean towards silence: a false "missing instructions" on a good
dataset teaches users to ignore the report.

**Markers.** A marker is a short label that introduces a part of the prompt, like ``question:``,
``context:`` or ``Text:``: one to three words (starting with a letter) followed by a colon and
whitespace (or the end of the text), standing at the start of the text, at the start of a line
(Markdown ``#``/``*``/``>``/``-`` decorations allowed), or after a sentence boundary
(``.``, ``?``, ``!``, ``;``, ``)`` or ``]`` and whitespace). Times (``10:30``) and URLs
(``https://``) are not markers because no whitespace follows the colon. Markers are compared
case-insensitively with inner whitespace collapsed. Only the first :data:`HEAD_CHARS` and the last
:data:`TAIL_CHARS` characters are scanned, so a 30,000-character context costs no more than a short
prompt, and a marker that follows a long context (``context: … question: …``) is still seen.

**Instructions.** An example carries instructions when it has at least one marker, starts with an
instruction verb (``Classify``, ``Summarize``, ``Answer``, … optionally after ``Please``), starts
with a role sentence (``You are …``), or — for prompts that put the task last — has a sentence
starting with an instruction verb in its last :data:`TAIL_CHARS` characters. A bare question
(``Is …``, ``Does …``, ``Which …``) is input, not an instruction.
"""

from __future__ import annotations

import re

#: Characters scanned from the start and from the end of an input.
HEAD_CHARS = 4096
TAIL_CHARS = 1024
#: A signature keeps at most this many distinct markers (the first ones seen).
MAX_MARKERS = 8
#: How far before a colon a marker label may start.
_LABEL_WINDOW = 64

INSTRUCTION_VERBS: tuple[str, ...] = (
    "analyse",
    "analyze",
    "answer",
    "assign",
    "categorise",
    "categorize",
    "choose",
    "classify",
    "compare",
    "complete",
    "compose",
    "convert",
    "correct",
    "create",
    "decide",
    "describe",
    "detect",
    "determine",
    "evaluate",
    "explain",
    "extract",
    "fill",
    "find",
    "fix",
    "generate",
    "given",
    "identify",
    "label",
    "list",
    "paraphrase",
    "predict",
    "provide",
    "rank",
    "rate",
    "read",
    "respond",
    "return",
    "rewrite",
    "score",
    "select",
    "simplify",
    "summarise",
    "summarize",
    "tag",
    "tell",
    "translate",
    "write",
)

_VERBS = "|".join(INSTRUCTION_VERBS)
_INSTRUCTION_START = re.compile(
    rf"\s*(?:(?:please|kindly)\s+)?(?:(?:{_VERBS})\b|you\s+(?:are|will|must|should)\b)",
    re.IGNORECASE,
)
_INSTRUCTION_SENTENCE = re.compile(
    rf"(?:^|(?<=[.?!:])\s)\s*(?:(?:please|kindly)\s+)?(?:{_VERBS})\b",
    re.IGNORECASE | re.MULTILINE,
)
# Matched against the reversed text that precedes a colon, so one anchored match finds the label
# (1-3 words, the first starting with a letter) and the boundary in front of it: a newline, a
# sentence mark followed by whitespace, or the start of the text (\Z of the reversed window).
_LABEL_REVERSED = re.compile(
    r"\**[ \t]*((?:[\w'-]+[ \t]+){0,2}[\w'-]*[^\W\d_])[ \t#>*-]*(?:\n|[ \t]+[.?!;)\]]|\Z)"
)


def _scan_markers(text: str, start: int, end: int, found: list[str]) -> None:
    """Append the markers whose colon lies in ``text[start:end]`` and are not yet in ``found``.

    Works on ``text`` in place (no region copies): the label is read backwards from each colon,
    so a region that starts mid-sentence cannot fake a boundary.
    """
    length = len(text)
    colon = text.find(":", start, end)
    while colon >= 0 and len(found) < MAX_MARKERS:
        after = colon + 1
        while after < length and text[after] == "*":
            after += 1
        if after == length or text[after].isspace():
            window_start = max(0, colon - _LABEL_WINDOW)
            window = text[window_start:colon][::-1]
            match = _LABEL_REVERSED.match(window)
            # Reaching the end of a window cut out of the middle of the text is no boundary.
            if match is not None and (window_start == 0 or match.end() < len(window)):
                marker = " ".join(match.group(1)[::-1].lower().split())
                if marker not in found:
                    found.append(marker)
        colon = text.find(":", after, end)


def prompt_markers(text: str) -> tuple[str, ...]:
    """The distinct markers of ``text`` in order of first appearance (see the module docstring).

    Raises nothing.
    """
    found: list[str] = []
    length = len(text)
    if length <= HEAD_CHARS + TAIL_CHARS:
        _scan_markers(text, 0, length, found)
    else:
        _scan_markers(text, 0, HEAD_CHARS, found)
        _scan_markers(text, length - TAIL_CHARS, length, found)
    return tuple(found)


def has_instructions(text: str, markers: tuple[str, ...]) -> bool:
    """Whether ``text`` (with its ``markers``) carries task instructions (module docstring).

    Raises nothing.
    """
    if markers or _INSTRUCTION_START.match(text, 0, 200):
        return True
    return _INSTRUCTION_SENTENCE.search(text, max(0, len(text) - TAIL_CHARS)) is not None


def format_signature(markers: tuple[str, ...]) -> str:
    """Markers as users write them: ``question: → context:`` (or ``(no markers)``)."""
    return " → ".join(f"{marker}:" for marker in markers) if markers else "(no markers)"
