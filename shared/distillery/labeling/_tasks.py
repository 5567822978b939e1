"""The labeled set and the two-task training file made of it (distilling step-by-step).

Each labeled example gives a label task (the prompt with ``label_task_prefix`` before the last
user turn's text, answered by the label) and, when it has a rationale and is drawn for one, a
rationale task (``rationale_task_prefix``, answered by the rationale): the multi-task training of
Hsieh et al. 2023. Which examples give a rationale task (``rationale_mixture``) and the order of
the lines are drawn from hashes of the job id and the line, so a second pass writes the same
bytes, and the two tasks interleave instead of following each other in blocks.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from distillery import facts
from distillery.labeling._prompt import prefix_last_user_turn
from distillery.labeling._spec import LabelingSpec


@dataclass(frozen=True)
class LabeledExample:
    """One line of the labeled set."""

    line: int
    contents: tuple[Mapping[str, Any], ...]
    system_instruction: Mapping[str, Any] | None
    label: str
    label_by: Literal["teacher", "user"]
    rationale: str | None
    #: The teacher's model id when it wrote the rationale, else None.
    rationale_by: str | None

    def to_json(self) -> dict[str, Any]:
        """The labeled set's line for this example."""
        line: dict[str, Any] = {"line": self.line, "contents": [dict(c) for c in self.contents]}
        if self.system_instruction is not None:
            line["systemInstruction"] = dict(self.system_instruction)
        line |= {
            "label": self.label,
            "label_by": self.label_by,
            "rationale": self.rationale,
            "rationale_by": self.rationale_by,
        }
        return line


def _dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def labeled_lines(examples: Sequence[LabeledExample]) -> bytes:
    """The labeled set's bytes: one compact JSON object a line, in line order."""
    return b"".join(_dump(example.to_json()) for example in sorted(examples, key=lambda e: e.line))


def _draw(job_id: str, line: int, what: str) -> float:
    """A number in [0, 1) fixed by the job, the line and ``what`` it is drawn for."""
    digest = hashlib.sha256(f"{job_id}\x00{line}\x00{what}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def gives_rationale_task(job_id: str, line: int, mixture: float) -> bool:
    """Whether labeled line ``line`` also gives a rationale task (1.0: all; 0.0: none)."""
    if mixture >= 1.0:
        return True
    if mixture <= 0.0:
        return False
    return _draw(job_id, line, "mixture") < mixture


def task_example(example: LabeledExample, prefix: str, target: str) -> dict[str, Any]:
    """The ``contents`` training line of one task: the prompt turns with ``prefix`` before the
    last user turn's text, then the model turn ``target``."""
    # The one placement of a task prefix, which the evaluation's golden prompts follow too.
    turns = prefix_last_user_turn([dict(turn) for turn in example.contents], prefix)
    line: dict[str, Any] = {}
    if example.system_instruction is not None:
        line["systemInstruction"] = copy.deepcopy(dict(example.system_instruction))
    line["contents"] = [
        *turns,
        {"role": facts.GEMINI_MODEL_ROLE, "parts": [{"text": target}]},
    ]
    return line


@dataclass(frozen=True)
class TrainingFile:
    """The two-task training file's bytes and what it holds."""

    data: bytes
    label_tasks: int
    rationale_tasks: int


def training_file(
    examples: Sequence[LabeledExample], spec: LabelingSpec, job_id: str
) -> TrainingFile:
    """The two-task ``contents`` file of ``examples`` (see the module docstring)."""
    keyed: list[tuple[float, int, str, dict[str, Any]]] = []
    for example in examples:
        label_task = task_example(example, spec.label_task_prefix, example.label)
        keyed.append((_draw(job_id, example.line, "label"), example.line, "label", label_task))
        if example.rationale and gives_rationale_task(job_id, example.line, spec.rationale_mixture):
            task = task_example(example, spec.rationale_task_prefix, example.rationale)
            draw = _draw(job_id, example.line, "rationale")
            keyed.append((draw, example.line, "rationale", task))
    keyed.sort(key=lambda item: item[:3])
    rationale_tasks = sum(1 for item in keyed if item[2] == "rationale")
    return TrainingFile(
        data=b"".join(_dump(item[3]) for item in keyed),
        label_tasks=len(keyed) - rationale_tasks,
        rationale_tasks=rationale_tasks,
    )
