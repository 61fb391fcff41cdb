"""The stream audit: read back what a moderation run left behind and check the promises, record by record.

Inputs are what anyone can read after a run (``moderation/readback.py`` reads them): every record of the posts
topic, every decision and dead-letter event, the ledger objects, and the group's committed offsets. The checks:

- **lost**: a post neither decided (a decision event for its post_id) nor dead-lettered (a dead letter names
  its topic[partition]@offset). A record whose value does not parse can only be matched by that position.
- **ledger mismatches**: the ledger holds one object per post, so counting keys can never find two; instead each
  ledger record must *equal* the earliest decision event for that post (decision_id, action, scores, model,
  policy_version): what downstream saw first is what the audit record says.
- **commit violations**: per partition, a committed offset ``c`` with an undecided, un-dead-lettered record
  below it: nobody will ever read that record again (at-least-once broken).
- duplicates (informative: at-least-once allows them) and **conflicting decision ids**: two decision events for
  one post under the same model and policy with different ids (the dedup key broken).

Everything here is pure: hand-built inputs in, an ``AuditReport`` out.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

# Scores are float32 model outputs; a post re-scored in another micro-batch may differ in the last bits.
SCORE_TOLERANCE = 1e-6
COMPARED_FIELDS = ("decision_id", "action", "scores", "model", "policy_version")
SAMPLE = 20  # how many ids/positions a report lists per finding (the counts are always complete)


@dataclass(frozen=True)
class PostRecord:
    """One record of the posts topic; ``post_id`` is None when its value is not a parseable post."""

    partition: int
    offset: int
    post_id: str | None


@dataclass(frozen=True)
class DecisionEvent:
    """One decision event as read from the decisions topic (``position``: its place there, for ordering)."""

    post_id: str
    decision_id: str
    action: str
    scores: dict[str, float]
    model: dict
    policy_version: str
    position: tuple[int, int] = (0, 0)
    source: tuple[int, int] | None = None  # posts-topic (partition, offset) it decided, if it says

    @classmethod
    def from_dict(cls, data: dict, position: tuple[int, int] = (0, 0), *, posts_topic: str | None = None) -> DecisionEvent:
        src = data.get("source") or {}
        source = None
        if "partition" in src and "offset" in src and (posts_topic is None or src.get("topic") == posts_topic):
            source = (int(src["partition"]), int(src["offset"]))
        return cls(post_id=data["post_id"], decision_id=data["decision_id"], action=data["action"],
                   scores=dict(data["scores"]), model=dict(data["model"]), policy_version=data["policy_version"],
                   position=position, source=source)


@dataclass(frozen=True)
class DeadLetterEvent:
    reason: str
    topic: str
    partition: int
    offset: int


@dataclass
class AuditReport:
    posts_expected: int | None
    posts_seen: int  # distinct post ids on the posts topic (in scope)
    records_seen: int  # every record of the posts topic, parseable or not
    decided: int  # posts in scope with a decision event
    dead_lettered: int  # posts-topic records with a dead letter (distinct positions)
    dead_letters_by_reason: dict[str, int]
    lost: int  # posts on the topic (or expected) with neither a decision nor a dead letter
    lost_sample: list[str]
    not_on_topic: int  # expected posts (acknowledged by the broker) absent from the posts topic's log
    not_on_topic_sample: list[str]
    topic_gaps: int  # offsets missing inside a partition's log (the broker skipped or lost them)
    topic_gap_sample: list[str]
    unhandled_records: int  # records (any, in or out of scope) with neither a decision nor a dead letter
    ledger_records: int
    ledger_missing: int  # decided posts without a ledger record
    ledger_mismatches: int
    ledger_mismatch_sample: list[dict]
    decision_events: int
    duplicate_events: int  # events beyond the first per post (at-least-once: allowed)
    posts_with_duplicates: int
    conflicting_decision_ids: int  # posts with two ids under one model + policy
    conflicting_sample: list[str]
    commit_violations: int
    commit_violation_sample: list[dict]
    committed: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.not_on_topic or self.unhandled_records or self.ledger_missing or self.ledger_mismatches
                    or self.conflicting_decision_ids or self.commit_violations)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["committed"] = {str(p): c for p, c in sorted(self.committed.items())}
        data["ok"] = self.ok
        return data


def audit_records(*, posts: list[PostRecord], decisions: list[DecisionEvent], dead_letters: list[DeadLetterEvent],
                  ledger: dict[str, dict], committed: dict[int, int], posts_topic: str,
                  expected: set[str] | None = None) -> AuditReport:
    """Check a run from what it left behind.

    Args:
        posts: every record of the posts topic.
        decisions: every decision event (any order; ``position`` orders one post's events).
        dead_letters: every dead letter (those naming another topic are ignored).
        ledger: post_id -> the ledger object's JSON (only the posts to check need be present).
        committed: partition -> the group's committed offset on the posts topic (absent: nothing committed).
        posts_topic: the posts topic's name (dead letters and decision sources name it).
        expected: the post ids the publisher had acknowledged; None: every post id seen on the topic.
    """
    by_post: dict[str, list[DecisionEvent]] = defaultdict(list)
    decided_positions: set[tuple[int, int]] = set()
    for event in decisions:
        by_post[event.post_id].append(event)
        if event.source is not None:
            decided_positions.add(event.source)
    for events in by_post.values():
        events.sort(key=lambda e: e.position)
    lettered: dict[tuple[int, int], str] = {}
    for letter in dead_letters:
        if letter.topic == posts_topic:
            lettered.setdefault((letter.partition, letter.offset), letter.reason)

    def handled(record: PostRecord) -> bool:
        position = (record.partition, record.offset)
        return position in lettered or position in decided_positions or (record.post_id in by_post)

    seen_ids = {r.post_id for r in posts if r.post_id is not None}
    scope = set(expected) if expected is not None else seen_ids
    lettered_ids = {r.post_id for r in posts if r.post_id is not None and (r.partition, r.offset) in lettered}
    unhandled = [r for r in posts if not handled(r)]
    if expected is None:
        lost_keys = [f"{r.post_id or '<unparseable>'} {posts_topic}[{r.partition}]@{r.offset}" for r in unhandled]
    else:
        lost_keys = sorted(p for p in scope if p not in by_post and p not in lettered_ids and p in seen_ids)
    missing = sorted(p for p in scope if p not in seen_ids and p not in by_post) if expected is not None else []
    gaps = _gaps(posts, posts_topic)

    decided_ids = scope & set(by_post)
    mismatches = []
    for post_id in sorted(decided_ids & set(ledger)):
        diff = _differences(ledger[post_id], by_post[post_id][0])
        if diff:
            mismatches.append({"post_id": post_id, "fields": diff})
    for post_id in sorted((scope & set(ledger)) - set(by_post)):
        mismatches.append({"post_id": post_id, "fields": ["no decision event"]})
    ledger_missing = len(decided_ids - set(ledger))

    conflicting = []
    duplicates = posts_with_duplicates = 0
    for post_id in sorted(decided_ids):
        events = by_post[post_id]
        if len(events) > 1:
            duplicates += len(events) - 1
            posts_with_duplicates += 1
        ids_per_maker: dict[tuple, set[str]] = defaultdict(set)
        for e in events:
            ids_per_maker[(e.model.get("sha256"), e.model.get("name"), e.policy_version)].add(e.decision_id)
        if any(len(ids) > 1 for ids in ids_per_maker.values()):
            conflicting.append(post_id)

    violations = [
        {"partition": r.partition, "offset": r.offset, "committed": committed[r.partition], "post_id": r.post_id}
        for r in unhandled if r.partition in committed and r.offset < committed[r.partition]
    ]
    return AuditReport(
        posts_expected=len(expected) if expected is not None else None,
        posts_seen=len(scope & seen_ids),
        records_seen=len(posts),
        decided=len(decided_ids),
        dead_lettered=len(lettered.keys() & {(r.partition, r.offset) for r in posts}),
        dead_letters_by_reason=dict(sorted(Counter(lettered.values()).items())),
        lost=len(lost_keys),
        lost_sample=lost_keys[:SAMPLE],
        not_on_topic=len(missing),
        not_on_topic_sample=missing[:SAMPLE],
        topic_gaps=len(gaps),
        topic_gap_sample=gaps[:SAMPLE],
        unhandled_records=len(unhandled),
        ledger_records=len(scope & set(ledger)),
        ledger_missing=ledger_missing,
        ledger_mismatches=len(mismatches),
        ledger_mismatch_sample=mismatches[:SAMPLE],
        decision_events=sum(len(by_post[p]) for p in scope if p in by_post),
        duplicate_events=duplicates,
        posts_with_duplicates=posts_with_duplicates,
        conflicting_decision_ids=len(conflicting),
        conflicting_sample=conflicting[:SAMPLE],
        commit_violations=len(violations),
        commit_violation_sample=violations[:SAMPLE],
        committed=dict(committed),
    )


def _gaps(posts: list[PostRecord], topic: str) -> list[str]:
    """``topic[partition]@offset`` for every offset missing between a partition's first and last record."""
    by_partition: dict[int, set[int]] = defaultdict(set)
    for record in posts:
        by_partition[record.partition].add(record.offset)
    return [f"{topic}[{p}]@{o}" for p, offsets in sorted(by_partition.items())
            for o in range(min(offsets), max(offsets) + 1) if o not in offsets]


def _differences(record: dict, event: DecisionEvent) -> list[str]:
    """The compared fields where a ledger record and a decision event disagree."""
    diff = []
    for name in COMPARED_FIELDS:
        mine, theirs = record.get(name), getattr(event, name)
        if name == "scores":
            if not _same_scores(mine, theirs):
                diff.append(name)
        elif mine != theirs:
            diff.append(name)
    return diff


def _same_scores(a: dict | None, b: dict | None) -> bool:
    if not isinstance(a, dict) or not isinstance(b, dict) or set(a) != set(b):
        return False
    return all(math.isclose(float(a[k]), float(b[k]), rel_tol=0, abs_tol=SCORE_TOLERANCE) for k in a)
