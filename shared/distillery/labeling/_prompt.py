"""How a step-by-step model is asked: the label task's prefix before the prompt.

A model tuned on a labeling job's two-task data learned ``<label_task_prefix><prompt>`` → label
and ``<rationale_task_prefix><prompt>`` → rationale (Hsieh et al. 2023: ``predict:`` and
``explain:``). Asked a bare prompt it was never trained on that form, so evaluation and serving
send the label task: the prefix before the text of the last user turn, the turn the training
file prefixed. A model from a job without labeling (and every pipeline model) is asked the
prompt as given: its prefix is "".

This module is the one place a prefix is applied, so the training data, the evaluation and
``distillery predict`` cannot drift apart.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any


def label_task_prefix(record: Mapping[str, Any] | None) -> str:
    """The label task prefix a job's model was trained with: ``labeling.label_task_prefix`` of
    its record (a frozen :class:`~distillery.labeling.LabelingSpec`), "" when the job had no
    labeling stage."""
    labeling = (record or {}).get("labeling")
    if not isinstance(labeling, Mapping):
        return ""
    prefix = labeling.get("label_task_prefix")
    return prefix if isinstance(prefix, str) else ""


def champion_prefix(entry: Mapping[str, Any] | None) -> str:
    """The prefix a champion entry (``models/{family}.champion`` or one of its ``history``)
    says its model is asked with: its ``prompt_prefix``; "" for entries from before it was
    recorded, which were all crowned from jobs without labeling."""
    prefix = (entry or {}).get("prompt_prefix")
    return prefix if isinstance(prefix, str) else ""


def with_prefix(prompt: str, prefix: str, *, at: int = 0) -> str:
    """``prompt`` with ``prefix`` put before its character ``at`` (where its last user turn's
    text begins; 0 for a single-turn prompt).

    Raises:
        ValueError: ``at`` is outside ``prompt``.
    """
    if not 0 <= at <= len(prompt):
        raise ValueError(
            f"a prefix cannot go at character {at} of a {len(prompt)}-character prompt"
        )
    if not prefix:
        return prompt
    return f"{prompt[:at]}{prefix}{prompt[at:]}"


def prefix_last_user_turn(contents: Sequence[Mapping[str, Any]], prefix: str) -> list[Any]:
    """A copy of the ``contents`` turns with ``prefix`` before the text of the last ``user``
    turn's first text part (a turn with no role is a user turn, as the API reads it).

    Raises:
        ValueError: there is no user turn with a text part to put it before.
    """
    turns = copy.deepcopy(list(contents))
    if not prefix:
        return turns
    for turn in reversed(turns):
        if not isinstance(turn, dict) or turn.get("role", "user") != "user":
            continue
        for part in turn.get("parts") or []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                part["text"] = f"{prefix}{part['text']}"
                return turns
        break
    raise ValueError("the prompt has no user turn with text to put the task prefix before")
