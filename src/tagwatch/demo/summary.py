"""The demo's stream figures: every published post decided or dead-lettered (the rest is lost), decisions by
action, DLQ by reason, throughput and post-to-decision latency. Pure functions over plain data. The figures on the
held-out labels (with confidence intervals) are ``holdout.py``'s."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

ACTIONS = ("allow", "review", "remove")
SUMMARY_SCHEMA_VERSION = 2  # 2: posts/actions renamed, per-category figures with CIs under "categories"


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


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


def summarize(*, published: list[PublishedPost], decisions: dict[str, dict[str, Any]], dead_letters: dict[str, str],
              publish_started: datetime, model: dict[str, Any]) -> dict[str, Any]:
    """The machine-readable summary (summary.json) of one demo run.

    Args:
        published: what was published, with the true categories.
        decisions: post_id -> ledger record (``Decision`` as JSON) for the posts decided.
        dead_letters: post_id -> DLQ reason for the posts dead-lettered.
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
    latencies = [float(decisions[i]["latency_ms"]) for i in decided_ids]
    offsets = [(_parse_time(decisions[i]["decided_at"]) - publish_started).total_seconds() for i in decided_ids]
    span = max(offsets) if offsets else 0.0
    return {
        "model": model,
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "posts": len(ids),
        "decided": len(decided_ids),
        "dead_lettered": len(dead_ids),
        "lost": len(lost),
        "lost_post_ids": lost[:50],
        "actions": by_action,
        "dlq_by_reason": dict(sorted(dlq.items())),
        "throughput_posts_s": len(decided_ids) / span if span > 0 else None,
        "stream_seconds": span,
        "latency_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                       "mean": float(np.mean(latencies)) if latencies else None,
                       "max": max(latencies) if latencies else None},
        "decided_offsets_s": offsets,
        "latencies_ms": latencies,
        "signals": signal_summary([decisions[i] for i in decided_ids]),
    }


def signal_summary(decisions: list[dict[str, Any]], *, high: float = 0.8) -> dict[str, dict[str, Any]]:
    """Per signal the decisions carried (image, image.nudity, caption.*, bank): on how many posts it ran, its
    versions, and per category how many scored at least ``high`` (for a monitor-mode category: what it would flag)."""
    out: dict[str, dict[str, Any]] = {}
    for decision in decisions:
        for signal in decision.get("signals") or []:
            entry = out.setdefault(signal["name"], {"posts": 0, "versions": set(), "at_least": {}})
            entry["posts"] += 1
            entry["versions"].add(str(signal.get("version", "")))
            for category, score in (signal.get("scores") or {}).items():
                entry["at_least"].setdefault(category, 0)
                entry["at_least"][category] += float(score) >= high
    return {name: {"posts": e["posts"], "versions": sorted(e["versions"]), f"at_least_{high}": e["at_least"]}
            for name, e in sorted(out.items())}


def _parse_time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def consent_text(consent: dict[str, Any] | None) -> str:
    """One line on what training was allowed to use: the policy and the posts it left out (docs/privacy.md)."""
    if not consent:
        return "training consent: not recorded (a dataset built before consent)"
    excluded = consent.get("excluded", {})
    return (f"training consent: unknown consent {consent['policy'].get('unknown', '?')}d; "
            f"{sum(excluded.values())} posts left out of the dataset ("
            + ", ".join(f"{reason} {n}" for reason, n in excluded.items())
            + f"); {consent.get('erasure_list', 0)} ids on the erasure list; moderation screened every post")


def thresholds_of(policy: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """``{"remove": t, "review": t}`` per category from a policy.json."""
    return {name: {"remove": rule.get("remove_threshold"), "review": rule.get("review_threshold")}
            for name, rule in policy.get("categories", {}).items()}
