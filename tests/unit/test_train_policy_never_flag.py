"""The data build's "other" (no moderation category applies) is a category of the model but must never make a
post reviewed or removed: the policy gives it thresholds no score reaches."""

from __future__ import annotations

import numpy as np

from tagwatch.train.policy import NEVER, build_policy


def test_never_flag_category_gets_unreachable_thresholds() -> None:
    rng = np.random.default_rng(0)
    targets = np.zeros((200, 2))
    targets[:100, 0] = 1
    targets[100:, 1] = 1  # "other" perfectly predictable: calibration alone would flag it
    scores = np.clip(targets + rng.normal(0, 0.1, targets.shape), 0, 1)
    policy = build_policy(scores=scores, targets=targets, category_names=["weapons", "other"], target_precision=0.9,
                          target_recall=0.9, model={}, calibration={}, version="p", never_flag=frozenset({"other"}))
    other, weapons = policy["categories"]["other"], policy["categories"]["weapons"]
    assert other["remove_threshold"] == NEVER and other["review_threshold"] == NEVER and NEVER > 1.0
    assert other["positives"] == 100  # the calibration record is kept
    assert weapons["remove_threshold"] < 1.0 and weapons["review_threshold"] < 1.0


def test_too_few_calibration_positives_never_flag() -> None:
    """One val positive scoring low would put the review threshold under almost every post: never flag instead."""
    import numpy as np

    from tagwatch.train.policy import NEVER, build_policy

    scores = np.array([[0.9, 0.05], [0.8, 0.30], [0.7, 0.20], [0.1, 0.25], [0.2, 0.40], [0.3, 0.35]])
    targets = np.array([[1, 1], [1, 0], [1, 0], [0, 0], [0, 0], [0, 0]])
    policy = build_policy(scores=scores, targets=targets, category_names=["weapons", "violence"], target_precision=0.9,
                          target_recall=0.8, model={}, calibration={}, version="p", min_positives=3)
    assert policy["categories"]["weapons"]["review_threshold"] < NEVER  # 3 positives: calibrated
    assert policy["categories"]["violence"]["review_threshold"] == NEVER == policy["categories"]["violence"]["remove_threshold"]
    loose = build_policy(scores=scores, targets=targets, category_names=["weapons", "violence"], target_precision=0.9,
                         target_recall=0.8, model={}, calibration={}, version="p")
    assert loose["categories"]["violence"]["review_threshold"] <= 0.05  # what min_positives prevents
