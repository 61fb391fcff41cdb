"""The moderation consumer: one member of the consumer group, at least once, nothing lost. A thin loop:

  1-5  decide    records -> posts (moderation/batch.py) -> images, banks, model, policy (moderation/core.py,
                 no Kafka there: the benchmark and tools call the same core)
  6-8  checkpoint  decisions, review requests, dead letters (acks=all), then one ledger record per post, then
                 the next offset of every partition in the batch, only for partitions still held under the
                 assignment the records were fetched in (moderation/checkpoint.py, delivery.py, offsets.py)

Three batches overlap: one is delivered in the background, the next is being scored, and the one after it is
already fetching its images, so the model never waits for a batch boundary; offsets still only move in order. Failures are retryable or permanent, decided in one place (moderation/failures.py); permanent ones are
dead-lettered and committed, retryable ones back off without losing a record (moderation/retrying.py).
SIGTERM (``stop``) finishes the current batch, commits and leaves the group; after SIGKILL the next member
re-reads from the last commit, and the deterministic ids let readers drop duplicates.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from threading import Event

from tagwatch.clients import kafka_config, s3_client
from tagwatch.lean_s3 import LeanS3
from tagwatch.errors import RetryableError
from tagwatch.moderation.batch import BatchModerator, Staged, decision_id, resolve_preset
from tagwatch.moderation.checkpoint import Checkpoint
from tagwatch.moderation.delivery import Delivery
from tagwatch.moderation.failures import RecordAttempts
from tagwatch.moderation.group import GroupWatch, close_member, rebalancing
from tagwatch.moderation.images import ImageLimits
from tagwatch.moderation.memory import MemoryKeeper
from tagwatch.moderation.metrics import StreamMetrics
from tagwatch.moderation.offsets import PartitionTracker
from tagwatch.moderation.policy import Policy
from tagwatch.moderation.policy_source import policy_source_for
from tagwatch.moderation.retrying import Retrying
from tagwatch.moderation.scoring import Scorer
from tagwatch.moderation.signals import build_image_signals, build_text_signals
from tagwatch.preprocess import Preset
from tagwatch.settings import Settings

__all__ = ["ConsumerOptions", "ModerationConsumer", "RunStats", "decision_id"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerOptions:
    # 128 rather than 64: fewer gaps where the model waits for the next batch's first images
    # (benchmarks/stream.py: 0.71x raw vs 0.64-0.67x at 64; p99 at half load within the bound either way)
    max_poll_records: int = 128
    poll_timeout_ms: int = 500
    infer_batch: int = 16
    fetch_workers: int = 8
    infer_workers: int = 4
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    # A record whose own step (its image fetch) fails this many times in a row is dead-lettered with its last
    # error (retries_exhausted): with the back-off above, within ~8 s. Outages of the model server, the broker
    # or the whole store are waited out instead (they fail every record alike).
    max_record_attempts: int = 5
    # A partition with undecided records for longer than this makes /healthz answer 503 and name it.
    stuck_after_s: float = 60.0
    repost_cache_size: int = 10_000
    bank_refresh_s: float = 30.0
    # Kafka transactions: decisions and the offset commit in one transaction (exactly-once on Apache Kafka;
    # on Tansu the calls succeed but aborted records are not isolated - PLATFORM.md).
    transactional: bool = False
    # Three batches at once: one delivered (produce + ledger) in the background, the next being scored, and the
    # one after it already fetching its images (so the model never waits between batches); offsets are still
    # committed only after a batch's delivery, and always in order (off: one batch at a time).
    pipeline: bool = True
    bank_threshold: int = 31
    limits: ImageLimits = field(default_factory=ImageLimits)
    # None: the scorer's (a registry version records the preset its model was trained with), else the default.
    preset: Preset | None = None
    # Caption signals to score (moderation/signals/); None: settings.moderation.signals.
    signals: tuple[str, ...] | None = None


@dataclass
class RunStats:
    batches: int = 0
    consumed: int = 0
    decided: int = 0
    dead_lettered: int = 0
    retries: int = 0
    ledger_duplicates: int = 0


@dataclass
class Deciding:
    """A batch whose decisions are being made in the background."""

    records: list
    epochs: dict
    future: Future | None = None
    images: set[str] = field(default_factory=set)  # the sha256 of each post's image, once parsed
    parsed: Event = field(default_factory=Event)


class ModerationConsumer(Retrying):
    def __init__(self, settings: Settings, scorer: Scorer, policy: Policy | None = None, *, options: ConsumerOptions | None = None,
                 metrics: StreamMetrics | None = None, client_id: str = "tagwatch-moderation") -> None:
        from kafka import KafkaConsumer, KafkaProducer

        self._memory = MemoryKeeper()  # before the clients and pools start their threads
        self.settings = settings
        self.scorer = scorer
        self.options = options or ConsumerOptions()
        self.metrics = metrics or StreamMetrics()
        self.metrics.stuck_after_s = self.options.stuck_after_s
        self.topics = settings.kafka.topics
        # the image GETs and ledger PUTs (one each per post) skip boto3's per-call machinery (lean_s3.py)
        self.s3 = LeanS3(settings.s3, s3_client(settings.s3))
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
        self.producer = KafkaProducer(acks="all", retries=5, linger_ms=5,
                                      max_request_size=settings.kafka.max_request_bytes, **producer_tx, **common)
        if tx:
            self.producer.init_transactions()
        self.tracker = PartitionTracker(self.consumer)
        self._group = GroupWatch(self.tracker, self.metrics)
        self.consumer.subscribe([self.topics.posts], listener=self._group.listener())
        self.stats = RunStats()
        self.moderator = BatchModerator(self.s3, scorer, posts_bucket=settings.s3.buckets.posts,
                                        models_bucket=settings.s3.buckets.models, options=self.options,
                                        metrics=self.metrics, policy=policy,
                                        signals=build_text_signals(self.options.signals if self.options.signals
                                                                   is not None else settings.moderation.signals),
                                        image_signals=build_image_signals(settings),
                                        policy_source=None if policy is not None else
                                        policy_source_for(scorer, settings, self.metrics))
        self._io_pool = ThreadPoolExecutor(self.options.fetch_workers, thread_name_prefix="ledger")
        self.delivery = Delivery(self.producer, self.s3, self.topics, ledger_bucket=settings.s3.buckets.ledger,
                                 max_request_bytes=settings.kafka.max_request_bytes, pool=self._io_pool,
                                 metrics=self.metrics, stats=self.stats)
        self.checkpoint = Checkpoint(self.consumer, self.tracker, self.delivery, transactional=tx)
        self._deliver_pool = ThreadPoolExecutor(1, thread_name_prefix="deliver")
        self._decide_pool = ThreadPoolExecutor(2, thread_name_prefix="decide")  # this batch and the next
        self.attempts = RecordAttempts(self.options.max_record_attempts)
        self._undecided_since: dict = {}  # partition -> (monotonic time, first undecided offset)

    @property
    def policy(self) -> Policy:
        return self.moderator.policy

    @property
    def preset(self) -> Preset:
        """The preprocessing the served model was trained with: options > scorer (registry) > the default."""
        return resolve_preset(self.options, self.scorer)

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
        deciding: Deciding | None = None  # the newest batch, being decided in the background
        pending: Staged | None = None  # the batch before it, decided, being delivered in the background
        try:
            while not stop.is_set():
                # while a batch is being decided, only collect what is already fetched: its result comes first
                polled = self.consumer.poll(timeout_ms=0 if deciding else self.options.poll_timeout_ms)
                records = self.tracker.admit(polled)
                self._memory.maybe_trim()
                if polled:
                    last_work = time.monotonic()
                if records:
                    rebalancing_since = None
                    self._group.recover(self.metrics)
                    if self._overlapped:
                        started = self._start(records, earlier=deciding)
                        if deciding is not None:
                            pending = self._advance(deciding, pending, stop)
                        deciding = started
                    else:
                        pending = self._process(records, pending, stop)
                    self._count_in_flight(deciding, pending)
                    continue
                if deciding is not None:
                    pending, deciding = self._advance(deciding, pending, stop), None
                    self._count_in_flight(deciding, pending)
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
            try:
                if deciding is not None:  # a stop finishes the batch in hand, as without the overlap
                    pending = self._advance(deciding, pending, stop)
                if pending is not None:
                    self._finish(pending, stop)
            except Exception as error:  # noqa: BLE001 - uncommitted, so the group re-reads it: nothing lost
                log.warning("last batches left uncommitted (%s)", type(error).__name__)
            self.close()
        return self.stats

    @property
    def _overlapped(self) -> bool:
        return self.options.pipeline and not self.options.transactional

    def _count_in_flight(self, *batches) -> None:
        self.metrics.in_flight.set(sum(len(b.records) for b in batches if b is not None))

    def _start(self, records: list, earlier: Deciding | None) -> Deciding:
        """Start deciding ``records`` in the background while the batch before them (``earlier``) is still being
        decided. If the two share an image, this batch's repost lookups and model calls wait for ``earlier``, so the
        repost reuses its decision (its errors are its own); otherwise nothing waits."""
        deciding = Deciding(records, self.tracker.epochs_of(records))

        def after(outcomes: list) -> None:
            deciding.images.update(o.post.sha256 for o in outcomes if o.post is not None)
            deciding.parsed.set()
            if earlier is None:
                return
            while not earlier.parsed.wait(0.05) and not earlier.future.done():
                pass
            if deciding.images & earlier.images:  # only then: most batches share no image and never wait
                futures_wait([earlier.future])

        def prepare() -> Staged:
            try:
                return self._prepare(records, after)
            finally:
                deciding.parsed.set()  # also when it failed before parsing: a later batch must not wait for it

        deciding.future = self._decide_pool.submit(prepare)
        return deciding

    def _advance(self, deciding: Deciding, pending: Staged | None, stop: Event) -> Staged | None:
        """Wait for ``deciding``'s decisions; commit ``pending`` (delivered meanwhile); start delivering them.

        Offsets only move in order and only past delivered decisions: a batch is committed after its own
        delivery and after every earlier batch's commit. Any trouble falls back to one batch at a time.
        An earlier batch that could not be finished before a stop leaves everything after it uncommitted too
        (returning None drops this batch unacknowledged at a stop: the group re-reads both).
        """
        try:
            staged = deciding.future.result()
        except RetryableError as error:
            if pending is None or self._finish(pending, stop):  # the earlier batch commits first
                self._handle_with_retry(deciding.records, deciding.epochs, stop, failed=error)
            return None
        staged.epochs = deciding.epochs
        if pending is not None and not self._finish(pending, stop):
            return None
        staged.delivery = self._deliver_pool.submit(self.checkpoint.deliver, staged)
        return staged

    def _process(self, records: list, pending: Staged | None, stop: Event) -> None:
        """One batch at a time (transactional mode, ``pipeline=False``): ``pending`` first, then ``records``."""
        if pending is None or self._finish(pending, stop):
            self._handle_with_retry(records, self.tracker.epochs_of(records), stop)

    def _finish(self, staged: Staged, stop: Event) -> bool:
        """Wait for a staged batch's delivery, then commit its offsets (or retry it one batch at a time).
        False: it was given up uncommitted at a stop."""
        try:
            staged.delivery.result()
            self.checkpoint.complete(staged)
        except RetryableError as error:
            # the same outcomes delivered again (or only committed again): nothing is decided twice
            return self._handle_with_retry(staged.records, staged.epochs, stop, failed=error, staged=staged)
        self._settled(staged.records)
        self._done(staged.records)
        return True

    def handle_batch(self, records: list, epochs: dict | None = None) -> None:
        """One batch, start to commit, synchronously, no retry (tools and tests)."""
        staged = self._prepare(records)
        staged.epochs = epochs if epochs is not None else self.tracker.epochs_of(records)
        self.checkpoint.complete(staged)
        self._settled(records)
        self._done(records)

    def _prepare(self, records: list, after=None) -> Staged:
        return self.moderator.prepare(records, after)

    def _done(self, records: list) -> None:
        self.metrics.healthy = True
        self.stats.batches += 1
        self.stats.consumed += len(records)
        self.metrics.consumed.inc(len(records))
        self.metrics.batch_size.observe(len(records))

    def close(self) -> None:
        self._decide_pool.shutdown(wait=True)
        self._deliver_pool.shutdown(wait=True)
        self.moderator.close()
        self._io_pool.shutdown(wait=True)
        try:
            self.producer.flush(timeout=10)
            self.producer.close(timeout=10)
        finally:
            close_member(self.consumer)
