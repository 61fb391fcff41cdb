"""The decision diff: production's decision (the ledger) against the candidate's, per post, and what it adds up to.

Pure functions over ``Pair`` rows (no Kafka, no S3): the transition matrix production -> candidate, the same per
category (the category whose rule fired for the stricter of the two decisions, ``bank`` for a hash-bank hit,
``none`` when both allow), removal and review rates of each side with Wilson intervals and their paired
differences (candidate - production, paired bootstrap over posts: ``tagwatch.stats.paired_difference``), agreement
with reviewer outcomes (``ReviewerOutcomes``: the ledger history's review outcomes) and the posts whose scores changed most.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from tagwatch.stats import paired_difference, wilson

ACTIONS = ("allow", "review", "remove")
SEVERITY = {action: n for n, action in enumerate(ACTIONS)}
BANK = "bank"
NONE = "none"


@dataclass(frozen=True)
class Side:
    action: str
    scores: dict[str, float]
    reasons: list[str] = field(default_factory=list)
    model_version: str = ""
    policy_version: str = ""


@dataclass(frozen=True)
class Pair:
    post_id: str
    image_uri: str
    production: Side
    candidate: Side

    @property
    def changed(self) -> bool:
        return self.production.action != self.candidate.action

    @property
    def transition(self) -> str:
        return f"{self.production.action}->{self.candidate.action}"

    @property
    def score_change(self) -> float:
        """The largest absolute change of any category's score."""
        names = set(self.production.scores) | set(self.candidate.scores)
        return max((abs(self.candidate.scores.get(c, 0.0) - self.production.scores.get(c, 0.0)) for c in names),
                   default=0.0)

    @property
    def category(self) -> str:
        """The category whose rule fired for the stricter decision (production's on a tie)."""
        stricter = max((self.production, self.candidate), key=lambda s: SEVERITY.get(s.action, 0))
        return fired_category(stricter)


def fired_category(side: Side) -> str:
    """``bank`` for a hash-bank removal, else the category of the first policy rule in the reasons; ``none``."""
    if side.action == "allow":
        return NONE
    for reason in side.reasons:
        if reason.startswith("bank:"):
            return BANK
        if reason.startswith("policy:"):
            return reason[len("policy:"):].split(">=", 1)[0]
    return NONE


class ReviewerOutcomes(Protocol):
    """What reviewers decided for a post (issue 15's store): ``None`` when no reviewer looked at it."""

    recorded: bool

    def outcome(self, post_id: str) -> str | None: ...


class NoReviewerOutcomes:
    """No reviewer outcomes at hand: agreement is reported as null, with a note."""

    recorded = False
    note = "no reviewer outcomes are recorded in the ledger yet: agreement cannot be measured"

    def outcome(self, post_id: str) -> str | None:
        return None


class LedgerReviewerOutcomes:
    """Reviewers' latest outcome per post, from the ledger history (`tagwatch review serve` writes them)."""

    def __init__(self, outcomes) -> None:
        from tagwatch.moderation.ledger import latest_outcomes

        self._actions = {post_id: o.action for post_id, o in latest_outcomes(outcomes).items()}
        self.recorded = bool(self._actions)
        self.note = (f"{len(self._actions)} posts carry a reviewer outcome in the ledger; agreement is measured on "
                     "the compared posts among them (reviewer remove vs each side's remove)" if self.recorded else
                     NoReviewerOutcomes.note)

    def outcome(self, post_id: str) -> str | None:
        return self._actions.get(post_id)


def transitions(pairs: list[Pair]) -> dict[str, int]:
    counts = Counter(p.transition for p in pairs)
    return {f"{a}->{b}": counts[f"{a}->{b}"] for a in ACTIONS for b in ACTIONS if counts[f"{a}->{b}"]}


def matrix(pairs: list[Pair]) -> dict[str, dict[str, int]]:
    """production action -> candidate action -> posts (every cell, zeros included)."""
    counts = Counter(p.transition for p in pairs)
    return {a: {b: counts[f"{a}->{b}"] for b in ACTIONS} for a in ACTIONS}


def by_category(pairs: list[Pair]) -> dict[str, dict[str, int]]:
    groups: dict[str, list[Pair]] = {}
    for pair in pairs:
        groups.setdefault(pair.category, []).append(pair)
    return {name: transitions(group) for name, group in sorted(groups.items())}


def rates(pairs: list[Pair], *, resamples: int = 1000, seed: int = 0) -> dict[str, dict]:
    """remove / review: each side's rate (Wilson 95 % CI) and the paired difference candidate - production."""
    out = {}
    for action in ("remove", "review"):
        prod = np.array([p.production.action == action for p in pairs], dtype=float)
        cand = np.array([p.candidate.action == action for p in pairs], dtype=float)
        out[action] = {
            "production": wilson(float(prod.sum()), float(len(pairs))).to_dict(),
            "candidate": wilson(float(cand.sum()), float(len(pairs))).to_dict(),
            "delta": paired_difference(cand, prod, np.ones(len(pairs), bool), resamples=resamples,
                                       seed=seed).to_dict(),
        }
    return out


def agreement(pairs: list[Pair], reviewers: ReviewerOutcomes) -> dict | None:
    """Share of reviewed posts where each side's removal agrees with the reviewer's; None without outcomes."""
    if not reviewers.recorded:
        return None
    reviewed = [(p, o) for p in pairs if (o := reviewers.outcome(p.post_id)) is not None]
    result = {"reviewed": len(reviewed)}
    for side in ("production", "candidate"):
        agree = sum((getattr(p, side).action == "remove") == (o == "remove") for p, o in reviewed)
        result[side] = wilson(float(agree), float(len(reviewed))).to_dict()
    return result


def top_changed(pairs: list[Pair], k: int = 12) -> list[Pair]:
    """The ``k`` posts whose scores changed most (changed actions first on a tie), largest first."""
    return sorted(pairs, key=lambda p: (-p.score_change, not p.changed, p.post_id))[:k]


def diff(pairs: list[Pair], *, reviewers: ReviewerOutcomes | None = None, resamples: int = 1000) -> dict:
    """Everything the report says about the compared posts."""
    reviewers = reviewers or NoReviewerOutcomes()
    return {
        "compared": len(pairs),
        "changed": sum(p.changed for p in pairs),
        "transitions": transitions(pairs),
        "matrix": matrix(pairs),
        "by_category": by_category(pairs),
        "rates": rates(pairs, resamples=resamples) if pairs else None,
        "reviewer_agreement": agreement(pairs, reviewers),
        "reviewer_note": getattr(reviewers, "note", ""),
    }
