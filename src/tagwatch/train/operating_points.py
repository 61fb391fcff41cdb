"""Operating points chosen under constraints: what a trust & safety lead signs off.

Three rules, applied per category on calibration scores the model did not train on:

1. **Evidence.** A category with fewer than ``min_positives`` calibration positives is put in ``monitor`` mode:
   scored, recorded and counted, never actioned, and the policy says why. Categories that are not moderation
   categories (the data build's ``other``) are ``off``.
2. **Auto-remove only with proof.** The remove threshold is the lowest score at which the *lower bound* of the
   confidence interval (Wilson, on the effective sample size) of precision still reaches ``remove_precision``.
   With a handful of positives no threshold qualifies (5 of 5 correct has a 95 % lower bound of 0.57), so
   auto-removal stays off and the reason says so.
3. **One review budget for all categories.** At most ``review_budget`` of all posts (population-weighted) may go
   to review, and by default the *upper* bound of the review rate's confidence interval must stay within it
   (``budget_bound``): the policy then keeps to the budget on new traffic, not just on the posts it was fitted to.
   The budget is spent greedily where it buys the most: at each step, every category proposes lowering its review
   threshold to each of its next uncaught positives, and the step with the highest severity-weighted
   recall gained per post sent to review wins, if it still fits. Posts already removed or in review cost nothing
   twice. The result never exceeds the budget on the calibration data.

``weights`` re-weight calibration posts to the traffic the policy will see: the data build over-samples
moderation positives into val and holdout, so unweighted rates would overstate how often positives arrive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tagwatch.stats import weighted_proportion, wilson

NEVER = 1.0 + 1e-6  # a threshold no sigmoid score reaches: the action is never taken
MONITOR_FLOOR = 0.5  # a monitor hit needs at least the head's own decision point (it is fitted class-balanced)


@dataclass(frozen=True)
class Constraints:
    review_budget: float = 0.05  # largest share of all posts that may go to review
    remove_precision: float = 0.95  # the CI lower bound of auto-remove precision must reach this
    confidence: float = 0.95  # of every interval
    min_positives: int = 10  # fewer calibration positives: monitor mode
    budget_bound: bool = True  # spend only what keeps the review rate's upper CI bound within the budget

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "interval": "wilson (Kish effective n under population weights)"}


def remove_point(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray, c: Constraints) -> dict[str, Any]:
    """The lowest threshold whose precision CI lower bound >= the target, or why there is none."""
    order = np.argsort(-scores, kind="stable")
    s, y, w = scores[order], labels[order].astype(bool), weights[order]
    sum_w, sum_wy, sum_w2 = np.cumsum(w), np.cumsum(w * y), np.cumsum(w * w)
    best: dict[str, Any] | None = None
    closest = None
    for j in np.flatnonzero(np.r_[s[:-1] > s[1:], True] & (np.cumsum(y) > 0)) if len(s) else []:
        effective = sum_w[j] ** 2 / sum_w2[j]  # Kish: equal weights give j + 1
        estimate = wilson(sum_wy[j] / sum_w[j] * effective, effective, confidence=c.confidence)
        if closest is None or (estimate.low or 0.0) > (closest.low or 0.0):
            closest = estimate
        if estimate.low is not None and estimate.low >= c.remove_precision:  # keep going: the lowest one wins
            best = {"threshold": float(s[j]), "precision": estimate.to_dict(),
                    "recall": float(y[: j + 1].sum() / max(int(y.sum()), 1)), "flagged": int(j + 1)}
    if best is not None:
        return {"enabled": True, **best, "reason": f"precision lower bound >= {c.remove_precision:g}"}
    best_cut = "" if closest is None else (f"; the best cut reaches {closest.value:.2f} "
                                           f"[{closest.low:.2f}, {closest.high:.2f}]")
    return {"enabled": False, "threshold": NEVER, "precision": None, "recall": 0.0, "flagged": 0,
            "reason": f"no threshold has a {c.confidence:.0%} precision lower bound >= {c.remove_precision:g} "
                      f"on {int(labels.sum())} calibration positives{best_cut}"}


def spendable_share(budget: float, weights: np.ndarray, *, confidence: float | None) -> float:
    """The largest review share whose Wilson upper bound (on Kish's effective n) is within ``budget``; ``budget``
    itself when ``confidence`` is None."""
    if confidence is None or not len(weights):
        return budget
    effective = float(weights.sum()) ** 2 / float((weights * weights).sum())
    low, high = 0.0, budget
    for _ in range(50):  # bisection: the upper bound grows with the share
        middle = (low + high) / 2
        bound = wilson(middle * effective, effective, confidence=confidence).high or 0.0
        low, high = (middle, high) if bound <= budget else (low, middle)
    return low


def allocate_review(scores: np.ndarray, targets: np.ndarray, weights: np.ndarray, *, acting: list[int],
                    removed: np.ndarray, severity: dict[int, float], budget: float) -> tuple[dict[int, int], np.ndarray]:
    """Greedy review allocation (rule 3) within ``budget`` (a share of the total weight). Returns, per acting
    column, how many of its top-scored posts are flagged for review (0: none), and the mask of posts that go to
    review."""
    total = float(weights.sum())
    allowance = budget * total
    orders = {c: np.argsort(-scores[:, c], kind="stable") for c in acting}
    taken = {c: 0 for c in acting}
    reviewed = np.zeros(len(scores), dtype=bool)
    used = 0.0
    while True:
        best: tuple[float, float, int, int, float] | None = None  # (ratio, gain, column, cut, cost)
        for c in acting:
            rest = orders[c][taken[c]:]
            if not len(rest):
                continue
            s = scores[rest, c]
            new = ~(removed | reviewed)[rest]
            cost = np.cumsum(weights[rest] * new)
            positives = max(float(targets[:, c].sum()), 1.0)
            gain = np.cumsum((targets[rest, c] > 0) & new) * severity.get(c, 1.0) / positives
            feasible = np.r_[s[:-1] > s[1:], True] & (used + cost <= allowance + 1e-9) & (gain > 0)
            if not feasible.any():
                continue
            ratio = np.where(feasible, gain / np.maximum(cost, 1e-12), -1.0)
            j = int(np.flatnonzero(ratio == ratio.max())[-1])  # ties: the larger step
            if best is None or (ratio[j], gain[j]) > (best[0], best[1]):
                best = (float(ratio[j]), float(gain[j]), c, j, float(cost[j]))
        if best is None:
            break
        _, _, c, j, cost_j = best
        rest = orders[c][taken[c]: taken[c] + j + 1]
        reviewed[rest[~removed[rest]]] = True
        used += cost_j
        taken[c] += j + 1
    return taken, reviewed


def calibrate(scores: np.ndarray, targets: np.ndarray, names: list[str], *, constraints: Constraints = Constraints(),
              weights: np.ndarray | None = None, severity: dict[str, float] | None = None,
              not_moderated: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Per-category operating points and the expected rates on the calibration data (see the module doc)."""
    scores = np.asarray(scores, dtype=float)
    targets = np.asarray(targets) > 0
    weights = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=float)
    severity = severity or {}
    c = constraints
    categories: dict[str, dict[str, Any]] = {}
    acting: list[int] = []
    removed = np.zeros(len(scores), dtype=bool)
    for j, name in enumerate(names):
        positives = int(targets[:, j].sum())
        entry: dict[str, Any] = {"positives": positives, "negatives": int(len(scores) - positives),
                                 "severity": float(severity.get(name, 1.0)), "remove_threshold": NEVER,
                                 "review_threshold": NEVER, "monitor_threshold": None}
        if name in not_moderated:
            entry.update(mode="off", reason="not a moderation category (posts in no moderation category)")
        elif positives < c.min_positives:
            quantile = float(np.quantile(scores[:, j], 1 - c.review_budget)) if len(scores) else NEVER
            threshold = max(quantile, MONITOR_FLOOR)
            entry.update(mode="monitor", monitor_threshold=threshold,
                         reason=f"{positives} calibration positives < {c.min_positives} needed to act: scored and "
                                f"counted (hits at score >= {threshold:.3f}: the top {c.review_budget:.0%} of "
                                f"calibration scores, at least {MONITOR_FLOOR}), never actioned")
        else:
            entry["mode"] = "act"
            entry["remove"] = remove_point(scores[:, j], targets[:, j], weights, c)
            entry["remove_threshold"] = entry["remove"]["threshold"]
            removed |= scores[:, j] >= entry["remove_threshold"]
            acting.append(j)
        categories[name] = entry
    spend = spendable_share(c.review_budget, weights, confidence=c.confidence if c.budget_bound else None)
    taken, reviewed = allocate_review(scores, targets, weights, acting=acting, removed=removed,
                                      severity={j: categories[names[j]]["severity"] for j in acting}, budget=spend)
    flagged = removed | reviewed
    for j in acting:
        entry = categories[names[j]]
        order = np.argsort(-scores[:, j], kind="stable")
        if taken[j]:
            entry["review_threshold"] = min(float(scores[order[taken[j] - 1], j]), entry["remove_threshold"])
        else:
            entry["review_threshold"] = entry["remove_threshold"]
        own = scores[:, j] >= entry["review_threshold"]
        caught = targets[:, j] & flagged
        entry["review"] = {
            "enabled": bool(taken[j]),
            "recall": weighted_proportion(caught[targets[:, j]], confidence=c.confidence).to_dict(),
            "share": float(weights[own & reviewed].sum() / weights.sum()),
            "reason": ("the budget bought recall here" if taken[j] else
                       "not needed: every calibration positive is removed" if caught.sum() == targets[:, j].sum()
                       else "the review budget bought more recall elsewhere (or is spent)"),
        }
        if not entry["remove"]["enabled"] and not taken[j]:
            entry["reason"] = "acts, but neither removal nor review qualified: " + entry["remove"]["reason"]
        else:
            entry["reason"] = "; ".join(
                part for part in (f"remove: {entry['remove']['reason']}" if entry["remove"]["enabled"] else
                                  f"auto-remove off: {entry['remove']['reason']}",
                                  f"review: {entry['review']['reason']}") if part)
    return {
        "constraints": c.to_dict(),
        "expected": {
            "review_rate": weighted_proportion(reviewed, weights, confidence=c.confidence).to_dict(),
            "remove_rate": weighted_proportion(removed, weights, confidence=c.confidence).to_dict(),
            "review_share_spendable": spend,
            "posts": int(len(scores)),
        },
        "categories": categories,
    }
