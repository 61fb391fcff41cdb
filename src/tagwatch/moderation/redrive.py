"""Re-drive dead letters: publish each selected dead letter's original record to the posts topic again.

The record goes out byte for byte as it was first consumed (key, value, headers), with one header set:
``tagwatch-redrive-count``, one more than the original's own (0 without one). A record whose count would pass
``max_redrives`` stays dead. Each dead letter is claimed first (``claims.ClaimStore``: a conditional S3 put), so
concurrent runs never re-drive one twice; a publish that fails releases its claim for a later run. A claim left
unpublished for longer than ``stale_claim_s`` (its run was killed between claiming and publishing) is taken over
by one later run (``ClaimStore.take_over``, a compare-and-swap), so no dead letter stays stuck behind a dead run.

What happens to a re-driven record is the consumer's ordinary business: decided (the ledger keeps the first
decision of a post, once) or dead-lettered again, its headers (with the count) kept in the new envelope.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Callable

from tagwatch.errors import TagwatchError
from tagwatch.moderation.claims import ClaimStore, RecordAddress, RedriveClaim, now, who
from tagwatch.moderation.dlq import REDRIVE_COUNT_HEADER, DlqEntry, Original, load_original, redrive_count, select

log = logging.getLogger(__name__)

DEFAULT_MAX_REDRIVES = 3
DEFAULT_STALE_CLAIM_S = 900.0  # a run publishes within seconds of claiming; 15 min unpublished means it died

# outcome statuses
REDRIVEN = "redriven"
WOULD_REDRIVE = "would_redrive"  # --dry-run
AT_MAX = "at_max_redrives"  # stays dead
ALREADY = "already_redriven"  # a claim existed before this run looked
LOST_CLAIM = "claimed_by_another_run"  # a concurrent run's claim won
DUPLICATE = "duplicate_dead_letter"  # another dead letter of the same original record is (being) re-driven
FAILED = "failed"


@dataclass
class Outcome:
    dlq_partition: int
    dlq_offset: int
    post_id: str | None
    status: str
    redrive_count: int | None = None  # the count the re-published record carries (or would carry)
    detail: str = ""
    published: dict | None = None  # {topic, partition, offset} of the re-published record


@dataclass
class RedriveReport:
    reason: str
    dry_run: bool
    max_redrives: int
    selected: int = 0
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def ok(self) -> bool:
        return self.count(FAILED) == 0

    def to_dict(self) -> dict:
        statuses = sorted({o.status for o in self.outcomes})
        return {"reason": self.reason, "dry_run": self.dry_run, "max_redrives": self.max_redrives,
                "selected": self.selected, "counts": {s: self.count(s) for s in statuses},
                "outcomes": [asdict(o) for o in self.outcomes]}


def redriven_headers(headers: list[tuple[str, bytes]], count: int) -> list[tuple[str, bytes]]:
    """The original headers untouched, with ``tagwatch-redrive-count`` set to ``count`` (in place if present)."""
    value = str(count).encode("ascii")
    if any(name == REDRIVE_COUNT_HEADER for name, _ in headers):
        return [(name, value if name == REDRIVE_COUNT_HEADER else v) for name, v in headers]
    return [*headers, (REDRIVE_COUNT_HEADER, value)]


@dataclass(frozen=True)
class Planned:
    entry: DlqEntry
    original: Original
    count: int  # the re-published record's count
    replaces: RedriveClaim | None = None  # a stale claim this run takes over


def plan_redrive(entries: list[DlqEntry], claims: dict[tuple[int, int], RedriveClaim],
                 load: Callable[[DlqEntry], Original], *, max_redrives: int,
                 stale_claim_s: float = DEFAULT_STALE_CLAIM_S,
                 at: datetime | None = None) -> tuple[list[Planned], list[Outcome]]:
    """Which of the selected ``entries`` to re-drive, and why each other one is not. A claim unpublished for
    longer than ``stale_claim_s`` (at ``at``, default now) does not block: the dead letter is planned to replace it."""
    at = at or now()
    claimed_originals = {(c.original.topic, c.original.partition, c.original.offset) for c in claims.values()
                         if not c.is_stale(at=at, after_s=stale_claim_s)}
    planned: list[Planned] = []
    skipped: list[Outcome] = []
    for entry in entries:
        def skip(status: str, detail: str, count: int | None = None) -> None:
            skipped.append(Outcome(entry.partition, entry.offset, entry.post_id, status, count, detail))

        claim = claims.get((entry.partition, entry.offset))
        stale = claim if claim is not None and claim.is_stale(at=at, after_s=stale_claim_s) else None
        if claim is not None and stale is None:
            published = f" as {claim.published.partition}:{claim.published.offset}" if claim.published else \
                f" (claimed, not published yet; taken over once unpublished for {stale_claim_s:.0f} s)"
            skip(ALREADY, f"by {claim.claimed_by} at {claim.claimed_at.isoformat(timespec='seconds')}{published}",
                 claim.redrive_count)
            continue
        letter = entry.letter
        original_address = (letter.topic, letter.partition, letter.offset)
        if original_address in claimed_originals:
            skip(DUPLICATE, f"{letter.topic}[{letter.partition}]@{letter.offset} is re-driven from another dead letter")
            continue
        try:
            original = load(entry)
            count = redrive_count(original.headers) + 1
        except TagwatchError as error:
            skip(FAILED, error.message)
            continue
        except (ValueError, UnicodeDecodeError) as error:
            skip(FAILED, f"unreadable {REDRIVE_COUNT_HEADER} header: {error}")
            continue
        if count > max_redrives:
            skip(AT_MAX, f"re-driven {count - 1} time(s) already (max {max_redrives}): stays dead", count - 1)
            continue
        claimed_originals.add(original_address)
        planned.append(Planned(entry, original, count, replaces=stale))
    return planned, skipped


def redrive(settings, *, reason: str, since: datetime | None = None, dry_run: bool = False,
            max_redrives: int = DEFAULT_MAX_REDRIVES, quiet_s: float = 2.0, entries: list[DlqEntry] | None = None,
            run_id: str | None = None, stale_claim_s: float = DEFAULT_STALE_CLAIM_S) -> RedriveReport:
    """Re-drive the dead letters of ``reason`` (dead-lettered at/after ``since``) to the posts topic.

    ``entries``: the DLQ as already read (default: read it now). Returns what happened to each selected one.
    """
    from tagwatch.clients import s3_client
    from tagwatch.moderation.dlq import read_dead_letters

    s3 = s3_client(settings.s3)
    store = ClaimStore(s3, settings.s3.buckets.ledger)
    dlq_topic = settings.kafka.topics.dead_letter
    if entries is None:
        entries = read_dead_letters(settings.kafka, quiet_s=quiet_s)
    chosen = select(entries, reason=reason, since=since)
    report = RedriveReport(reason=reason, dry_run=dry_run, max_redrives=max_redrives, selected=len(chosen))
    if not chosen:
        return report
    planned, skipped = plan_redrive(chosen, store.for_topic(dlq_topic), lambda e: load_original(s3, e),
                                    max_redrives=max_redrives, stale_claim_s=stale_claim_s)
    report.outcomes.extend(skipped)
    if dry_run:
        report.outcomes.extend(Outcome(p.entry.partition, p.entry.offset, p.entry.post_id, WOULD_REDRIVE, p.count)
                               for p in planned)
    else:
        report.outcomes.extend(_claim_and_publish(settings, store, planned, run_id or uuid.uuid4().hex[:12]))
    report.outcomes.sort(key=lambda o: (o.dlq_partition, o.dlq_offset))
    return report


def _claim_and_publish(settings, store: ClaimStore, planned: list[Planned], run_id: str) -> list[Outcome]:
    from kafka import KafkaProducer

    from tagwatch.clients import kafka_config
    from tagwatch.moderation.publish import Send, confirm_sends, send

    outcomes: list[Outcome] = []
    won: list[tuple[Planned, RedriveClaim]] = []
    me = who()
    for item in planned:
        entry, letter = item.entry, item.entry.letter
        claim = RedriveClaim(
            dead_letter=RecordAddress(topic=entry.topic, partition=entry.partition, offset=entry.offset),
            original=RecordAddress(topic=letter.topic, partition=letter.partition, offset=letter.offset),
            post_id=entry.post_id, reason=letter.reason, redrive_count=item.count, claimed_by=me,
            claimed_at=now(), run_id=run_id)
        if item.replaces is not None:
            old = item.replaces
            claim = claim.model_copy(update={"took_over": f"{old.claimed_by} at {old.claimed_at.isoformat()}"})
        if store.take_over(item.replaces, claim) if item.replaces is not None else store.claim(claim):
            won.append((item, claim))
        else:
            outcomes.append(Outcome(entry.partition, entry.offset, entry.post_id, LOST_CLAIM, item.count,
                                    "another run claimed it first"))
    if not won:
        return outcomes
    topic = settings.kafka.topics.posts
    producer = KafkaProducer(acks="all", linger_ms=5, max_request_size=settings.kafka.max_request_bytes,
                             **kafka_config(settings.kafka, client_id="tagwatch-redrive"))
    by_send: dict[int, tuple[Planned, RedriveClaim]] = {}
    try:
        sends = []
        for item, claim in won:
            headers = redriven_headers(item.original.headers, item.count)
            try:
                sent = send(producer, topic, Send(item.entry.post_id, item.original.key, item.original.value, headers))
            except Exception as error:  # noqa: BLE001 - e.g. a record over the request limit: release, report
                store.release(claim)
                outcomes.append(Outcome(item.entry.partition, item.entry.offset, item.entry.post_id, FAILED,
                                        item.count, f"publish refused ({type(error).__name__}: {str(error)[:200]}); "
                                                    "claim released"))
                continue
            sends.append(sent)
            by_send[id(sent)] = (item, claim)
        confirmed, failed = confirm_sends(producer, topic, sends)
    finally:
        producer.close(timeout=10)
    for sent, metadata in confirmed:
        item, claim = by_send[id(sent)]
        address = RecordAddress(topic=topic, partition=metadata.partition, offset=metadata.offset)
        detail = f"took over the stale claim of {claim.took_over}" if claim.took_over else ""
        try:
            store.mark_published(claim, address)
        except TagwatchError as error:  # published all the same: the claim still stands, only without the offset
            detail = f"claim not updated with the new offset: {error.message}"
        log.info("re-drove dead letter %s (post %s) to %s[%d]@%d, redrive count %d", item.entry.address,
                 item.entry.post_id, topic, metadata.partition, metadata.offset, item.count)
        outcomes.append(Outcome(item.entry.partition, item.entry.offset, item.entry.post_id, REDRIVEN, item.count,
                                detail, published=address.model_dump()))
    for sent, error in failed:
        item, claim = by_send[id(sent)]
        store.release(claim)
        outcomes.append(Outcome(item.entry.partition, item.entry.offset, item.entry.post_id, FAILED, item.count,
                                f"publish failed ({type(error).__name__}: {str(error)[:200]}); claim released"))
    return outcomes
