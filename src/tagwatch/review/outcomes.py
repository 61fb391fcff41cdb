"""Recording a reviewer's outcome: ledger history first, then the event, then the queue's done marker.

Order matters for "nothing lost": the history entry and the event are keyed by a deterministic outcome id (decision
+ lease), so a retry after a crash at any step writes nothing twice (the history write is If-None-Match, the event's
ce_id is the outcome id, a consumer deduplicates on it), and the item leaves the queue only after both are durable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tagwatch.moderation.delivery import derived_event_id
from tagwatch.moderation.events import EventType, ReviewOutcome, encode
from tagwatch.moderation.ledger import Ledger, LedgerHistory
from tagwatch.review.queue import Lease, LeaseLost, QueueItem, ReviewQueue


class InvalidVerdict(ValueError):
    """The submitted form does not make an outcome (the page shows the message, nothing is recorded)."""


@dataclass(frozen=True)
class Verdict:
    """What the reviewer submitted."""

    action: str
    categories: tuple[str, ...] = ()
    note: str = ""


def validate(verdict: Verdict, known_categories: set[str]) -> None:
    if verdict.action not in ("allow", "remove"):
        raise InvalidVerdict(f"unknown review action {verdict.action!r}: allow or remove")
    unknown = sorted(set(verdict.categories) - known_categories)
    if unknown:
        raise InvalidVerdict(f"unknown categories {unknown}: one of {sorted(known_categories)}")
    if verdict.action == "remove" and not verdict.categories:
        raise InvalidVerdict("remove needs at least one category: tick the ones that apply")
    if verdict.action == "allow" and verdict.categories:
        raise InvalidVerdict("allow takes no categories: untick them, or choose remove")


def build_outcome(item: QueueItem, lease: Lease, verdict: Verdict, *, ledger: Ledger, reviewer: str,
                  at: datetime) -> ReviewOutcome:
    request = item.request
    decision = ledger.get(request.post_id)
    return ReviewOutcome(
        outcome_id=derived_event_id(request.decision_id, lease.token, "review-outcome"),
        post_id=request.post_id, decision_id=request.decision_id, action=verdict.action,
        categories=sorted(verdict.categories), note=verdict.note.strip(), reviewer=reviewer, reviewed_at=at,
        requested_at=request.requested_at,
        time_to_decision_s=max(0.0, (at - request.requested_at).total_seconds()),
        image_uri=request.image_uri,
        model_version=decision.model.version if decision else "unknown",
        policy_version=decision.policy_version if decision else "unknown",
        scores=dict(request.scores),
    )


class OutcomeRecorder:
    """Writes an outcome to the post's ledger history, publishes it (acks=all), then closes the queue item."""

    def __init__(self, *, queue: ReviewQueue, ledger: Ledger, history: LedgerHistory, producer: Any,
                 topic: str) -> None:
        self.queue, self.ledger, self.history, self.producer, self.topic = queue, ledger, history, producer, topic

    def record(self, post_id: str, token: str, verdict: Verdict, *, reviewer: str, at: datetime) -> ReviewOutcome:
        """Raises InvalidVerdict (nothing written) for a verdict the item's categories do not allow, and LeaseLost
        when the item is no longer this reviewer's (expired and taken over, or reviewed already)."""
        item = self.queue.item(post_id)
        if item is None:
            raise LeaseLost(f"post {post_id} is not in the review queue")
        validate(verdict, set(item.request.scores))
        # renewed with If-Match, not just checked: nobody can take the item over while this outcome is written
        lease = self.queue.renew(post_id, token, reviewer)
        outcome = build_outcome(item, lease, verdict, ledger=self.ledger, reviewer=reviewer, at=at)
        self.history.append_review(outcome)
        value, headers = encode(outcome, EventType.REVIEW_OUTCOME, subject=post_id, event_id=outcome.outcome_id)
        self.producer.send(self.topic, key=post_id.encode(), value=value, headers=headers).get(timeout=30)
        if not self.queue.complete(post_id, outcome_id=outcome.outcome_id, reviewer=reviewer):
            raise LeaseLost(f"post {post_id} was reviewed by someone else meanwhile")
        return outcome
