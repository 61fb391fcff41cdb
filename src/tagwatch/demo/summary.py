"""The demo's figures from what the stream did: every published post decided or dead-lettered (the rest is lost),
decisions by action, DLQ by reason, precision/recall per category against the held-out labels (with the chance
levels of a random flagger), throughput and post-to-decision latency. Pure functions over plain data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

ACTIONS = ("allow", "review", "remove")
LEVELS = ("none", "review", "remove")


@dataclass(frozen=True)
class PublishedPost:
    post_id: str  # the id this demo run published it under (unique per run)
    original_id: str  # the dataset's post id
    categories: list[str]  # true moderation categories ("other" or empty: none)
    image_uri: str


def category_levels(scores: dict[str, float], thresholds: dict[str, dict[str, float | None]]) -> dict[str, str]:
    """Per category: what the policy's rule for it says (none / review / remove), as ``policy.decide`` applies it."""
    out = {}
    for name, rule in thresholds.items():
        score = scores.get(name)
        remove, review = rule.get("remove"), rule.get("review")
        if score is not None and remove is not None and score >= remove:
            out[name] = "remove"
        elif score is not None and review is not None and score >= review:
            out[name] = "review"
        else:
            out[name] = "none"
    return out


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def category_quality(*, labels: np.ndarray, levels: list[str], name: str, scores: np.ndarray | None = None) -> dict[str, Any]:
    """Precision/recall of "flagged" (review or remove) and of "removed" for one category, plus chance levels.

    A random flagger that flags the same share of posts has expected precision = the base rate and expected
    recall = its flag rate; the lifts compare against those. ``ap``: average precision of ``scores`` (chance: the
    base rate).
    """
    from tagwatch.train.evaluate import average_precision

    y = labels.astype(bool)
    level = np.array(levels)
    flagged, removed = level != "none", level == "remove"
    n, positives = len(y), int(y.sum())
    base_rate = _ratio(positives, n)
    flag_rate = _ratio(int(flagged.sum()), n)
    precision = _ratio(int((flagged & y).sum()), int(flagged.sum()))
    recall = _ratio(int((flagged & y).sum()), positives)
    confusion = [[int(((level == lv) & (y == actual)).sum()) for lv in LEVELS] for actual in (False, True)]
    return {
        "category": name, "posts": n, "positives": positives, "base_rate": base_rate,
        "flagged": int(flagged.sum()), "flag_rate": flag_rate, "true_positives": int((flagged & y).sum()),
        "precision": precision, "recall": recall,
        "chance_precision": base_rate, "chance_recall": flag_rate,
        "precision_lift": precision / base_rate if precision is not None and base_rate else None,
        "recall_lift": recall / flag_rate if recall is not None and flag_rate else None,
        "ap": average_precision(scores, y) if scores is not None and positives else None,
        "removed": int(removed.sum()),
        "remove_precision": _ratio(int((removed & y).sum()), int(removed.sum())),
        "remove_recall": _ratio(int((removed & y).sum()), positives),
        "confusion": confusion,
    }


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


def summarize(*, published: list[PublishedPost], decisions: dict[str, dict[str, Any]], dead_letters: dict[str, str],
              categories: list[str], thresholds: dict[str, dict[str, float | None]], publish_started: datetime,
              model: dict[str, Any]) -> dict[str, Any]:
    """The machine-readable summary (summary.json) of one demo run.

    Args:
        published: what was published, with the true categories.
        decisions: post_id -> ledger record (``Decision`` as JSON) for the posts decided.
        dead_letters: post_id -> DLQ reason for the posts dead-lettered.
        categories: the model's categories, in order.
        thresholds: per category ``{"remove": t, "review": t}`` of the policy the stream decided with.
        publish_started: when the first post was sent (timezone-aware).
        model: name, version (and anything else worth recording) of the model that decided.
    """
    ids = [p.post_id for p in published]
    decided_ids = [i for i in ids if i in decisions]
    dead_ids = [i for i in ids if i not in decisions and i in dead_letters]
    lost = [i for i in ids if i not in decisions and i not in dead_letters]
    by_action = {a: 0 for a in ACTIONS}
    for i in decided_ids:
        by_action[decisions[i]["action"]] = by_action.get(decisions[i]["action"], 0) + 1
    dlq: dict[str, int] = {}
    for i in dead_ids:
        dlq[dead_letters[i]] = dlq.get(dead_letters[i], 0) + 1
    decided_posts = [p for p in published if p.post_id in decisions]
    per_category = {}
    for name in categories:
        labels = np.array([name in p.categories for p in decided_posts], dtype=bool)
        levels = [category_levels(decisions[p.post_id]["scores"], thresholds).get(name, "none") for p in decided_posts]
        scores = np.array([decisions[p.post_id]["scores"].get(name, 0.0) for p in decided_posts], dtype=float)
        per_category[name] = category_quality(labels=labels, levels=levels, name=name, scores=scores)
    latencies = [float(decisions[i]["latency_ms"]) for i in decided_ids]
    offsets = [(_parse_time(decisions[i]["decided_at"]) - publish_started).total_seconds() for i in decided_ids]
    span = max(offsets) if offsets else 0.0
    return {
        "model": model,
        "posts_published": len(ids),
        "decided": len(decided_ids),
        "dead_lettered": len(dead_ids),
        "lost": len(lost),
        "lost_post_ids": lost[:50],
        "decisions_by_action": by_action,
        "dlq_by_reason": dict(sorted(dlq.items())),
        "per_category": per_category,
        "throughput_posts_s": len(decided_ids) / span if span > 0 else None,
        "stream_seconds": span,
        "latency_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                       "mean": float(np.mean(latencies)) if latencies else None,
                       "max": max(latencies) if latencies else None},
        "decided_offsets_s": offsets,
        "latencies_ms": latencies,
    }


def _parse_time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def thresholds_of(policy: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """``{"remove": t, "review": t}`` per category from a policy.json."""
    return {name: {"remove": rule.get("remove_threshold"), "review": rule.get("review_threshold")}
            for name, rule in policy.get("categories", {}).items()}
