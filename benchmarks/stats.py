"""Statistics of the benchmark: means with 95 % bootstrap intervals, paired differences, baselines.

Every seed of a (task, framework, method) is scored on the SAME test examples, so the scores
form a matrix ``scores[seed][example]`` (0/1, or a value in [0, 1]). One bootstrap replicate
draws the seeds with replacement and, independently, the test examples with replacement, and
takes the mean of the drawn cells (in %): the interval (2.5th and 97.5th percentiles of
``B`` replicates) covers both the sampling of test examples and the variation between seeds.

A difference between two methods is computed *paired*: each replicate draws one set of seeds and
examples and applies it to both matrices (seed ``k`` of one side is paired with seed ``k`` of the
other, which share train/val splits). The difference is *real* when its interval excludes 0.

Pure and seeded (the same input gives the same interval); numpy only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_REPLICATES = 2000


@dataclass(frozen=True)
class Interval:
    """A mean in % with its 95 % bootstrap interval."""

    mean: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0

    def to_dict(self) -> dict[str, float]:
        return {"mean": round(self.mean, 2), "low": round(self.low, 2), "high": round(self.high, 2)}

    def text(self) -> str:
        return f"{self.mean:.1f} [{self.low:.1f}, {self.high:.1f}]"


def _matrix(scores: Sequence[Sequence[float]]) -> np.ndarray:
    if not scores or not scores[0]:
        raise ValueError("bootstrap: no scores (need at least one seed with one test example)")
    widths = {len(row) for row in scores}
    if len(widths) != 1:
        raise ValueError(
            f"bootstrap: every seed must score the same test examples, got sizes {sorted(widths)}"
        )
    return np.asarray(scores, dtype=float)


def _draws(n_seeds: int, n_examples: int, replicates: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(replicates, n_seeds))
    examples = rng.integers(0, n_examples, size=(replicates, n_examples))
    return seeds, examples


def _replicate_means(m: np.ndarray, seeds: np.ndarray, examples: np.ndarray) -> np.ndarray:
    # mean over the drawn seeds of (mean over the drawn examples): m[seeds][:, :, examples]
    per_seed_example_means = np.stack([m[:, ex].mean(axis=1) for ex in examples])  # (B, n_seeds)
    picked = np.take_along_axis(per_seed_example_means, seeds, axis=1)
    return 100.0 * picked.mean(axis=1)


def bootstrap_mean(
    scores: Sequence[Sequence[float]], replicates: int = DEFAULT_REPLICATES, seed: int = 0
) -> Interval:
    """The mean (in %) of ``scores[seed][example]`` and its 95 % interval (seeds × examples)."""
    m = _matrix(scores)
    seeds, examples = _draws(m.shape[0], m.shape[1], replicates, seed)
    reps = _replicate_means(m, seeds, examples)
    low, high = np.percentile(reps, [2.5, 97.5])
    return Interval(float(100.0 * m.mean()), float(low), float(high))


def paired_difference(
    a: Sequence[Sequence[float]],
    b: Sequence[Sequence[float]],
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 0,
) -> Interval:
    """``mean(a) - mean(b)`` in points with a paired 95 % interval (same seed and example draws)."""
    ma, mb = _matrix(a), _matrix(b)
    if ma.shape != mb.shape:
        raise ValueError(f"paired difference: shapes differ ({ma.shape} vs {mb.shape})")
    seeds, examples = _draws(ma.shape[0], ma.shape[1], replicates, seed)
    reps = _replicate_means(ma - mb, seeds, examples)
    low, high = np.percentile(reps, [2.5, 97.5])
    return Interval(float(100.0 * (ma - mb).mean()), float(low), float(high))


def majority_baseline(gold: Sequence[Any]) -> tuple[Any, float]:
    """The most common gold label and the accuracy (%) of always predicting it."""
    if not gold:
        raise ValueError("majority baseline: no gold labels")
    label, count = Counter(gold).most_common(1)[0]
    return label, 100.0 * count / len(gold)


def prediction_counts(predictions: Sequence[Any]) -> dict[str, int]:
    """How often each prediction occurs (``None`` as ``"<none>"``), most common first."""
    counts = Counter("<none>" if p is None else str(p) for p in predictions)
    return dict(counts.most_common())


def collapsed(predictions: Sequence[Any], gold: Sequence[Any]) -> bool:
    """True when one label was predicted for every input while the gold labels are not all one.

    Failures (``None``) are not a label: a program that failed on every input is not collapsed
    (its errors are counted apart)."""
    distinct = set(map(str, predictions))
    return len(distinct) == 1 and None not in predictions and len(set(map(str, gold))) > 1


__all__ = [
    "DEFAULT_REPLICATES",
    "Interval",
    "bootstrap_mean",
    "collapsed",
    "majority_baseline",
    "paired_difference",
    "prediction_counts",
]
