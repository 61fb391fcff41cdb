"""Decide one batch of records: steps 1-5 of the stream, with nothing leaving the process.

  1. intake   each record -> PostCreated, or a dead letter with a typed reason (poison)
  2. images   fetch from S3 concurrently, check size/sha256/format/pixels, preprocess with the shared preset
  3. banks    a PDQ bank hit removes without the model (reason names the entry); a repost of an image
              decided before reuses that decision (sha256)
  4. model    micro-batches of ``infer_batch`` to the scorer (Triton), each sent as soon as its images are
              ready, concurrently: inference overlaps the fetching and decoding of the rest of the batch
  5. policy   per-category thresholds -> allow / review / remove, with a deterministic decision id

Records only need ``topic partition offset key value headers``; Kafka itself is the caller's business.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from tagwatch.errors import PoisonInputError, RetryableError
from tagwatch.moderation.bank import BankMatcher, BankStore, pdq_hex
from tagwatch.moderation.deadletter import DeadLetterReason as R
from tagwatch.moderation.events import Decision, ModelRef, PostCreated, ReviewRequest
from tagwatch.moderation.images import ImageLimits, check_sha256, decode_image, fetch_image_bytes
from tagwatch.moderation.intake import parse_post
from tagwatch.moderation.policy import Policy, decide


def decision_id(post_id: str, model: ModelRef, policy_version: str) -> str:
    """Same post, same model bytes, same policy -> same id, however often the post is re-processed."""
    return hashlib.sha256(f"{post_id}|{model.sha256}|{policy_version}".encode()).hexdigest()[:32]

log = logging.getLogger(__name__)


def resolve_preset(options, scorer):
    """The preprocessing the served model was trained with: options > scorer (registry) > the default."""
    from tagwatch.preprocess import DEFAULT_PRESET

    return options.preset or getattr(scorer, "preset", None) or DEFAULT_PRESET


@dataclass
class Item:
    record: object
    post: PostCreated | None = None
    image: np.ndarray | None = None
    sha256: str | None = None
    pdq: str | None = None
    scores: dict[str, float] | None = None
    banned: bool = False
    reasons: list[str] = field(default_factory=list)
    poison: PoisonInputError | None = None
    failed: RetryableError | None = None  # this record's own step failed transiently (S3 trouble on its image)


@dataclass
class Staged:
    """A decided batch waiting for delivery (produce + ledger) and its commit."""

    records: list
    items: list[Item]
    decisions: list[Decision]
    reviews: list[ReviewRequest]
    epochs: dict = field(default_factory=dict)  # partition -> assignment epoch its records were fetched in
    delivery: object = None  # a Future while delivering in the background


class RecordsFailed(RetryableError):
    """Some records' own steps failed transiently (the rest of the batch was fine): ``items`` says which."""

    def __init__(self, items: list[Item]) -> None:
        first = items[0].failed
        super().__init__(f"{len(items)} record(s) not loaded; first: {first.message}")
        self.items = items


