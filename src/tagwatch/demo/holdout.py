"""The demo's figures on the held-out posts the stream decided, with confidence intervals.

The scores and actions are the stream's own (each post's ledger record: bank matches and reused decisions count as
decided), the labels are the holdout's, the policy is the one the registry version served and the population
weights come from the dataset manifest. ``tagwatch.train.figures.policy_figures`` computes the figures every
consumer of the holdout shares (transfer report, gate, Kubeflow UI); this module adds what the demo shows beside
them: the raw review share of this stream, the chance levels of each figure, the category's operating points
(review, remove, and the point where it alone would spend the whole review budget) and the confusion counts.

Why two review rates: the data build sends moderation positives to the holdout at a higher rate than other posts
(``DatasetManifest.split_rates``), so the share of *this stream* that went to review overstates natural traffic.
``review_rate`` re-weights each post by 1 / its class's holdout rate (``train/population.py``) and is the figure
held against the review budget; ``review_rate_stream`` is the raw share, labelled as such.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tagwatch.stats import weighted_proportion
from tagwatch.train.figures import ACTIONS, policy_figures
from tagwatch.train.population import AS_SAMPLED, split_weights

OTHER = "other"  # the data build's "no moderation category applies"


def holdout_arrays(published: list[Any], decisions: dict[str, dict[str, Any]],
                   categories: list[str]) -> tuple[list[Any], np.ndarray, np.ndarray, np.ndarray]:
    """(decided posts, scores [N, C], targets [N, C], actions [N] 0 allow / 1 review / 2 remove) in published
    order; posts without a decision (dead-lettered or lost) are left out."""
    posts = [p for p in published if p.post_id in decisions]
    scores = np.array([[float(decisions[p.post_id]["scores"].get(c, 0.0)) for c in categories] for p in posts],
                      dtype=float).reshape(len(posts), len(categories))
    targets = np.array([[c in p.categories for c in categories] for p in posts], dtype=bool).reshape(
        len(posts), len(categories))
    actions = np.array([ACTIONS.index(decisions[p.post_id]["action"]) for p in posts], dtype=int)
    return posts, scores, targets, actions


def holdout_weights(manifest: Any, posts: list[Any]) -> tuple[np.ndarray | None, str]:
    """Population weights of held-out posts from the manifest's split rates; (None, AS_SAMPLED) without them.
    "Positive" is what the data build's split assignment calls positive: any category but ``other``."""
    if manifest is None:
        return None, AS_SAMPLED
    positive = np.array([list(p.categories) != [OTHER] for p in posts], dtype=bool)
    return split_weights(manifest, ["holdout"] * len(posts), positive)


def operating_point(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None, threshold: float | None, *,
                    confidence: float = 0.95) -> dict[str, Any] | None:
    """Flag posts with score >= ``threshold``: how many, their (population) share, precision (population-weighted)
    and recall over the positives, with Wilson CIs. None when the threshold is absent or above every score a
    sigmoid can give (the policy's "never")."""
    if threshold is None or threshold > 1.0:
        return None
    labels = np.asarray(labels, dtype=bool)
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=float)
    flagged = np.asarray(scores) >= threshold
    return {
        "threshold": float(threshold),
        "flagged": int(flagged.sum()),
        "share": weighted_proportion(flagged, w, confidence=confidence).value if len(w) else None,
        "precision": weighted_proportion(labels[flagged], w[flagged], confidence=confidence).to_dict(),
        "recall": weighted_proportion(flagged[labels], confidence=confidence).to_dict(),
    }


def budget_threshold(scores: np.ndarray, weights: np.ndarray | None, budget: float | None) -> float | None:
    """The lowest threshold at which this category alone flags at most ``budget`` of the posts (population share;
    tied scores go in together or not at all); None when even its top score costs more."""
    if budget is None or not len(scores):
        return None
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=float)
    order = np.argsort(-np.asarray(scores), kind="stable")
    s, share = np.asarray(scores)[order], np.cumsum(w[order]) / w.sum()
    last_of_tie = np.r_[s[:-1] > s[1:], True]
    fits = np.flatnonzero(last_of_tie & (share <= budget + 1e-12))
    return float(s[fits.max()]) if len(fits) else None


