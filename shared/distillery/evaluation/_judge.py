"""The promotion rule on a golden set: absolute thresholds, then the paired comparison."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from distillery.evaluation._bootstrap import Interval, paired_bootstrap
from distillery.evaluation._metrics import Scores

# Scores are averages of per-example values: a figure equal to its threshold in exact arithmetic
# may land a rounding error on the wrong side of it, and must not fail for that.
_ROUNDING = 1e-9


@dataclass(frozen=True)
class EvaluationThresholds:
    """The figures the rule compares with, and where each was set (for the reasons)."""

    min_task_score: float = 0.0
    promotion_margin: float = 0.0
    promotion_tolerance: float = 0.0
    max_class_regression: float = 1.0
    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0
    sources: Mapping[str, str] = field(default_factory=dict)

    def source(self, name: str) -> str:
        """Where the threshold ``name`` was set: its recorded source, else its setting's name."""
        return self.sources.get(name) or f"DISTILLERY_{name.upper()}"


@dataclass(frozen=True)
class Judgement:
    """The rule's outcome: every failed rule in words, and the figures behind it."""

    failures: tuple[str, ...]
    interval: Interval | None
    class_changes: Mapping[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when no rule failed."""
        return not self.failures


def judge(
    candidate: Scores, champion: Scores | None, thresholds: EvaluationThresholds
) -> Judgement:
    """Judge ``candidate`` against ``champion`` (both scored on the family's golden set).

    Every model must reach ``min_task_score`` on its primary metric. A family's first model
    (``champion`` None) is judged on that alone. Otherwise the paired difference candidate -
    champion per example must have a mean of at least ``promotion_margin``, its bootstrap
    interval's low bound must be at least ``-promotion_tolerance``, and (classification) no
    class's accuracy may drop by more than ``max_class_regression``. Each failure names the
    figures and the source of its threshold.

    Raises:
        ValueError: the two scores are of different tasks or lengths (they were not measured on
            one golden set); the thresholds' confidence or resamples are out of range.
    """
    metric = candidate.primary
    failures: list[str] = []
    achieved = candidate.metrics[metric]
    if achieved < thresholds.min_task_score - _ROUNDING:
        failures.append(
            f"{metric} on the golden set {achieved:.4f} is below the minimum "
            f"{_figure(thresholds.min_task_score)} ({thresholds.source('min_task_score')})"
        )
    if champion is None:
        return Judgement(failures=tuple(failures), interval=None)

    if (candidate.task, candidate.primary) != (champion.task, champion.primary):
        raise ValueError(
            f"cannot compare a {candidate.task} candidate with a {champion.task} champion: "
            "they were not scored on one golden set"
        )
    if len(candidate.per_example) != len(champion.per_example):
        raise ValueError(
            f"cannot compare {len(candidate.per_example)} candidate scores with "
            f"{len(champion.per_example)} champion scores: they were not measured on one golden set"
        )
    interval = paired_bootstrap(
        candidate.per_example,
        champion.per_example,
        confidence=thresholds.confidence,
        resamples=thresholds.resamples,
        seed=thresholds.seed,
    )
    ci = f"{_figure(interval.confidence * 100)}% CI"
    if interval.mean_difference < thresholds.promotion_margin - _ROUNDING:
        failures.append(
            f"{metric} on the golden set: mean paired difference {interval.mean_difference:+.4f} "
            f"({ci} {interval.low:+.4f} to {interval.high:+.4f}, {interval.resamples} resamples, "
            f"seed {interval.seed}) is below the margin {_figure(thresholds.promotion_margin)} "
            f"({thresholds.source('promotion_margin')})"
        )
    if interval.low < -thresholds.promotion_tolerance - _ROUNDING:
        failures.append(
            f"{metric} on the golden set: the {ci}'s low bound {interval.low:+.4f} is below "
            f"{_figure(-thresholds.promotion_tolerance)}, the tolerance "
            f"({thresholds.source('promotion_tolerance')})"
        )

    changes: dict[str, float] = {}
    for label in sorted(candidate.per_class.keys() & champion.per_class.keys()):
        before = champion.per_class[label].accuracy
        after = candidate.per_class[label].accuracy
        changes[label] = after - before
        if before - after > thresholds.max_class_regression + _ROUNDING:
            failures.append(
                f"class {label!r}: accuracy drops by {before - after:.4f} ({before:.4f} -> "
                f"{after:.4f}), more than {_figure(thresholds.max_class_regression)} "
                f"({thresholds.source('max_class_regression')})"
            )
    return Judgement(failures=tuple(failures), interval=interval, class_changes=changes)


def _figure(value: float) -> str:
    # A threshold as it was written: 0.05, not 0.0500; adding 0.0 turns -0.0 into 0.
    return f"{value + 0.0:g}"
