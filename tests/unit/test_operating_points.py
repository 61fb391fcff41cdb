"""The constrained calibrator (train/operating_points.py) on constructed score distributions: the review budget is
respected exactly and spent where it buys recall, auto-removal needs the CI lower bound of precision, thin
evidence means monitor mode, ``other`` is off; and the policy file it writes is schema-valid."""

from __future__ import annotations

import numpy as np
import pytest

from tagwatch.stats import wilson
from tagwatch.train.operating_points import NEVER, Constraints, calibrate
from tagwatch.train.policy import build_policy, validate_policy

pytestmark = pytest.mark.unit


def _posts(n: int = 4000, seed: int = 0):
    """weapons: 200 positives well separated; alcohol: 120 positives, weakly separated; tobacco: 6 positives."""
    rng = np.random.default_rng(seed)
    targets = np.zeros((n, 4), dtype=bool)
    targets[:200, 0] = True
    targets[200:320, 1] = True
    targets[320:326, 2] = True
    targets[:, 3] = ~targets[:, :3].any(axis=1)
    scores = rng.random((n, 4)) * 0.6
    scores[targets[:, 0], 0] += 0.4
    scores[targets[:, 1], 1] += 0.15
    scores[targets[:, 2], 2] += 0.4
    return scores, targets


NAMES = ["weapons", "alcohol", "tobacco", "other"]


def _review_share(result, scores, weights=None):
    cats = result["categories"]
    remove = np.zeros(len(scores), bool)
    review = np.zeros(len(scores), bool)
    for j, name in enumerate(NAMES):
        if cats[name]["mode"] != "act":
            continue
        remove |= scores[:, j] >= cats[name]["remove_threshold"]
        review |= scores[:, j] >= cats[name]["review_threshold"]
    w = np.ones(len(scores)) if weights is None else weights
    return float(w[review & ~remove].sum() / w.sum())


@pytest.mark.parametrize("budget", [0.01, 0.03, 0.05, 0.2])
def test_the_review_budget_is_respected_exactly(budget: float) -> None:
    scores, targets = _posts()
    result = calibrate(scores, targets, NAMES, constraints=Constraints(review_budget=budget, budget_bound=False),
                       not_moderated=frozenset({"other"}))
    share = _review_share(result, scores)
    assert share <= budget + 1e-12
    assert result["expected"]["review_rate"]["value"] == pytest.approx(share)
    assert share >= budget * 0.8  # the greedy spends (nearly) all of it: alcohol has recall left to buy
    # Lowering any acting category's review threshold to its next uncaught positive would break the budget or buy
    # nothing: the allocation stops only when it must.
    cats = result["categories"]
    assert cats["alcohol"]["review"]["enabled"]


@pytest.mark.parametrize("budget", [0.01, 0.05])
def test_by_default_the_budget_holds_at_the_upper_confidence_bound(budget: float) -> None:
    scores, targets = _posts()
    result = calibrate(scores, targets, NAMES, constraints=Constraints(review_budget=budget),
                       not_moderated=frozenset({"other"}))
    share = _review_share(result, scores)
    assert wilson(share * len(scores), len(scores)).high <= budget + 1e-9
    assert result["expected"]["review_rate"]["high"] <= budget + 1e-9
    assert share >= result["expected"]["review_share_spendable"] * 0.8  # and it still spends what it may


def test_population_weights_count_in_the_budget() -> None:
    scores, targets = _posts()
    weights = np.where(targets[:, 3], 10.0, 1.0)  # negatives are 10x as common in the traffic as here
    result = calibrate(scores, targets, NAMES, constraints=Constraints(review_budget=0.05), weights=weights,
                       not_moderated=frozenset({"other"}))
    assert _review_share(result, scores, weights) <= 0.05 + 1e-12
    unweighted = calibrate(scores, targets, NAMES, constraints=Constraints(review_budget=0.05),
                           not_moderated=frozenset({"other"}))
    # calibrated on the sample as it is, the policy underspends the budget on the traffic the weights describe
    # (positives are rarer there), so it buys less recall than it could
    assert _review_share(unweighted, scores, weights) < _review_share(result, scores, weights)


def test_severity_moves_the_budget_to_the_graver_harm() -> None:
    scores, targets = _posts()
    scores[targets[:, 0], 0] -= 0.25  # weapons now also needs review to be caught
    plain = calibrate(scores, targets, NAMES, constraints=Constraints(review_budget=0.01, remove_precision=1.0),
                      not_moderated=frozenset({"other"}))
    grave = calibrate(scores, targets, NAMES, constraints=Constraints(review_budget=0.01, remove_precision=1.0),
                      not_moderated=frozenset({"other"}), severity={"weapons": 5.0})
    recall = lambda r, c: r["categories"][c]["review"]["recall"]["value"]  # noqa: E731
    assert recall(grave, "weapons") > recall(plain, "weapons")
    assert recall(grave, "alcohol") <= recall(plain, "alcohol")