class BatchModerator:
    """Steps 1-5 for a list of records. Thread pools fetch/decode and score concurrently."""

    def __init__(self, s3, scorer, *, posts_bucket: str, models_bucket: str, options, metrics,
                 policy: Policy | None = None) -> None:
        self.s3, self.scorer, self.posts_bucket = s3, scorer, posts_bucket
        self.options, self.metrics = options, metrics
        self._policy = policy  # None: the scorer's (a registry version carries the policy calibrated for it)
        self._fetch_pool = ThreadPoolExecutor(options.fetch_workers, thread_name_prefix="fetch")
        self._infer_pool = ThreadPoolExecutor(options.infer_workers, thread_name_prefix="infer")
        self._reposts: OrderedDict[str, tuple[str, dict[str, float]]] = OrderedDict()
        self._banks = BankStore(s3, models_bucket)
        self._matcher = BankMatcher([], options.bank_threshold)
        self._banks_loaded_at = float("-inf")
        self.poisoned: dict[tuple[str, int, int], PoisonInputError] = {}  # records whose attempts ran out

    @property
    def policy(self) -> Policy:
        return self._policy or self.scorer.policy

    @property
    def preset(self):
        return resolve_preset(self.options, self.scorer)

    def prepare(self, records: list) -> Staged:
        """Parse, load, score and decide; RetryableError (RecordsFailed when it is particular records')."""
        items = [Item(record=r) for r in records]
        for item in items:
            item.poison = self.poisoned.get((item.record.topic, item.record.partition, item.record.offset))
            if item.poison is None:
                try:
                    item.post = parse_post(item.record)
                except PoisonInputError as error:
                    item.poison = error
                except Exception as error:  # noqa: BLE001 - no single record may stop the consumer
                    log.exception("%s[%d]@%d: unexpected error reading the event", item.record.topic,
                                  item.record.partition, item.record.offset)
                    item.poison = PoisonInputError(R.UNPROCESSABLE_RECORD, f"{type(error).__name__}: {str(error)[:300]}")
        self._load_and_score([i for i in items if i.poison is None])
        decisions, reviews = self._decide([i for i in items if i.poison is None])
        self._remember(items, decisions)
        return Staged(records=records, items=items, decisions=decisions, reviews=reviews)

    def _load_and_score(self, items: list[Item]) -> None:
        """Fetch, check and decode every image concurrently, and send each micro-batch to the model as soon as
        its images are ready (the model works on the first images while the rest are still being fetched).
        A bank hit or a repost skips the model."""
        self._refresh_banks()
        loads = [self._fetch_pool.submit(self._load, item) for item in items]
        size = self.options.infer_batch
        scoring: list[tuple[list[Item], object]] = []
        ready: list[Item] = []
        for item, load in zip(items, loads, strict=True):
            load.result()
            if item.poison is not None or item.failed is not None:
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
        failed = [i for i in items if i.failed is not None]
        categories = self.scorer.categories
        for chunk, future in scoring:
            for item, row in zip(chunk, future.result(), strict=True):
                item.scores = {c: float(s) for c, s in zip(categories, row, strict=True)}
        if failed:
            raise RecordsFailed(failed)

    def _load(self, item: Item) -> None:
        """S3 GET, size/sha256/format/pixel checks, PDQ, the shared preset; poison and transient trouble are
        recorded on the item (so the batch knows which record failed)."""
        limits = self.options.limits
        try:
            data = fetch_image_bytes(self.s3, item.post.image_uri, allowed_bucket=self.posts_bucket, limits=limits)
            check_sha256(data, item.post.sha256)
            item.sha256 = item.post.sha256
            image = decode_image(data, limits)
            item.pdq, _quality = pdq_hex(image)
            item.image = self.preset(image)
        except PoisonInputError as error:
            item.poison = error
        except RetryableError as error:
            item.failed = error
        except Exception as error:  # noqa: BLE001 - a decoder/preprocessing crash on one image is that record's
            log.exception("%s[%d]@%d: unexpected error processing its image", item.record.topic,
                          item.record.partition, item.record.offset)
            item.poison = PoisonInputError(R.UNPROCESSABLE_IMAGE, f"{type(error).__name__}: {str(error)[:300]}")

    def store_reachable(self) -> bool:
        """Is the posts bucket readable at all? (Tells one record's trouble from an S3 outage.)"""
        from tagwatch.moderation.images import _bucket_readable

        return _bucket_readable(self.s3, self.posts_bucket)

    def _run_model(self, chunk: list[Item]) -> np.ndarray:
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

    def _check_bank(self, item: Item) -> None:
        hit = self._matcher.match(item.pdq) if item.pdq else None
        if hit:
            bank, entry, distance = hit
            item.banned = True
            item.scores = {c: 0.0 for c in self.scorer.categories}
            item.reasons.append(f"bank:{bank}:{entry.entry_id} ({entry.reason}; distance {distance})")

    def _reuse_repost(self, item: Item) -> None:
        if item.sha256 in self._reposts:
            original, scores = self._reposts[item.sha256]
            item.scores = scores
            item.reasons.append(f"repost:{original}")

    def _decide(self, items: list[Item]) -> tuple[list[Decision], list[ReviewRequest]]:
        decisions, reviews = [], []
        now = datetime.now(timezone.utc)
        model, policy = self.scorer.model, self.policy
        for item in items:
            action, rule_reasons = ("remove", []) if item.banned else decide(item.scores, policy)
            post = item.post
            decision = Decision(
                decision_id=decision_id(post.post_id, model, policy.version),
                post_id=post.post_id,
                action=action,
                scores=item.scores,
                reasons=rule_reasons + item.reasons,
                model=model,
                policy_version=policy.version,
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

    def _remember(self, items: list[Item], decisions: list[Decision]) -> None:
        by_post = {d.post_id: d for d in decisions}
        for item in items:
            if item.poison is None and item.sha256 and not item.banned and not any(r.startswith("repost:") for r in item.reasons):
                self._reposts[item.sha256] = (item.post.post_id, by_post[item.post.post_id].scores)
                self._reposts.move_to_end(item.sha256)
        while len(self._reposts) > self.options.repost_cache_size:
            self._reposts.popitem(last=False)

    def close(self) -> None:
        self._fetch_pool.shutdown(wait=True)
        self._infer_pool.shutdown(wait=True)