def weighted_pr_curve(scores: np.ndarray, labels: np.ndarray,
                      weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, threshold) at every distinct score, thresholds descending; precision under population
    weights (as every precision the demo reports), recall over the positives."""
    labels = np.asarray(labels, dtype=bool)
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=float)
    order = np.argsort(-np.asarray(scores), kind="stable")
    s, y, w = np.asarray(scores)[order], labels[order], w[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.array([], int)
    precision = np.cumsum(w * y)[distinct] / np.maximum(np.cumsum(w)[distinct], 1e-12)
    recall = np.cumsum(y)[distinct] / max(int(y.sum()), 1)
    return precision, recall, s[distinct]


def _cut(threshold: float | None) -> float:
    return 2.0 if threshold is None else float(threshold)  # None: the action is never taken


def _confusion(scores: np.ndarray, labels: np.ndarray, rule: dict[str, Any]) -> list[list[int]]:
    """Rows truth negative/positive, columns the category's own rule: none / review / remove (counts); a
    category that does not act flags nothing."""
    level = np.zeros(len(scores), dtype=int)
    if rule and rule.get("mode", "act") == "act":
        level = np.where(scores >= _cut(rule.get("remove_threshold")), 2,
                         np.where(scores >= _cut(rule.get("review_threshold")), 1, 0))
    return [[int(((level == k) & (labels == truth)).sum()) for k in range(3)] for truth in (False, True)]


def holdout_figures(*, published: list[Any], decisions: dict[str, dict[str, Any]], categories: list[str],
                    policy: dict[str, Any], manifest: Any = None, resamples: int = 1000) -> dict[str, Any]:
    """The holdout block of summary.json (documented field by field in docs/demo.md).

    Args:
        published: the posts the demo published (``PublishedPost``: run id and true categories).
        decisions: post_id -> ledger record (``Decision`` as JSON) of the decided posts.
        categories: the moderation categories to report, in the model's order (``other`` left out).
        policy: the policy.json the stream decided with (the served registry version's).
        manifest: the dataset manifest (its ``split_rates`` give population weights); None: unweighted.
        resamples: bootstrap draws for the AP intervals.
    """
    from tagwatch.moderation.policy import monitor_hits

    posts, scores, targets, actions = holdout_arrays(published, decisions, categories)
    weights, population = holdout_weights(manifest, posts)
    figures = policy_figures(policy=policy, scores=scores, targets=targets, names=categories, actions=actions,
                             weights=weights, population=population, resamples=resamples)
    confidence = figures["confidence"]
    constraints = policy.get("constraints", {})
    budget = constraints.get("review_budget")
    hits_in_reasons: dict[str, int] = {}
    for p in posts:
        for name in monitor_hits(decisions[p.post_id].get("reasons", [])):
            hits_in_reasons[name] = hits_in_reasons.get(name, 0) + 1
    w = np.ones(len(posts)) if weights is None else weights
    out_categories: dict[str, Any] = {}
    for j, name in enumerate(categories):
        entry = dict(figures["categories"][name])
        rule = policy.get("categories", {}).get(name, {})
        s, y = scores[:, j], targets[:, j]
        entry["chance_ap"] = float(y.mean()) if len(y) else None  # AP is computed on the stream as sampled
        entry["confusion"] = _confusion(s, y, rule)
        points = {"budget": operating_point(s, y, weights, budget_threshold(s, weights, budget),
                                            confidence=confidence)}
        if entry["mode"] == "act":
            own = s >= min(_cut(rule.get("review_threshold")), _cut(rule.get("remove_threshold")))
            entry["chance_recall"] = float(w[own].sum() / w.sum()) if len(w) else None
            points["review"] = operating_point(s, y, weights, rule.get("review_threshold"), confidence=confidence)
            points["remove"] = operating_point(s, y, weights, rule.get("remove_threshold"), confidence=confidence)
            remove = rule.get("remove", {})
            entry["remove_enabled"] = _cut(rule.get("remove_threshold")) <= 1.0
            entry["remove_reason"] = remove.get("reason", "") if isinstance(remove, dict) else ""
        elif entry["mode"] == "monitor":
            entry["monitor_hits_stream"] = hits_in_reasons.get(name, 0)
            points["monitor"] = operating_point(s, y, weights, rule.get("monitor_threshold"), confidence=confidence)
        entry["points"] = points
        out_categories[name] = entry
    reviewed = actions == 1
    review_rate = dict(figures["review_rate"])
    review_rate.update(budget=budget, within_budget=None if review_rate["value"] is None or budget is None
                       else bool(review_rate["value"] <= budget))
    return {
        "holdout_posts": len(posts),
        "policy": {"version": policy.get("version"), "schema_version": policy.get("schema_version", 1),
                   "constraints": constraints, "decision_rule": policy.get("decision_rule", "")},
        "population": population,
        "weighted": weights is not None,
        "confidence": confidence,
        "review_rate": review_rate,
        "review_rate_stream": {**weighted_proportion(reviewed, confidence=confidence).to_dict(),
                               "reviewed": int(reviewed.sum())} if len(posts) else
                              {"value": None, "low": None, "high": None, "n": 0, "reviewed": 0},
        "remove_rate": figures["remove_rate"],
        "remove_precision": figures["remove_precision"],
        "recall": figures["recall"],
        "moderation_map": figures["moderation_map"],
        "moderation_map_categories": figures["moderation_map_categories"],
        "categories": out_categories,
    }
