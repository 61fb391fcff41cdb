"""Steps 1-5 of the stream for one poll batch: records -> posts -> the moderation core -> a staged batch.

  1. intake   each record -> PostCreated, or a dead letter with a typed reason (poison)
  2-5         images, banks, model, policy: ``moderation/core.py: moderate_batch`` (no Kafka there)

Records only need ``topic partition offset key value headers``; Kafka itself is the caller's business.
This adapter owns what lives longer than one batch: the thread pools, the hash banks (bank_source.py: reloaded
when a bank's alias moved, checked every ``bank_refresh_s``), the repost cache, and the records whose attempts
ran out.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from dataclasses import dataclass, field

from tagwatch.errors import PoisonInputError, RetryableError
from tagwatch.moderation.bank_source import BankSource
from tagwatch.moderation.bank_store import BankStore
from tagwatch.moderation.core import ImageSource, Outcome, Reposts, decision_id, moderate_batch
from tagwatch.moderation.deadletter import DeadLetterReason as R
from tagwatch.moderation.events import Decision, ReviewRequest
from tagwatch.moderation.intake import parse_post
from tagwatch.moderation.policy import Policy
from tagwatch.moderation.signals import ImageSignal, TextSignal

__all__ = ["BatchModerator", "RecordsFailed", "Staged", "decision_id", "resolve_preset"]

log = logging.getLogger(__name__)


def resolve_preset(options, scorer):
    """The preprocessing the served model was trained with: options > scorer (registry) > the default."""
    from tagwatch.preprocess import DEFAULT_PRESET

    return options.preset or getattr(scorer, "preset", None) or DEFAULT_PRESET


@dataclass
class Staged:
    """A decided batch waiting for delivery (produce + ledger) and its commit."""

    records: list
    items: list[Outcome]
    epochs: dict = field(default_factory=dict)  # partition -> assignment epoch its records were fetched in
    delivery: object = None  # a Future while delivering in the background
    delivered: bool = False  # its events are acknowledged and its ledger records written: a retry only commits

    @property
    def decisions(self) -> list[Decision]:
        return [i.decision for i in self.items if i.decision is not None]

    @property
    def reviews(self) -> list[ReviewRequest]:
        return [i.review for i in self.items if i.review is not None]

    def only(self, records: list) -> Staged:
        """The same decided batch restricted to ``records`` (those still ours after a rebalance)."""
        keep = {id(r) for r in records}
        return Staged(records=records, items=[i for i in self.items if id(i.record) in keep], epochs=self.epochs,
                      delivered=self.delivered)


class RecordsFailed(RetryableError):
    """Some records' own steps failed transiently (the rest of the batch was fine): ``items`` says which."""

    def __init__(self, items: list[Outcome]) -> None:
        first = items[0].failed
        super().__init__(f"{len(items)} record(s) not loaded; first: {first.message}")
        self.items = items


class BatchModerator:
    """Records in, a staged batch out; the core does the deciding. Thread pools fetch/decode and score concurrently."""

    def __init__(self, s3, scorer, *, posts_bucket: str, models_bucket: str, options, metrics,
                 policy: Policy | None = None, policy_source=None, signals: Sequence[TextSignal] = (),
                 image_signals: Sequence[ImageSignal] = ()) -> None:
        self.scorer, self.options, self.metrics = scorer, options, metrics
        self.signals = list(signals)  # caption signals, each loaded once for the consumer's life
        self.image_signals = list(image_signals)  # second models (image.nudity); closed with the moderator
        self.images = ImageSource(s3, posts_bucket, options.limits)
        self._policy = policy  # an explicit override (--policy FILE); else:
        self.policy_source = policy_source  # the promoted policy version (moderation/policy_source.py), else:
        # the scorer's (a registry version carries the policy calibrated for it)
        self._pools = (ThreadPoolExecutor(options.fetch_workers, thread_name_prefix="fetch"),
                       ThreadPoolExecutor(options.infer_workers, thread_name_prefix="infer"))
        self.reposts = Reposts(options.repost_cache_size)
        self.banks = BankSource(BankStore(s3, models_bucket), refresh_s=options.bank_refresh_s,
                                threshold=options.bank_threshold)
        self.poisoned: dict[tuple[str, int, int], PoisonInputError] = {}  # records whose attempts ran out

    @property
    def s3(self):
        return self.images.s3

    @s3.setter
    def s3(self, client) -> None:  # tests put a fault-injecting client in front of the posts bucket
        self.images.s3 = client

    @property
    def policy(self) -> Policy:
        """What decides the next batch (read once per batch: a promoted policy applies from the next one)."""
        if self._policy is not None:
            return self._policy
        if self.policy_source is not None:
            return self.policy_source.current(self.scorer.model, self.scorer.policy)
        return self.scorer.policy

    @property
    def preset(self):
        return resolve_preset(self.options, self.scorer)

    def prepare(self, records: list, after=None) -> Staged:
        """Parse, load, score and decide; RetryableError (RecordsFailed when it is particular records').
        ``after``: see ``moderate_batch`` (waits for the batch before this one)."""
        items = [self._intake(r) for r in records]
        banks = self.banks.matcher()
        observe = self.metrics.model_latency.observe if self.metrics is not None else None
        moderate_batch(items, images=self.images, scorer=self.scorer, banks=banks, policy=self.policy,
                       preset=self.preset, infer_batch=self.options.infer_batch, reposts=self.reposts,
                       pools=self._pools, on_model_seconds=observe, after=after, signals=self.signals,
                       image_signals=self.image_signals)
        failed = [i for i in items if i.failed is not None]
        if failed:
            raise RecordsFailed(failed)
        return Staged(records=records, items=items)

    def _intake(self, record) -> Outcome:
        item = Outcome(record=record, poison=self.poisoned.get((record.topic, record.partition, record.offset)))
        if item.poison is None:
            try:
                item.post = parse_post(record)
            except PoisonInputError as error:
                item.poison = error
            except Exception as error:  # noqa: BLE001 - no single record may stop the consumer
                log.exception("%s[%d]@%d: unexpected error reading the event", record.topic, record.partition,
                              record.offset)
                item.poison = PoisonInputError(R.UNPROCESSABLE_RECORD, f"{type(error).__name__}: {str(error)[:300]}")
        return item

    def store_reachable(self) -> bool:
        return self.images.reachable()

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True)
        for signal in self.image_signals:
            close = getattr(signal, "close", None)
            if close is not None:
                close()