def test_auto_remove_needs_the_lower_bound_not_the_point_estimate() -> None:
    # 8 positives, all above every negative: point precision 1.0 at the top, but 8/8 has a Wilson lower bound of
    # 0.68 < 0.95: no auto-removal, and the reason says so.
    rng = np.random.default_rng(1)
    scores = rng.random((500, 1)) * 0.5
    targets = np.zeros((500, 1), bool)
    targets[:12, 0] = True
    scores[:8, 0] = 0.9 + rng.random(8) * 0.1
    result = calibrate(scores, targets, ["weapons"], constraints=Constraints(min_positives=10))
    weapons = result["categories"]["weapons"]
    assert weapons["mode"] == "act"
    assert weapons["remove_threshold"] == NEVER and not weapons["remove"]["enabled"]
    assert "lower bound" in weapons["remove"]["reason"] and "0.95" in weapons["remove"]["reason"]
    assert wilson(8, 8).low < 0.95
    # with 100 clean positives the same rule removes them
    targets = np.zeros((2000, 1), bool)
    targets[:100, 0] = True
    scores = rng.random((2000, 1)) * 0.5
    scores[:100, 0] += 0.5
    result = calibrate(scores, targets, ["weapons"])
    removal = result["categories"]["weapons"]["remove"]
    assert removal["enabled"] and removal["precision"]["low"] >= 0.95 and removal["recall"] == 1.0


def test_thin_evidence_is_monitor_mode_and_other_is_off() -> None:
    scores, targets = _posts()
    result = calibrate(scores, targets, NAMES, constraints=Constraints(min_positives=10),
                       not_moderated=frozenset({"other"}))
    tobacco, other = result["categories"]["tobacco"], result["categories"]["other"]
    assert tobacco["mode"] == "monitor" and "6 calibration positives < 10" in tobacco["reason"]
    assert tobacco["remove_threshold"] == NEVER == tobacco["review_threshold"]  # never actioned
    assert 0 < tobacco["monitor_threshold"] < 1  # but its hits are counted
    assert other["mode"] == "off" and other["review_threshold"] == NEVER and other["positives"] == len(scores) - 326


def test_policy_file_is_schema_valid_and_the_consumer_agrees_with_the_trainer() -> None:
    from tagwatch.moderation.policy import Policy, decide
    from tagwatch.train.figures import policy_actions

    scores, targets = _posts(1500)
    policy = build_policy(scores=scores, targets=targets, category_names=NAMES, model={"run_id": "r"},
                          calibration={"split": "val", "images": 1500}, version="p1",
                          not_moderated=frozenset({"other"}))
    validate_policy(policy)
    parsed = Policy.model_validate(policy)
    expected = policy_actions(policy, scores, NAMES)
    rank = {"allow": 0, "review": 1, "remove": 2}
    for row, want in zip(scores, expected):
        action, reasons = decide(dict(zip(NAMES, map(float, row))), parsed)
        assert rank[action] == int(want)
        if row[2] >= policy["categories"]["tobacco"]["monitor_threshold"]:
            assert any(r.startswith("monitor:tobacco") for r in reasons)


def test_population_weights_fix_the_class_mix_of_the_splits_used() -> None:
    from types import SimpleNamespace

    from tagwatch.train.population import split_weights

    rates = SimpleNamespace(positive={"train": 0.45, "val": 0.15, "holdout": 0.4},
                            negative={"train": 0.8, "val": 0.1, "holdout": 0.1})
    manifest = SimpleNamespace(split_rates=rates)
    positive = np.array([True, False, True, False])
    weights, population = split_weights(manifest, ["holdout"] * 4, positive)
    assert list(weights) == pytest.approx([2.5, 10, 2.5, 10]) and "natural" in population
    weights, _ = split_weights(manifest, ["train", "train", "val", "val"], positive)
    assert list(weights) == pytest.approx([1 / 0.6, 1 / 0.9, 1 / 0.6, 1 / 0.9])  # per class, not per split
    assert split_weights(SimpleNamespace(split_rates=None), ["val"], positive[:1])[0] is None


def test_a_monitor_threshold_is_never_below_the_heads_decision_point() -> None:
    rng = np.random.default_rng(3)
    scores = rng.random((1000, 1)) * 1e-3  # no positives: the head scores everything near 0
    result = calibrate(scores, np.zeros((1000, 1), bool), ["drugs"])
    assert result["categories"]["drugs"]["mode"] == "monitor"
    assert result["categories"]["drugs"]["monitor_threshold"] == 0.5


def test_a_wilson_interval_always_holds_its_point_estimate() -> None:
    for successes, trials in [(9, 9), (0, 7), (1, 1), (13.7, 13.7), (3, 11)]:
        estimate = wilson(successes, trials)
        assert estimate.low <= estimate.value <= estimate.high


def test_near_duplicates_share_a_group_and_a_cross_fit_fold() -> None:
    import torch

    from tagwatch.data.dedup import near_duplicate_groups
    from tagwatch.train.probe_fit import fold_of, out_of_fold_scores

    base = "f" * 64
    twin = "e" + "f" * 63  # 1 bit apart
    far = "0" * 64
    groups = near_duplicate_groups([base, twin, far, None, None])
    assert groups[0] == groups[1] and len({groups[0], groups[2], groups[3], groups[4]}) == 4
    rng = np.random.default_rng(0)
    features = torch.as_tensor(rng.normal(size=(200, 4)), dtype=torch.float32)
    targets = torch.as_tensor(rng.random((200, 1)) < 0.3, dtype=torch.float32)
    pairs = np.repeat(np.arange(100), 2)  # 100 twin pairs
    folds = fold_of(200, folds=5, seed=0, groups=pairs)
    assert bool((folds[0::2] == folds[1::2]).all()) and sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
    assert not bool((fold_of(200, folds=5, seed=0)[0::2] == fold_of(200, folds=5, seed=0)[1::2]).all())
    scores = out_of_fold_scores(features, targets, folds=5, l2=1e-3, max_iter=50, seed=0, groups=pairs)
    assert scores.shape == (200, 1) and bool(((scores > 0) & (scores < 1)).all())
