"""Training rules: the batch size a student gets and the steps a task gets when none are asked."""

from __future__ import annotations

import math

from distillery import facts

#: With a task and no ``train_steps``, steps aim at this many passes over the dataset, clamped
#: into the task's recommended range (see :func:`choose_train_steps`).
TARGET_EPOCHS = 3.0


def batch_size(student: str, tuning_region: str, long_context_students: tuple[str, ...]) -> int:
    """The tuning batch size for ``student`` when tuning runs in ``tuning_region`` (SPEC).

    ``long_context_students`` are the 32k-context students (a setting); every other student is
    an 8k-context one. The sizes are :func:`distillery.facts.batch_size`.

    Raises:
        KeyError: ``tuning_region`` is not a region tuning runs in
            (:data:`distillery.facts.TUNING_REGIONS`).
    """
    # The region is looked up even for a 32k student, so an unknown region never passes silently.
    short = facts.batch_size(tuning_region, long_context=False)
    return facts.LONG_CONTEXT_BATCH if student in long_context_students else short


def target_steps(dataset_examples: int, batch: int) -> int:
    """The steps that see a dataset of ``dataset_examples`` about :data:`TARGET_EPOCHS` times."""
    return math.ceil(TARGET_EPOCHS * max(dataset_examples, 0) / batch)


def choose_train_steps(task: str, dataset_examples: int, batch: int) -> int:
    """The train_steps for ``task`` when none was asked for.

    ``ceil(TARGET_EPOCHS x dataset_examples / batch)``, clamped into the task's recommended range
    (:data:`distillery.facts.TASK_STEP_RANGES`): enough steps to see the dataset about three
    times, never outside what SPEC recommends for the task.

    Raises:
        KeyError: ``task`` has no recommended range (e.g. "other").
    """
    low, high = facts.TASK_STEP_RANGES[task]
    return min(max(target_steps(dataset_examples, batch), low), high)
