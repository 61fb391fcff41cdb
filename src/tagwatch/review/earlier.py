"""What the review page shows as "earlier decisions on the same image" (docs/review.md says the same in prose).

Three sources:
  * the other posts that reached the review queue with the same image identity (``queue.image_id``: the sha256 in
    the image key, i.e. the same bytes);
  * the post a ``repost:<post_id>`` reason names: the stream reused that post's scores because the sha256 matched;
  * PDQ neighbours: the other posts that reached the review queue whose image's PDQ hash (the stream's, carried by
    the review request) is within the bank match threshold (31 bits) of this one's: resized, re-encoded, lightly
    edited copies.
For each such post: its first decision from the ledger and every review outcome in its ledger history. Posts that
were decided allow/remove by the stream without review and are not named by a repost reason are not found (the
ledger's decision records do not carry the image): see the limitations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tagwatch.moderation.ledger import Ledger, LedgerHistory
from tagwatch.review.queue import ReviewQueue

MAX_EARLIER = 20


@dataclass(frozen=True)
class EarlierDecision:
    post_id: str
    link: str  # "same image" or "repost of"
    action: str | None  # the stream's first decision (None: no ledger record)
    decided_at: str | None
    model_version: str | None
    policy_version: str | None
    reviews: list[dict] = field(default_factory=list)  # action, categories, reviewer, reviewed_at, note


def earlier_decisions(post_id: str, image_uri: str, reasons: list[str], *, queue: ReviewQueue, ledger: Ledger,
                      history: LedgerHistory, pdq: str | None = None) -> list[EarlierDecision]:
    linked: dict[str, str] = {}
    for reason in reasons:
        if reason.startswith("repost:"):
            linked.setdefault(reason.removeprefix("repost:").strip(), "repost of")
    for other in queue.same_image(image_uri):
        linked.setdefault(other, "same image")
    if pdq:
        from tagwatch.moderation.bank import DEFAULT_THRESHOLD

        for other, distance in queue.near_images(pdq, max_distance=DEFAULT_THRESHOLD):
            linked.setdefault(other, f"near-duplicate (PDQ distance {distance})")
    linked.pop(post_id, None)
    found = []
    for other, link in list(linked.items())[:MAX_EARLIER]:
        decision = ledger.get(other)
        reviews = [{key: entry.get(key) for key in ("action", "categories", "reviewer", "reviewed_at", "note")}
                   for kind, entry in history.entries(other) if kind == "review"]
        found.append(EarlierDecision(
            post_id=other, link=link, action=decision.action if decision else None,
            decided_at=decision.decided_at.isoformat(timespec="seconds") if decision else None,
            model_version=decision.model.version if decision else None,
            policy_version=decision.policy_version if decision else None, reviews=reviews))
    return found
