"""The ablation summary's intervals (holdout posts and seeds, paired across arms) and the recipe decision, on
synthetic holdout scores: an arm whose scores equal the baseline's has a zero paired difference; a clearly better
arm wins; a slightly better one on a small holdout does not separate."""

import numpy as np
import pytest

from tagwatch.stats import bootstrap, percentile_interval, replicate_means, resample_indices
from tagwatch.train.ablations import ArmScores, Holdout, choose_recipe, difference, summarise


def _holdout(n: int = 120, seed: int = 0) -> tuple[Holdout, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = rng.random((n, 2)) < 0.25
    targets[0] = True  # every category has a positive
    return Holdout(targets, targets.copy(), np.array([1]), ["weapons", "alcohol"]), targets


def _arm(targets: np.ndarray, signal: float, seed: int, hashtags: bool = False) -> ArmScores:
    noise = np.random.default_rng(seed).normal(size=targets.shape)
    scores = signal * targets + noise
    return ArmScores(scores, scores, scores if hashtags else None, scores if hashtags else None)


def test_resample_indices_pair_and_bootstrap_is_unchanged() -> None:
    a, b = resample_indices(10, resamples=5, seed=3), resample_indices(10, resamples=5, seed=3)
    assert a.shape == (5, 10) and (a == b).all()
    values = np.arange(10.0)
    rng = np.random.default_rng(3)  # the draws bootstrap made before resample_indices existed
    old = percentile_interval(np.array([values[rng.integers(0, 10, 10)].mean() for _ in range(50)]))
    assert bootstrap(lambda idx: values[idx].mean(), 10, resamples=50, seed=3) == old
    assert percentile_interval(np.array([np.nan])) == (None, None)


def test_replicate_means_resamples_seeds_and_skips_nan() -> None:
    draws = np.array([[1.0, 1.0, 1.0], [0.0, 2.0, np.nan]])
    means = replicate_means(draws, seed=0)
    assert means[0] == 1.0 and (means[1] in (0.0, 1.0, 2.0) or np.isnan(means[1]))
    assert np.all(replicate_means(draws - draws, seed=0)[np.isfinite(means)] == 0)


def test_summary_intervals_cover_holdout_sampling_and_are_paired() -> None:
    holdout, targets = _holdout()
    runs = [{"imagenet_probe": _arm(targets, 1.0, 0), "hashtag_probe": _arm(targets, 1.0, 0, hashtags=True)}
            for _ in range(3)]  # deterministic arms: the seeds agree, only the holdout varies
    summary = summarise(runs, holdout, resamples=200)
    base = summary["arms"]["imagenet_probe"]["category_map"]
    assert base["seed_low"] == base["seed_high"] == base["mean"]  # no training randomness ...
    assert base["low"] < base["mean"] < base["high"]  # ... but the holdout's sampling error is in the interval
    same = difference(summary, "hashtag_probe", "imagenet_probe")
    assert same["mean"] == same["low"] == same["high"] == 0  # same scores, same resampled posts
    assert {"hashtag_map", "hashtag_map_rare"} <= set(summary["arms"]["hashtag_probe"])
    assert choose_recipe(summary)["default"] == "imagenet_probe"


def test_choose_recipe_needs_a_paired_interval_above_zero_and_takes_the_cheapest_tie() -> None:
    holdout, targets = _holdout(n=300)
    runs = [{"imagenet_probe": _arm(targets, 0.3, 0), "hashtag_probe": _arm(targets, 2.5, 10 + s, hashtags=True),
             "hashtag_finetune": _arm(targets, 2.6, 20 + s), "scratch": _arm(targets, 0.3, 30 + s)}
            for s in range(3)]
    summary = summarise(runs, holdout, resamples=200)
    decision = choose_recipe(summary)
    assert set(decision["winners"]) == {"hashtag_probe", "hashtag_finetune"}
    assert decision["default"] == "hashtag_probe"  # cheaper, and not separated from the fine-tuned arm
    flipped = difference(summary, "hashtag_probe", "hashtag_finetune")
    stored = summary["paired"]["hashtag_finetune - hashtag_probe"]["category_map"]
    assert flipped["mean"] == pytest.approx(-stored["mean"]) and flipped["low"] == pytest.approx(-stored["high"])

    small, t = _holdout(n=40, seed=1)
    close = [{"imagenet_probe": _arm(t, 1.0, 0), "hashtag_probe": _arm(t, 1.1, 5 + s, hashtags=True)}
             for s in range(3)]
    decision = choose_recipe(summarise(close, small, resamples=200))
    assert decision["default"] == "imagenet_probe" and "nothing separates" in decision["why"]
