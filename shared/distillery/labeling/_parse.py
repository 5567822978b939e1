"""The teacher's answers: each batch output line parsed, matched to its input line and judged.

An output line of a Gemini batch prediction job (``{"request", "status", "response"}``) is
matched to its input line by the request's ``labels[LINE_LABEL_KEY]`` only: the service promises
no order of the lines, and whether it copies any other key of an input line is not documented.
Each input line then has one outcome:

- ``labeled``: the teacher gave a rationale and an answer;
- ``disagreed`` (the ``rationales`` mode): its answer is not the user's label (compared with
  whitespace runs collapsed and case folded): the user's label stays, its rationale is dropped;
- ``failed``: the line's ``status`` is not empty (the service's error);
- ``missing``: no output line came back for it;
- ``blocked``: the prompt was blocked (``promptFeedback.blockReason``), the candidate was stopped
  for a safety reason (``finishReason`` SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII,
  MODEL_ARMOR: ``google.cloud.aiplatform_v1.types.Candidate.FinishReason``), or there is no
  candidate at all;
- ``unparseable``: the text holds no ``Rationale:`` or no ``Answer:``, either is empty, or the
  answer was cut at ``maxOutputTokens`` (MAX_TOKENS: what is there may be cut short).

The parser is lenient where that cannot change the meaning (marker case, surrounding whitespace,
markdown emphasis such as ``**Answer:**``, a heading or list mark before a marker; the LAST
``Answer:`` line wins, so a rationale may quote one) and strict where it could (both markers
required, nothing guessed from free text, a cut answer refused).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from distillery.labeling._spec import LINE_LABEL_KEY

Outcome = Literal["labeled", "disagreed", "failed", "missing", "blocked", "unparseable"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)

#: ``Candidate.FinishReason`` values that mean the answer was withheld, not written.
BLOCKING_FINISH_REASONS = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "MODEL_ARMOR"}
)

#: How much of a status message, a block reason or a bad text a report keeps.
DETAIL_CHARS = 200

_EMPHASIS = r"(?:\*\*|__|\*|_)?"
_MARKER = re.compile(
    rf"^[ \t]*(?:#+[ \t]*|[-*>][ \t]+)?{_EMPHASIS}[ \t]*(?P<marker>rationale|answer)[ \t]*"
    rf"{_EMPHASIS}[ \t]*:[ \t]*{_EMPHASIS}(?P<rest>.*)$",
    re.IGNORECASE,
)


class UnparseableError(ValueError):
    """The teacher's text is not a rationale followed by an answer (the message says why)."""


def shorten(text: str, limit: int = DETAIL_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters (an ellipsis where it was cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _unemphasize(text: str) -> str:
    """``text`` without the markdown emphasis that wraps it (``**x**``, ``_x_``)."""
    stripped = text.strip()
    for mark in ("**", "__", "*", "_"):
        if stripped.endswith(mark) and len(stripped) > len(mark):
            stripped = stripped[: -len(mark)].rstrip()
            break
    return stripped


def parse_teacher_text(text: str) -> tuple[str, str]:
    """The rationale and the answer of a teacher's reply.

    Raises:
        UnparseableError: no ``Answer:`` line, no ``Rationale:`` before it, or either is empty.
    """
    lines = text.splitlines()
    marks = [(i, m) for i, line in enumerate(lines) if (m := _MARKER.match(line))]
    answers = [(i, m) for i, m in marks if m["marker"].lower() == "answer"]
    if not answers:
        raise UnparseableError(f"no 'Answer:' line in {shorten(text, 80)!r}")
    at, answer_mark = answers[-1]
    rationales = [(i, m) for i, m in marks if m["marker"].lower() == "rationale" and i < at]
    if not rationales:
        raise UnparseableError(f"no 'Rationale:' before the answer in {shorten(text, 80)!r}")
    start, rationale_mark = rationales[0]
    rationale = "\n".join([rationale_mark["rest"], *lines[start + 1 : at]]).strip()
    answer = "\n".join([answer_mark["rest"], *lines[at + 1 :]]).strip()
    rationale, answer = _unemphasize(rationale), _unemphasize(answer)
    if not rationale:
        raise UnparseableError("the rationale is empty")
    if not answer:
        raise UnparseableError("the answer is empty")
    return rationale, answer


def same_answer(teacher: str, user: str) -> bool:
    """Whether the teacher's answer is the user's label (whitespace runs and case aside)."""
    return " ".join(teacher.split()).casefold() == " ".join(user.split()).casefold()


@dataclass(frozen=True)
class TeacherAnswer:
    """What one input line came back as."""

    line: int
    outcome: Outcome
    rationale: str | None = None
    answer: str | None = None
    #: Why a line is not labeled (the status message, the block reason, what did not parse).
    detail: str | None = None
    #: The output's ``modelVersion`` (the teacher's exact version), when it has one.
    model_version: str | None = None


def _status_message(status: Any) -> str:
    """The message of a line's ``status`` (a google.rpc error as JSON, or plain text)."""
    if isinstance(status, str):
        try:
            parsed = json.loads(status)
        except json.JSONDecodeError:
            return status
        status = parsed
    if isinstance(status, Mapping):
        error = status.get("error", status)
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])
    return json.dumps(status, ensure_ascii=False) if not isinstance(status, str) else status


