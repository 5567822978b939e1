"""A seeded paired-bootstrap confidence interval of the mean per-example difference."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    """The mean of challenger - champion over the examples, and its bootstrap interval."""

    mean_difference: float
    low: float
    high: float
    confidence: float
    resamples: int
    seed: int


def paired_bootstrap(
    challenger: Sequence[float],
    champion: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """The ``confidence`` interval of the mean of ``challenger[i] - champion[i]``.

    Paired: the per-example differences are resampled (an example's two scores always travel
    together), with scipy's percentile bootstrap and numpy's ``default_rng(seed)``, so the same
    inputs always give the same interval. When every difference is the same value the interval is
    that value at both ends (there is nothing to resample; scipy would warn).

    Raises:
        ValueError: the sequences differ in length or are empty; ``confidence`` is not strictly
            between 0 and 1; ``resamples`` is below 1.
    """
    if len(challenger) != len(champion):
        raise ValueError(
            f"a paired comparison needs one score per example from each model: "
            f"{len(challenger)} challenger scores but {len(champion)} champion scores"
        )
    if not challenger:
        raise ValueError("a paired comparison needs at least one example")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, not {confidence!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples!r}")

    differences = [float(a) - float(b) for a, b in zip(challenger, champion, strict=True)]
    if all(d == differences[0] for d in differences):
        return Interval(
            mean_difference=differences[0],
            low=differences[0],
            high=differences[0],
            confidence=confidence,
            resamples=resamples,
            seed=seed,
        )

    import numpy as np
    from scipy.stats import bootstrap

    sample = np.asarray(differences, dtype=float)
    result = bootstrap(
        (sample,),
        np.mean,
        n_resamples=resamples,
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return Interval(
        mean_difference=float(np.mean(sample)),
        low=float(result.confidence_interval.low),
        high=float(result.confidence_interval.high),
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )
