"""The cost estimate behind the daily budget check.

Planning estimates, not measurements: they size the daily budget check, nothing else.
estimated accelerator-hours = (PIPELINE_OVERHEAD_HOURS
    + (train_steps x seconds_per_step + evaluations x EVALUATION_PASS_SECONDS) / 3600)
    x accelerator count
One accelerator-hour is one A100 for an hour or one TPU v3 core for an hour; ``seconds_per_step``
is the accelerator's planning figure in :data:`distillery.facts.ACCELERATORS`.
"""

from __future__ import annotations

from distillery.facts import AcceleratorProfile

PIPELINE_OVERHEAD_HOURS = 0.5
EVALUATION_PASS_SECONDS = 60.0


def evaluations(train_steps: int, evaluation_interval: int | None) -> int:
    """How many evaluation passes a job of ``train_steps`` runs (none without an interval)."""
    return train_steps // evaluation_interval if evaluation_interval else 0


def estimate_accelerator_hours(
    profile: AcceleratorProfile, train_steps: int, evaluation_interval: int | None
) -> float:
    """The planning estimate of a job's accelerator-hours (the formula of this module)."""
    passes = evaluations(train_steps, evaluation_interval)
    seconds = train_steps * profile.seconds_per_step + passes * EVALUATION_PASS_SECONDS
    return round((PIPELINE_OVERHEAD_HOURS + seconds / 3600) * profile.count, 2)
