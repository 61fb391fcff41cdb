"""The transfer step's policy: which scores it is calibrated on, their population weights, and the constraints.

Calibration scores must come from heads that did not train on them: ``val`` predictions of the trained model, or
(lbfgs probe) out-of-fold scores of train + val from cross-fitting, which holds about four times the positives of
val alone. The holdout is never touched here: its figures judge the policy afterwards.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tagwatch.errors import ConfigError
from tagwatch.train.operating_points import Constraints
from tagwatch.train.policy import build_policy
from tagwatch.train.population import moderation_positive, split_weights

OTHER_CATEGORY = "other"  # the data build's "no moderation category applies": never actioned


def calibration_mode(*, calibration: str, mode: str, probe_solver: str) -> str:
    """``val`` or ``crossfit`` for a transfer config (``auto``: crossfit exactly when the lbfgs probe runs)."""
    lbfgs = mode == "probe" and probe_solver == "lbfgs"
    if calibration == "auto":
        return "crossfit" if lbfgs else "val"
    if calibration == "crossfit" and not lbfgs:
        raise ConfigError("--calibration crossfit needs the lbfgs probe (--mode probe --probe-solver lbfgs)",
                          hint="use --calibration val with SGD training")
    return calibration


def constraints_of(cfg: Any) -> Constraints:
    return Constraints(review_budget=cfg.review_budget, remove_precision=cfg.remove_precision,
                       confidence=cfg.confidence, min_positives=cfg.min_calibration_positives)


def make_policy(*, cfg: Any, dataset: Any, categories: list[str], model_ref: dict[str, Any], version: str,
                crossfit: dict[str, np.ndarray] | None = None, val: Any = None) -> dict[str, Any]:
    """``crossfit``: {"scores", "targets", "origin" (0 train, 1 val)} from the probe fit; else ``val`` predictions."""
    if crossfit is not None:
        scores, targets = crossfit["scores"], crossfit["targets"]
        splits = np.where(crossfit["origin"] == 1, "val", "train")
        source = f"train+val out-of-fold ({cfg.crossfit_folds}-fold cross-fit)"
    elif val is not None:
        scores, targets, splits, source = val.category_scores, val.category_targets, ["val"] * len(val.keys), "val"
    else:
        raise ValueError("make_policy needs crossfit scores or val predictions")
    return policy_from_scores(scores=scores, targets=targets, splits=list(splits), source=source,
                              constraints=constraints_of(cfg), dataset=dataset, categories=categories,
                              model_ref=model_ref, version=version)


def policy_from_scores(*, scores: np.ndarray, targets: np.ndarray, splits: list[str], source: str,
                       constraints: Constraints, dataset: Any, categories: list[str], model_ref: dict[str, Any],
                       version: str) -> dict[str, Any]:
    """The policy of calibration ``scores`` (one row per post of ``splits``, weighted to natural traffic with the
    dataset's split rates) under ``constraints``; ``other`` is never actioned. Also what `tagwatch policy
    calibrate` runs on a registered model's scores."""
    positive = moderation_positive(targets, categories, OTHER_CATEGORY)
    weights, population = split_weights(dataset.manifest, splits, positive)
    return build_policy(
        scores=scores, targets=targets, category_names=categories, model=model_ref, version=version,
        calibration={"dataset": dataset.uri, "split": source, "images": int(len(scores)), "population": population},
        constraints=constraints, weights=weights, severity=getattr(dataset, "severity", None) or {},
        not_moderated=frozenset({OTHER_CATEGORY}))