def judge_output(line: int, output: Mapping[str, Any]) -> TeacherAnswer:
    """The outcome of input line ``line`` from its output line (before any comparison with a
    user's label: see :func:`compare_with_label`)."""
    status = output.get("status")
    response = output.get("response")
    if status:
        return TeacherAnswer(line, "failed", detail=shorten(_status_message(status)))
    if not isinstance(response, Mapping):
        return TeacherAnswer(line, "failed", detail="the output line has no status and no response")
    version = response.get("modelVersion")
    version = str(version) if version else None
    feedback = response.get("promptFeedback") or {}
    block = feedback.get("blockReason") if isinstance(feedback, Mapping) else None
    if block and block != "BLOCKED_REASON_UNSPECIFIED":
        message = feedback.get("blockReasonMessage")
        detail = f"prompt blocked: {block}" + (f" ({message})" if message else "")
        return TeacherAnswer(line, "blocked", detail=shorten(detail), model_version=version)
    candidates = response.get("candidates") or []
    if not candidates or not isinstance(candidates[0], Mapping):
        return TeacherAnswer(
            line, "blocked", detail="no candidate came back", model_version=version
        )
    candidate = candidates[0]
    finish = str(candidate.get("finishReason") or "")
    if finish in BLOCKING_FINISH_REASONS:
        return TeacherAnswer(
            line, "blocked", detail=f"the answer was stopped: {finish}", model_version=version
        )
    content = candidate.get("content") or {}
    text = "".join(
        str(part.get("text", ""))
        for part in (content.get("parts") or [])
        if isinstance(part, Mapping) and not part.get("thought")
    )
    if finish == "MAX_TOKENS":
        return TeacherAnswer(
            line,
            "unparseable",
            detail=shorten(f"cut at maxOutputTokens before the end: {text!r}"),
            model_version=version,
        )
    try:
        rationale, answer = parse_teacher_text(text)
    except UnparseableError as exc:
        return TeacherAnswer(line, "unparseable", detail=shorten(str(exc)), model_version=version)
    return TeacherAnswer(line, "labeled", rationale, answer, model_version=version)


def compare_with_label(answer: TeacherAnswer, label: str) -> TeacherAnswer:
    """In the ``rationales`` mode: ``answer`` as ``disagreed`` when the teacher's answer is not
    the user's ``label`` (its rationale explains another answer, so it is dropped)."""
    if answer.outcome != "labeled" or answer.answer is None or same_answer(answer.answer, label):
        return answer
    return TeacherAnswer(
        answer.line,
        "disagreed",
        answer=answer.answer,
        detail=shorten(f"the teacher answered {answer.answer!r}, the label is {label!r}"),
        model_version=answer.model_version,
    )


#: Better outcomes first: of two output lines for one input line, the better one stands.
_PREFERENCE = {"labeled": 0, "unparseable": 1, "blocked": 2, "failed": 3}


@dataclass
class Matched:
    """The judged output of every input line, and the output lines that matched none."""

    answers: dict[int, TeacherAnswer]
    #: Output lines without a usable line label, or with one no input line has (by their
    #: number in the output file, from 1, with why).
    strays: list[dict[str, Any]]


def _line_label(output: Mapping[str, Any]) -> str | None:
    request = output.get("request")
    labels = request.get("labels") if isinstance(request, Mapping) else None
    value = labels.get(LINE_LABEL_KEY) if isinstance(labels, Mapping) else None
    return str(value) if value is not None else None


def match_outputs(outputs: Iterable[bytes], lines: Iterable[int]) -> Matched:
    """Judge the output lines ``outputs`` (raw JSONL lines) against the input lines ``lines``:
    every input line gets exactly one answer (``missing`` when no output line names it)."""
    expected = set(lines)
    answers: dict[int, TeacherAnswer] = {}
    strays: list[dict[str, Any]] = []
    for position, raw in enumerate(outputs, start=1):
        try:
            output = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            strays.append({"output_line": position, "detail": shorten(f"not JSON: {exc}")})
            continue
        label = _line_label(output) if isinstance(output, Mapping) else None
        if label is None or not label.isdigit() or int(label) not in expected:
            strays.append(
                {
                    "output_line": position,
                    "detail": f"its request carries no known {LINE_LABEL_KEY} label ({label!r})",
                }
            )
            continue
        line = int(label)
        judged = judge_output(line, output)
        held = answers.get(line)
        # A line answered twice (a retried shard): the better answer stands, ties to the first.
        if held is None or _PREFERENCE[judged.outcome] < _PREFERENCE[held.outcome]:
            answers[line] = judged
    for line in expected - answers.keys():
        answers[line] = TeacherAnswer(line, "missing", detail="no output line came back for it")
    return Matched(answers=dict(sorted(answers.items())), strays=strays)
