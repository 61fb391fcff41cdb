"""Confidence intervals for the figures tagwatch reports: proportions (Wilson score interval, with Kish's effective
sample size when observations carry population weights), average precision (percentile bootstrap) and paired
differences of two policies on the same posts (paired bootstrap).

Every figure a policy or a gate acts on comes with an interval: with a few dozen positives a point estimate is
mostly noise (a precision of 1.0 on 5 flagged posts has a 95 % lower bound of 0.57).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval; ``n`` is the (effective) number of observations."""

    value: float | None
    low: float | None
    high: float | None
    n: float = 0.0

    def to_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: float, trials: float, *, confidence: float = 0.95) -> Estimate:
    """Wilson score interval for a proportion; (None, None, None) when there are no trials."""
    if trials <= 0:
        return Estimate(None, None, None, 0.0)
    p = min(max(successes / trials, 0.0), 1.0)
    z = _z(confidence)
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # the interval always holds p; clamping keeps float rounding (p = 1, high = 0.9999999999999998) from saying not
    return Estimate(p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)), float(trials))


def weighted_proportion(hits: np.ndarray, weights: np.ndarray | None = None, *,
                        confidence: float = 0.95) -> Estimate:
    """Share of ``hits`` (bool per observation) under population ``weights``, with a Wilson interval on Kish's
    effective sample size (sum w)^2 / sum w^2 (equal weights: the plain Wilson interval)."""
    hits = np.asarray(hits, dtype=bool)
    if weights is None:
        return wilson(float(hits.sum()), float(len(hits)), confidence=confidence)
    weights = np.asarray(weights, dtype=float)
    total = float(weights.sum())
    if total <= 0:
        return Estimate(None, None, None, 0.0)
    share = float(weights[hits].sum()) / total
    effective = total * total / float((weights * weights).sum())
    return wilson(share * effective, effective, confidence=confidence)


def resample_indices(n: int, *, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """[resamples, n]: each row n indices drawn with replacement. Two statistics evaluated on the same rows are
    paired (the same posts in every resample)."""
    rng = np.random.default_rng(seed)
    return np.array([rng.integers(0, n, n) for _ in range(resamples)], dtype=np.int64).reshape(resamples, n)


def percentile_interval(values: np.ndarray, *, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile interval of bootstrap draws; undefined draws (NaN) are left out."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return None, None
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def bootstrap(statistic: Callable[[np.ndarray], float], n: int, *, resamples: int = 1000, seed: int = 0,
              confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile interval of ``statistic(indices)`` over ``resamples`` draws of n indices with replacement;
    draws where the statistic is undefined (NaN) are left out."""
    if n == 0:
        return None, None
    values = [statistic(idx) for idx in resample_indices(n, resamples=resamples, seed=seed)]
    return percentile_interval(np.array(values, dtype=float), confidence=confidence)


def replicate_means(draws: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Two-level bootstrap over items and replicates: ``draws[r, k]`` is a figure on bootstrap resample r of the
    items (e.g. holdout posts) for replicate k (e.g. training seed); returns per resample r the mean over k
    replicates drawn with replacement (NaNs left out). The replicate draws depend only on the shape and
    ``seed``, so two figures' draws of the same shape stay paired: subtract before or after, the same."""
    draws = np.asarray(draws, dtype=float)
    resamples, replicates = draws.shape
    picks = np.random.default_rng(seed).integers(0, replicates, (resamples, replicates))
    chosen = np.take_along_axis(draws, picks, axis=1)
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(chosen).sum(1)
        return np.where(counts > 0, np.nansum(chosen, 1) / np.maximum(counts, 1), np.nan)


def average_precision_ci(scores: np.ndarray, labels: np.ndarray, *, resamples: int = 1000, seed: int = 0,
                         confidence: float = 0.95) -> Estimate:
    """Average precision with a percentile bootstrap interval (posts resampled with replacement)."""
    from tagwatch.train.evaluate import average_precision

    labels = np.asarray(labels, dtype=bool)
    value = average_precision(scores, labels)
    if value != value:
        return Estimate(None, None, None, float(len(labels)))
    low, high = bootstrap(lambda idx: average_precision(scores[idx], labels[idx]), len(labels),
                          resamples=resamples, seed=seed, confidence=confidence)
    return Estimate(value, low, high, float(len(labels)))


def paired_difference(a: np.ndarray, b: np.ndarray, mask: np.ndarray, *, resamples: int = 1000, seed: int = 0,
                      confidence: float = 0.95) -> Estimate:
    """mean(a[mask]) - mean(b[mask]) for two 0/1 outcomes on the same posts (e.g. "caught by the candidate" vs
    "caught by production" over the positives), with a paired bootstrap interval."""
    a, b, mask = np.asarray(a, float), np.asarray(b, float), np.asarray(mask, bool)
    if not mask.any():
        return Estimate(None, None, None, 0.0)
    diff = a[mask] - b[mask]
    low, high = bootstrap(lambda idx: float(diff[idx].mean()), len(diff), resamples=resamples, seed=seed,
                          confidence=confidence)
    return Estimate(float(diff.mean()), low, high, float(len(diff)))


# Student's t 97.5 % quantiles (two-sided 95 %) by degrees of freedom; beyond the table the normal's 1.96 is
# within 4 %.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         15: 2.131, 20: 2.086, 30: 2.042}


def mean_ci(values: list[float] | np.ndarray) -> Estimate:
    """Mean of independent replicates (e.g. one figure per seed) with its 95 % Student t interval; NaNs left
    out; the interval is None with fewer than two values."""
    data = np.asarray([v for v in values if v is not None and v == v], dtype=float)
    if not len(data):
        return Estimate(None, None, None, 0.0)
    mean = float(data.mean())
    if len(data) < 2:
        return Estimate(mean, None, None, float(len(data)))
    df = len(data) - 1
    t = _T975.get(df) or _T975[max(k for k in _T975 if k <= df)] if df <= 30 else 1.96
    half = t * float(data.std(ddof=1)) / math.sqrt(len(data))
    return Estimate(mean, mean - half, mean + half, float(len(data)))
