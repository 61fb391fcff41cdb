"""The moderation consumer: one member of the consumer group, at least once, nothing lost.

One loop iteration handles one poll batch:

  1. intake   each record -> PostCreated, or a dead letter with a typed reason (poison)
  2. images   fetch from S3 concurrently, check size/sha256/format/pixels, preprocess with the shared preset
  3. banks    a PDQ bank hit removes without the model (reason names the entry); a repost of an image
              decided before reuses that decision (sha256)
  4. model    micro-batches of ``infer_batch`` to the scorer (Triton), each sent as soon as its images are
              ready, concurrently: inference overlaps the fetching and decoding of the rest of the batch
  5. policy   per-category thresholds -> allow / review / remove, with a deterministic decision id
  6. produce  decisions (+ review requests, dead letters) keyed by post_id, acks=all, and wait for every ack
  7. ledger   one S3 object per post, written once
  8. commit   the next offset of every partition in the batch, only now

A transient failure anywhere in 2-7 (Triton or S3 down, a produce not acknowledged) pauses the partitions,
backs off, and retries the same batch: nothing past an undecided post is committed. Poison is dead-lettered and
then committed. SIGTERM (``stop``) finishes the current batch, commits and leaves the group; after SIGKILL the
next member re-reads from the last commit, and the deterministic decision id lets readers drop the duplicates.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from threading import Event

import numpy as np

from tagwatch.clients import kafka_config, s3_client
from tagwatch.errors import PoisonInputError, RetryableError
from tagwatch.moderation.bank import BankMatcher, BankStore, pdq_hex
from tagwatch.moderation.deadletter import build_dead_letter
from tagwatch.moderation.group import GroupWatch, close_member, rebalancing
from tagwatch.moderation.events import Decision, EventType, ModelRef, PostCreated, ReviewRequest, encode
from tagwatch.moderation.images import ImageLimits, check_sha256, decode_image, fetch_image_bytes
from tagwatch.moderation.intake import parse_post
from tagwatch.moderation.ledger import Ledger
from tagwatch.moderation.metrics import StreamMetrics
from tagwatch.moderation.policy import Policy, decide
from tagwatch.moderation.scoring import Scorer
from tagwatch.preprocess import DEFAULT_PRESET, Preset
from tagwatch.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerOptions:
    max_poll_records: int = 64
    poll_timeout_ms: int = 500
    infer_batch: int = 16
    fetch_workers: int = 8
    infer_workers: int = 4
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    repost_cache_size: int = 10_000
    bank_refresh_s: float = 30.0
    # Kafka transactions: decisions and the offset commit in one transaction (exactly-once on Apache Kafka;
    # on Tansu the calls succeed but aborted records are not isolated - PLATFORM.md).
    transactional: bool = False
    # Deliver (produce + ledger) a batch in the background while the next batch is fetched, decoded and scored;
    # its offsets are still committed only after its delivery, and always in order (off: one batch at a time).
    pipeline: bool = True
    bank_threshold: int = 31
    limits: ImageLimits = field(default_factory=ImageLimits)
    # None: the scorer's (a registry version records the preset its model was trained with), else the default.
    preset: Preset | None = None


@dataclass
class RunStats:
    batches: int = 0
    consumed: int = 0
    decided: int = 0
    dead_lettered: int = 0
    retries: int = 0
    ledger_duplicates: int = 0


def decision_id(post_id: str, model: ModelRef, policy_version: str) -> str:
    """Same post, same model bytes, same policy -> same id, however often the post is re-processed."""
    return hashlib.sha256(f"{post_id}|{model.sha256}|{policy_version}".encode()).hexdigest()[:32]


@dataclass
class _Item:
    record: object
    post: PostCreated | None = None
    image: np.ndarray | None = None
    sha256: str | None = None
    pdq: str | None = None
    scores: dict[str, float] | None = None
    banned: bool = False
    reasons: list[str] = field(default_factory=list)
    poison: PoisonInputError | None = None


@dataclass
class _Staged:
    """A decided batch waiting for delivery (produce + ledger) and its commit."""

    records: list
    items: list[_Item]
    decisions: list[Decision]
    reviews: list[ReviewRequest]
    delivery: Future | None = None


class ModerationConsumer:
    def __init__(self, settings: Settings, scorer: Scorer, policy: Policy | None = None, *, options: ConsumerOptions | None = None,
                 metrics: StreamMetrics | None = None, client_id: str = "tagwatch-moderation") -> None:
        from kafka import KafkaConsumer, KafkaProducer

        self.settings = settings
        self.scorer = scorer
        self._policy = policy  # None: the scorer's (a registry version carries the policy calibrated for it)
        self.options = options or ConsumerOptions()
        self.metrics = metrics or StreamMetrics()
        self.topics = settings.kafka.topics
        self.s3 = s3_client(settings.s3)
        self.ledger = Ledger(self.s3, settings.s3.buckets.ledger)
        common = kafka_config(settings.kafka, client_id=client_id)
        tx = self.options.transactional
        self.consumer = KafkaConsumer(
            group_id=settings.kafka.consumer_group,
            enable_auto_commit=False,
            isolation_level="read_committed" if tx else "read_uncommitted",
            auto_offset_reset="earliest",
            max_poll_records=self.options.max_poll_records,
            session_timeout_ms=settings.kafka.session_timeout_ms,
            heartbeat_interval_ms=max(500, settings.kafka.session_timeout_ms // 3),
            **common,
        )
        producer_tx = {"transactional_id": f"{settings.kafka.consumer_group}-{client_id}"} if tx else {}
        self.producer = KafkaProducer(acks="all", retries=5, linger_ms=5, **producer_tx, **common)
        if tx:
            self.producer.init_transactions()
        self._group = GroupWatch()
        self.consumer.subscribe([self.topics.posts], listener=self._group.listener())
        self._fetch_pool = ThreadPoolExecutor(self.options.fetch_workers, thread_name_prefix="fetch")
        self._infer_pool = ThreadPoolExecutor(self.options.infer_workers, thread_name_prefix="infer")
        self._deliver_pool = ThreadPoolExecutor(1, thread_name_prefix="deliver")
        self._reposts: OrderedDict[str, tuple[str, dict[str, float]]] = OrderedDict()
        self._banks = BankStore(self.s3, settings.s3.buckets.models)
        self._matcher = BankMatcher([], self.options.bank_threshold)
        self._banks_loaded_at = float("-inf")
        self.stats = RunStats()

    @property
    def policy(self) -> Policy:
        return self._policy or self.scorer.policy

    @property
    def preset(self) -> Preset:
        """The preprocessing the served model was trained with: options > scorer (registry) > the default."""
        return self.options.preset or getattr(self.scorer, "preset", None) or DEFAULT_PRESET

    # -- the loop ------------------------------------------------------------------------------------
    def run(self, stop: Event, *, idle_exit_s: float | None = None) -> RunStats:
        """Consume until ``stop`` is set (or idle for ``idle_exit_s``); always commit before leaving.

        Idle means: partitions held, no rebalance pending, and no records for ``idle_exit_s`` since the last
        record or the last change of assignment. Time spent (re)joining the group never counts, so a member
        never gives up in the middle of a rebalance (which, leaving as the rebalance's leader, would wedge a
        Tansu group - moderation/group.py).
        """
        last_work = time.monotonic()
        rebalancing_since = None
        pending: _Staged | None = None  # the previous batch, decided, being delivered in the background
        try:
            while not stop.is_set():
                batch = self.consumer.poll(timeout_ms=self.options.poll_timeout_ms)
                records = [r for recs in batch.values() for r in recs]
                if records:
                    last_work = time.monotonic()
                    rebalancing_since = None
                    self._group.recover(self.metrics)
                    self.metrics.in_flight.set(len(records) + (len(pending.records) if pending else 0))
                    pending = self._process(records, pending, stop)
                    self.metrics.in_flight.set(len(pending.records) if pending else 0)
                    continue
                if pending is not None:
                    self._finish(pending, stop)
                    pending = None
                    self.metrics.in_flight.set(0)
                now = time.monotonic()
                if rebalancing(self.consumer):
                    rebalancing_since = rebalancing_since or now
                    self._group.warn_if_stuck(now - rebalancing_since, self.metrics, self.settings.kafka)
                    last_work = now
                    continue
                if rebalancing_since is not None:
                    rebalancing_since = None
                    self._group.recover(self.metrics)
                if not self.consumer.assignment():  # a member with no partitions (more members than partitions)
                    last_work = now
                    continue
                last_work = max(last_work, self._group.changed_at)
                if idle_exit_s is not None and now - last_work > idle_exit_s:
                    log.info("idle for %.1fs: leaving the group", idle_exit_s)
                    break
        finally:
            if pending is not None:
                try:
                    self._finish(pending, stop)
                except Exception as error:  # noqa: BLE001 - uncommitted, so the group re-reads it: nothing lost
                    log.warning("last batch of %d left uncommitted (%s)", len(pending.records), type(error).__name__)
            self.close()
        return self.stats

    def _process(self, records: list, pending: _Staged | None, stop: Event) -> _Staged | None:
        """Decide ``records`` while ``pending`` is delivered; commit ``pending``; start delivering ``records``.

        Offsets only move in order and only past delivered decisions: a batch is committed after its own
        delivery and after every earlier batch's commit. Any trouble falls back to one batch at a time.
        """
        # An earlier batch that could not be decided before a stop leaves everything after it uncommitted too
        # (returning None drops this batch unacknowledged: the group re-reads both).
        if self.options.transactional or not self.options.pipeline:
            if pending is None or self._finish(pending, stop):
                self._handle_with_retry(records, stop)
            return None
        try:
            staged = self._prepare(records)
        except RetryableError as error:
            if pending is None or self._finish(pending, stop):  # the earlier batch commits first
                self._handle_with_retry(records, stop, failed=error)
            return None
        if pending is not None and not self._finish(pending, stop):
            return None
        staged.delivery = self._deliver_pool.submit(self._deliver, staged)
        return staged

    def _finish(self, staged: _Staged, stop: Event) -> bool:
        """Wait for a staged batch's delivery, then commit its offsets (or retry it one batch at a time).
        False: it was given up uncommitted at a stop."""
        try:
            staged.delivery.result()
            self._commit(staged.records)
        except RetryableError as error:
            # delivered again: duplicate events carry the same decision id, the ledger refuses a second write
            return self._handle_with_retry(staged.records, stop, failed=error)
        self._done(staged)
        return True

    def _handle_with_retry(self, records: list, stop: Event, *, failed: RetryableError | None = None) -> bool:
        """Handle the batch, retrying with back-off while partitions are paused. ``failed``: a first attempt
        (the pipelined one) already failed with this error. False: given up at a stop, nothing committed."""
        backoff = self.options.backoff_initial_s
        while True:
            try:
                if failed is not None:
                    error, failed = failed, None
                    raise error
                self.handle_batch(records)
                if self.consumer.paused():
                    self.consumer.resume(*self.consumer.paused())
                return True
            except RetryableError as error:
                self.stats.retries += 1
                self.metrics.retries.labels(cause=type(error.__cause__ or error).__name__).inc()
                self.metrics.healthy = False
                log.warning("batch of %d not decided (%s); retrying in %.1fs", len(records), error, backoff)
                assigned = self.consumer.assignment()
                if assigned:
                    self.consumer.pause(*assigned)
                self._wait_alive(backoff)
                backoff = min(backoff * 2, self.options.backoff_max_s)
                # A rebalance during the wait may have taken partitions away: their records are the new
                # owner's now (uncommitted, so it re-reads them). Keep only what is still ours.
                owned = self.consumer.assignment()
                records = [r for r in records if _tp(r) in owned]
                if not records:
                    return True
                if stop.is_set() and backoff >= self.options.backoff_max_s:
                    log.warning("stopping with %d undecided records uncommitted; the group will re-read them", len(records))
                    return False

    def _wait_alive(self, seconds: float) -> None:
        """Sleep while polling (partitions paused, so nothing is fetched) to stay in the group."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.consumer.poll(timeout_ms=int(min(200, max(1, (deadline - time.monotonic()) * 1000))))

    # -- one batch -------------------------------------------------------------------------------------
    def handle_batch(self, records: list) -> None:
        """One batch, start to commit, synchronously (retries, transactional mode, ``pipeline=False``)."""
        staged = self._prepare(records)
        if self.options.transactional:
            self._produce_and_commit_in_transaction(staged.items, staged.decisions, staged.reviews, records)
        else:
            self._deliver(staged)
            self._commit(records)
        self._done(staged)

    def _prepare(self, records: list) -> _Staged:
        """Parse, load, score and decide (steps 1-5); nothing leaves the process yet."""
        items = [_Item(record=r) for r in records]
        for item in items:
            try:
                item.post = parse_post(item.record)
            except PoisonInputError as error:
                item.poison = error
        self._load_and_score([i for i in items if i.poison is None])
        decisions, reviews = self._decide([i for i in items if i.poison is None])
        self._remember(items, decisions)
        return _Staged(records=records, items=items, decisions=decisions, reviews=reviews)

    def _deliver(self, staged: _Staged) -> None:
        """Produce the batch's events and wait for every ack, then write its ledger records (steps 6-7)."""
        self._produce(staged.items, staged.decisions, staged.reviews)
        self._record(staged.decisions)

    def _done(self, staged: _Staged) -> None:
        self.metrics.healthy = True
        self.stats.batches += 1
        self.stats.consumed += len(staged.records)
        self.metrics.consumed.inc(len(staged.records))
        self.metrics.batch_size.observe(len(staged.records))

    def _load_and_score(self, items: list[_Item]) -> None:
        """Fetch, check and decode every image concurrently, and send each micro-batch to the model as soon as
        its images are ready: the model server works on the first images while the rest are still being
        fetched and decoded (the two overlap instead of taking turns). A bank hit or a repost skips the model.
        Any RetryableError (S3, Triton) re-raises here and the whole batch is retried."""
        self._refresh_banks()
        loads = [self._fetch_pool.submit(self._load, item) for item in items]
        size = self.options.infer_batch
        scoring: list[tuple[list[_Item], object]] = []
        ready: list[_Item] = []
        for item, load in zip(items, loads, strict=True):
            load.result()
            if item.poison is not None:
                continue
            self._check_bank(item)
            if not item.banned:
                self._reuse_repost(item)
            if item.scores is None:
                ready.append(item)
            if len(ready) == size:
                scoring.append((ready, self._infer_pool.submit(self._run_model, ready)))
                ready = []
        if ready:
            scoring.append((ready, self._infer_pool.submit(self._run_model, ready)))
        categories = self.scorer.categories
        for chunk, future in scoring:
            for item, row in zip(chunk, future.result(), strict=True):
                item.scores = {c: float(s) for c, s in zip(categories, row, strict=True)}

    def _load(self, item: _Item) -> None:
        """S3 GET, size/sha256/format/pixel checks, PDQ, the shared preset; poison is recorded on the item."""
        limits = self.options.limits
        try:
            data = fetch_image_bytes(self.s3, item.post.image_uri, allowed_bucket=self.settings.s3.buckets.posts,
                                     limits=limits)
            check_sha256(data, item.post.sha256)
            item.sha256 = item.post.sha256
            image = decode_image(data, limits)
            item.pdq, _quality = pdq_hex(image)
            item.image = self.preset(image)
        except PoisonInputError as error:
            item.poison = error

    def _run_model(self, chunk: list[_Item]) -> np.ndarray:
        t0 = time.monotonic()
        scores = self.scorer.score(np.stack([i.image for i in chunk]))
        self.metrics.model_latency.observe(time.monotonic() - t0)
        return scores

    def _refresh_banks(self) -> None:
        if time.monotonic() - self._banks_loaded_at > self.options.bank_refresh_s:
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                self._matcher = BankMatcher(self._banks.load_all(), self.options.bank_threshold)
            except (BotoCoreError, ClientError) as error:
                raise RetryableError(f"hash banks unreadable: {type(error).__name__}") from error
            self._banks_loaded_at = time.monotonic()

    def _check_bank(self, item: _Item) -> None:
        hit = self._matcher.match(item.pdq) if item.pdq else None
        if hit:
            bank, entry, distance = hit
            item.banned = True
            item.scores = {c: 0.0 for c in self.scorer.categories}
            item.reasons.append(f"bank:{bank}:{entry.entry_id} ({entry.reason}; distance {distance})")

    def _reuse_repost(self, item: _Item) -> None:
        if item.sha256 in self._reposts:
            original, scores = self._reposts[item.sha256]
            item.scores = scores
            item.reasons.append(f"repost:{original}")

    def _decide(self, items: list[_Item]) -> tuple[list[Decision], list[ReviewRequest]]:
        decisions, reviews = [], []
        now = datetime.now(timezone.utc)
        model = self.scorer.model
        for item in items:
            action, rule_reasons = ("remove", []) if item.banned else decide(item.scores, self.policy)
            post = item.post
            decision = Decision(
                decision_id=decision_id(post.post_id, model, self.policy.version),
                post_id=post.post_id,
                action=action,
                scores=item.scores,
                reasons=rule_reasons + item.reasons,
                model=model,
                policy_version=self.policy.version,
                decided_at=now,
                latency_ms=max(0.0, (now - post.created_at).total_seconds() * 1000),
                source={"topic": item.record.topic, "partition": item.record.partition, "offset": item.record.offset},
            )
            decisions.append(decision)
            if action == "review":
                reviews.append(ReviewRequest(decision_id=decision.decision_id, post_id=post.post_id,
                                             image_uri=post.image_uri, scores=item.scores,
                                             reasons=decision.reasons, requested_at=now))
        return decisions, reviews

    def _produce(self, items: list[_Item], decisions: list[Decision], reviews: list[ReviewRequest]) -> None:
        from kafka.errors import KafkaError

        futures = []
        for decision in decisions:
            value, headers = encode(decision, EventType.DECISION, subject=decision.post_id, event_id=decision.decision_id)
            futures.append(self.producer.send(self.topics.decisions, key=decision.post_id.encode(), value=value, headers=headers))
        for review in reviews:
            value, headers = encode(review, EventType.REVIEW, subject=review.post_id, event_id=review.decision_id)
            futures.append(self.producer.send(self.topics.review, key=review.post_id.encode(), value=value, headers=headers))
        poisoned = [i for i in items if i.poison is not None]
        for item in poisoned:
            letter = build_dead_letter(item.record, item.poison.reason, item.poison.message)
            value, headers = encode(letter, EventType.DEAD_LETTER)
            futures.append(self.producer.send(self.topics.dead_letter, key=item.record.key, value=value, headers=headers))
            log.info("dead letter %s[%d]@%d: %s (%s)", item.record.topic, item.record.partition, item.record.offset,
                     letter.reason, letter.error[:200])
        try:
            self.producer.flush(timeout=30)
            for future in futures:
                future.get(timeout=30)
        except KafkaError as error:
            raise RetryableError(f"produce not acknowledged: {type(error).__name__}") from error
        for decision in decisions:
            self.metrics.decided.labels(action=decision.action).inc()
            self.metrics.e2e_latency.observe(decision.latency_ms / 1000)
        for item in poisoned:
            self.metrics.dead_lettered.labels(reason=item.poison.reason).inc()
        self.stats.decided += len(decisions)
        self.stats.dead_lettered += len(poisoned)

    def _record(self, decisions: list[Decision]) -> None:
        # one conditional PUT per post, concurrently (they are independent); any failure re-raises here
        written = list(self._fetch_pool.map(self.ledger.record, decisions))
        self.stats.ledger_duplicates += written.count(False)

    def _produce_and_commit_in_transaction(self, items, decisions, reviews, records) -> None:
        """begin -> decisions -> ledger -> offsets -> commit; any failure aborts and the batch is retried."""
        from kafka.errors import KafkaError

        self.producer.begin_transaction()
        try:
            self._produce(items, decisions, reviews)
            self._record(decisions)
            self.producer.send_offsets_to_transaction(_next_offsets(records), self.consumer.group_metadata())
            self.producer.commit_transaction()
        except (KafkaError, RetryableError) as error:
            try:
                self.producer.abort_transaction()
            except KafkaError:
                log.warning("abort_transaction failed after %s", type(error).__name__)
            if isinstance(error, RetryableError):
                raise
            raise RetryableError(f"transaction failed: {type(error).__name__}") from error

    def _commit(self, records: list) -> None:
        from kafka.errors import KafkaError

        try:
            self.consumer.commit(_next_offsets(records))
        except KafkaError as error:
            # Decisions are out and in the ledger; an uncommitted batch is re-read and deduplicated downstream.
            raise RetryableError(f"offset commit failed: {type(error).__name__}") from error

    def _remember(self, items: list[_Item], decisions: list[Decision]) -> None:
        by_post = {d.post_id: d for d in decisions}
        for item in items:
            if item.poison is None and item.sha256 and not item.banned and not any(r.startswith("repost:") for r in item.reasons):
                self._reposts[item.sha256] = (item.post.post_id, by_post[item.post.post_id].scores)
                self._reposts.move_to_end(item.sha256)
        while len(self._reposts) > self.options.repost_cache_size:
            self._reposts.popitem(last=False)

    def close(self) -> None:
        self._deliver_pool.shutdown(wait=True)
        self._fetch_pool.shutdown(wait=True)
        self._infer_pool.shutdown(wait=True)
        try:
            self.producer.flush(timeout=10)
            self.producer.close(timeout=10)
        finally:
            close_member(self.consumer)


def _next_offsets(records: list) -> dict:
    """The offset to commit per partition: one past the last record of the batch."""
    from kafka import OffsetAndMetadata

    offsets: dict = {}
    for record in records:
        tp = _tp(record)
        offsets[tp] = max(offsets.get(tp, -1), record.offset + 1)
    return {tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()}


def _tp(record):
    from kafka import TopicPartition

    return TopicPartition(record.topic, record.partition)
