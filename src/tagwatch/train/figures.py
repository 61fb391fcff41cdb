"""Figures with uncertainty for a policy on labelled posts (the holdout): what the transfer report, the
promotion gate, the Kubeflow UI and the demo all show, computed once here.

Per category: AP with a bootstrap CI; at the policy's operating point, precision (posts its rule flags) and recall
(its positives that end in review or remove, for whatever reason) with Wilson CIs; its review share; auto-remove
precision; chance levels beside them (prevalence). Overall: actions, review rate and remove rate with CIs, and the
"moderation mAP" over acting categories with enough positives (never ``other``, never a category with one
positive). Rates and precision are population-weighted (``population.py``): the holdout over-samples positives.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tagwatch.stats import Estimate, average_precision_ci, weighted_proportion

ACTIONS = ("allow", "review", "remove")


def rule_flags(policy: dict[str, Any], scores: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per category column of ``names``: (review-or-remove flags [N, C], remove flags [N, C]) under the policy's
    acting rules; monitor/off categories and categories the policy lacks never flag."""
    review = np.zeros(scores.shape, dtype=bool)
    remove = np.zeros(scores.shape, dtype=bool)
    for j, name in enumerate(names):
        rule = policy.get("categories", {}).get(name)
        if not rule or rule.get("mode", "act") != "act":
            continue
        remove[:, j] = scores[:, j] >= rule["remove_threshold"]
        review[:, j] = remove[:, j] | (scores[:, j] >= rule["review_threshold"])
    return review, remove


def policy_actions(policy: dict[str, Any], scores: np.ndarray, names: list[str]) -> np.ndarray:
    """0 allow, 1 review, 2 remove per post: the strictest action any acting category earns."""
    review, remove = rule_flags(policy, scores, names)
    return np.where(remove.any(axis=1), 2, np.where(review.any(axis=1), 1, 0)) if len(scores) else np.zeros(0, int)


def policy_figures(*, policy: dict[str, Any], scores: np.ndarray, targets: np.ndarray, names: list[str],
                   actions: np.ndarray | None = None, weights: np.ndarray | None = None, population: str = "",
                   confidence: float | None = None, min_positives: int | None = None, resamples: int = 1000,
                   seed: int = 0) -> dict[str, Any]:
    """Figures of ``policy`` on posts with ``scores`` [N, C] and ``targets`` [N, C] (columns ``names``).
    ``actions`` (0/1/2 per post): what was really decided (the stream; bank matches included); default: the
    policy applied to the scores. ``confidence``/``min_positives`` default to the policy's constraints."""
    scores = np.asarray(scores, dtype=float)
    targets = np.asarray(targets) > 0
    constraints = policy.get("constraints", {})
    confidence = confidence or constraints.get("confidence", 0.95)
    min_positives = constraints.get("min_positives", 10) if min_positives is None else min_positives
    actions = policy_actions(policy, scores, names) if actions is None else np.asarray(actions)
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=float)
    review_flags, remove_flags = rule_flags(policy, scores, names)
    caught = actions >= 1
    categories: dict[str, Any] = {}
    for j, name in enumerate(names):
        rule = policy.get("categories", {}).get(name, {})
        mode = rule.get("mode", "act") if rule else "absent"
        y = targets[:, j]
        positives = int(y.sum())
        entry: dict[str, Any] = {
            "mode": mode, "reason": rule.get("reason", ""), "positives": positives,
            "chance": weighted_proportion(y, w, confidence=confidence).value,
            "ap": average_precision_ci(scores[:, j], y, resamples=resamples, seed=seed + j,
                                       confidence=confidence).to_dict(),
        }
        if mode == "act":
            flagged = review_flags[:, j]
            entry.update(
                precision=_share(y[flagged], w[flagged], confidence),
                recall=_share(caught[y], None, confidence),
                review_rate=_share((flagged & (actions == 1)), w, confidence),
                flagged=int(flagged.sum()),
                removed=int(remove_flags[:, j].sum()),
                remove_precision=_share(y[remove_flags[:, j]], w[remove_flags[:, j]], confidence),
                review_threshold=rule.get("review_threshold"), remove_threshold=rule.get("remove_threshold"),
            )
        elif mode == "monitor":
            threshold = rule.get("monitor_threshold")
            hits = scores[:, j] >= threshold if threshold is not None else np.zeros(len(y), bool)
            entry.update(monitor_hits=int(hits.sum()), monitor_threshold=threshold,
                         monitor_precision=_share(y[hits], w[hits], confidence))
        categories[name] = entry
    acting = [n for n, e in categories.items() if e["mode"] == "act" and e["positives"] >= min_positives
              and e["ap"]["value"] is not None]
    aps = [categories[n]["ap"]["value"] for n in acting]
    moderation_positive = targets[:, [j for j, n in enumerate(names) if categories[n]["mode"] in ("act",)]].any(axis=1) \
        if any(categories[n]["mode"] == "act" for n in names) else np.zeros(len(scores), bool)
    return {
        "posts": int(len(scores)),
        "population": population,
        "confidence": confidence,
        "actions": {a: int((actions == i).sum()) for i, a in enumerate(ACTIONS)},
        "review_rate": _share(actions == 1, w, confidence),
        "review_rate_unweighted": float((actions == 1).mean()) if len(actions) else None,
        "remove_rate": _share(actions == 2, w, confidence),
        "remove_precision": _share(moderation_positive[actions == 2], w[actions == 2], confidence),
        "recall": _share(caught[moderation_positive], None, confidence),
        "review_budget": constraints.get("review_budget"),
        "moderation_map": float(np.mean(aps)) if aps else None,
        "moderation_map_categories": acting,
        "categories": categories,
    }


def _share(hits: np.ndarray, weights: np.ndarray | None, confidence: float) -> dict[str, float | None]:
    return weighted_proportion(hits, weights, confidence=confidence).to_dict() if len(hits) else \
        Estimate(None, None, None, 0.0).to_dict()
