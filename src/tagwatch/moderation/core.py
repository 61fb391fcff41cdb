"""The moderation core: posts in, outcomes out. No Kafka, no offsets, no delivery.

``moderate_batch(posts, images=, scorer=, banks=, policy=)`` is what the stream consumer, the stream benchmark,
the tests (and a shadow replay or a review tool) call; transports only decode what they receive, call it, and
encode what it returns (KServe's DataPlane is the model):

  images   fetch each post's image concurrently (``ImageSource``: S3 GET, size/sha256/format/pixel checks, decode,
           PDQ), then the model's preprocessing preset
  captions the text signals (moderation/signals/: caption.offensive, caption.spam) score the batch's captions
           in the calling thread while its images are being fetched
  banks    a PDQ bank hit takes its entry's action; a remove skips the model (the reason names bank, entry and
           category); a post image under PDQ quality 50 is not matched (the bank signal says so); a repost of an image decided before reuses that decision's scores (sha256)
  model    micro-batches of ``infer_batch`` (fewer for a small batch: ``micro_batch``) to the scorer, each sent as
           soon as its images are ready, concurrently:
           inference overlaps the fetching and decoding of the rest of the batch; each image signal (a second
           model: image.nudity) gets the same micro-batch as a second request in flight beside the model's
  policy   per-category rules over every signal -> allow / review / remove, with a deterministic decision id;
           the decision lists each signal (name, version, scores)

One post's trouble stays on its outcome: ``poison`` (it can never succeed: dead-letter it) or ``failed`` (its
own step failed transiently: try it again). Only trouble that is every post's (the model server) raises.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from tagwatch.errors import PoisonInputError, RetryableError
from tagwatch.moderation.bank import MIN_QUALITY, BankMatcher, pdq_hex, post_quality_ok
from tagwatch.moderation.deadletter import DeadLetterReason as R
from tagwatch.moderation.events import Decision, ModelRef, PostCreated, ReviewRequest, SignalScore
from tagwatch.moderation.images import ImageLimits, check_sha256, decode_image, fetch_image_bytes
from tagwatch.moderation.policy import IMAGE_SIGNAL, Policy, bank_action, decide
from tagwatch.moderation.signals import ImageSignal, TextSignal, default_rules

log = logging.getLogger(__name__)


def decision_id(post_id: str, model: ModelRef, policy_version: str) -> str:
    """Same post, same model bytes, same policy -> same id, however often the post is re-processed."""
    return hashlib.sha256(f"{post_id}|{model.sha256}|{policy_version}".encode()).hexdigest()[:32]


@dataclass
class Outcome:
    """What became of one post (or of one record that never became a post: ``post`` None, ``poison`` set)."""

    post: PostCreated | None = None
    record: object = None  # where it came from (a Kafka record for the stream); the core never looks at it
    image: np.ndarray | None = None
    sha256: str | None = None
    pdq: str | None = None
    pdq_quality: int | None = None  # under MIN_QUALITY: too flat to be matched against banks
    scores: dict[str, float] | None = None
    banned: bool = False  # a bank match whose action is remove: the model is skipped
    bank_hit: tuple | None = None  # (bank name, BankEntry, distance)
    signals: list[SignalScore] = field(default_factory=list)  # the caption and image signals' (not the model's)
    signal_inputs: dict[str, np.ndarray] = field(default_factory=dict)  # image signal name -> its preprocessed input
    reasons: list[str] = field(default_factory=list)
    poison: PoisonInputError | None = None
    failed: RetryableError | None = None  # this post's own step failed transiently (S3 trouble on its image)
    decision: Decision | None = None
    review: ReviewRequest | None = None

    @property
    def decidable(self) -> bool:
        return self.poison is None and self.failed is None


@dataclass
class LoadedImage:
    image: object  # a decoded PIL image
    sha256: str
    pdq: str | None
    pdq_quality: int | None = None


class ImageSource:
    """A post's image from the posts bucket, checked before anything decodes it (moderation/images.py)."""

    def __init__(self, s3, bucket: str, limits: ImageLimits | None = None) -> None:
        self.s3, self.bucket, self.limits = s3, bucket, limits or ImageLimits()

    def __call__(self, post: PostCreated) -> LoadedImage:
        data = fetch_image_bytes(self.s3, post.image_uri, allowed_bucket=self.bucket, limits=self.limits)
        check_sha256(data, post.sha256)
        image = decode_image(data, self.limits)
        pdq, quality = pdq_hex(image)
        return LoadedImage(image=image, sha256=post.sha256, pdq=pdq, pdq_quality=quality)

    def reachable(self) -> bool:
        """Is the posts bucket readable at all? (Tells one post's trouble from an S3 outage.)"""
        from tagwatch.moderation.images import _bucket_readable

        return _bucket_readable(self.s3, self.bucket)


class Reposts:
    """sha256 -> (first post id, its scores) for the last ``size`` distinct images decided by the model."""

    def __init__(self, size: int = 10_000) -> None:
        self.size, self._seen = size, OrderedDict()
        self._lock = threading.Lock()  # batches may be decided concurrently

    def reuse(self, outcome: Outcome) -> None:
        with self._lock:
            original, scores = self._seen.get(outcome.sha256, (None, None))
        if original is not None and original != outcome.post.post_id:  # the same post again is no repost
            outcome.scores = scores
            outcome.reasons.append(f"repost:{original}")

    def remember(self, outcomes: Sequence[Outcome]) -> None:
        with self._lock:
            for o in outcomes:
                if o.decision is not None and o.sha256 and not o.banned and not any(r.startswith("repost:") for r in o.reasons):
                    self._seen[o.sha256] = (o.post.post_id, o.scores)
                    self._seen.move_to_end(o.sha256)
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)


def moderate_batch(posts: Sequence[PostCreated | Outcome], *, images: Callable[[PostCreated], LoadedImage], scorer,
                   banks: BankMatcher | None, policy: Policy, preset: Callable, infer_batch: int = 16,
                   reposts: Reposts | None = None, pools: tuple[Executor, Executor] | None = None,
                   on_model_seconds: Callable[[float], None] | None = None,
                   after: Callable[[list[Outcome]], None] | None = None, signals: Sequence[TextSignal] = (),
                   image_signals: Sequence[ImageSignal] = ()) -> list[Outcome]:
    """Decide a batch of posts; one outcome per post, in order.

    ``posts``: PostCreated, or Outcomes whose ``post`` is set (a caller that carries its own source records).
    ``pools``: (fetch, infer) executors; None runs everything in this thread (tests, small tools).
    ``after``: called with this batch's outcomes once its images are being fetched, before its first repost
    lookup: the caller waits there for an earlier batch still being decided that holds one of the same images
    (batches overlap), so a repost of an image in that batch is seen as one.
    ``signals``: text signals scored on the captions; ``image_signals``: each prepares its input from the decoded
    image in the fetch workers and scores every micro-batch (reposts included) beside the model (moderation/signals/).
    Raises RetryableError only for trouble that is every post's (the scorer unavailable or relabelled).
    """
    outcomes = [p if isinstance(p, Outcome) else Outcome(post=p) for p in posts]
    fetch_pool, infer_pool = pools or (None, None)

    def load(outcome: Outcome) -> None:
        _load(outcome, images, preset, image_signals)

    def run_model(chunk: list[Outcome]):
        started = [(s.name, s.submit_batch(np.stack([o.signal_inputs[s.name] for o in chunk])))
                   for s in image_signals]  # in flight while the model scores
        need = [o for o in chunk if o.scores is None]  # not reposts
        scores = None
        if need:
            t0 = time.monotonic()
            scores = scorer.score(np.stack([o.image for o in need]))
            if on_model_seconds is not None:
                on_model_seconds(time.monotonic() - t0)
        return need, scores, [(name, future.result()) for name, future in started]

    def submit(pool, fn, arg):
        if pool is None:
            return _Done(fn(arg))
        return pool.submit(fn, arg)

    todo = [o for o in outcomes if o.poison is None]
    infer_batch = micro_batch(len(todo), infer_batch)
    loads = [submit(fetch_pool, load, o) for o in todo]
    score_captions(todo, signals)  # CPU in this thread while the fetch workers wait on S3
    if after is not None:
        after(outcomes)
    scoring: list[tuple[list[Outcome], object]] = []
    ready: list[Outcome] = []
    for outcome, loading in zip(todo, loads, strict=True):
        loading.result()
        if not outcome.decidable:
            continue
        _check_bank(outcome, banks, scorer.categories, policy)
        if outcome.banned:
            outcome.signals.extend(SignalScore(name=s.name, version=s.version, detail="not run: bank match")
                                   for s in image_signals)
            outcome.signal_inputs = {}
        elif reposts is not None:
            reposts.reuse(outcome)
        if outcome.scores is None or (image_signals and not outcome.banned):
            ready.append(outcome)
        if len(ready) == infer_batch:
            scoring.append((ready, submit(infer_pool, run_model, ready)))
            ready = []
    if ready:
        scoring.append((ready, submit(infer_pool, run_model, ready)))
    categories = scorer.categories
    for chunk, future in scoring:
        need, rows, by_signal = future.result()
        for outcome, row in zip(need, rows if rows is not None else [], strict=True):
            outcome.scores = {c: float(s) for c, s in zip(categories, row, strict=True)}
        for _name, scored in by_signal:
            for outcome, score in zip(chunk, scored, strict=True):
                outcome.signals.append(score)
        for outcome in chunk:
            outcome.image, outcome.signal_inputs = None, {}  # scored: the batch waits for delivery without pixels
    decide_all([o for o in todo if o.decidable], scorer.model, policy,
               bank_version=banks.version if banks is not None else None,
               defaults=default_rules([*signals, *image_signals]))
    if reposts is not None:
        reposts.remember(outcomes)
    return outcomes


def micro_batch(posts: int, largest: int) -> int:
    """Images per model request for a batch of ``posts``: ``largest`` for a full batch (a backlog), smaller for a
    small one, so that a batch is cut into at least ``MIN_REQUESTS`` requests and its first images reach the model
    while the rest are still being fetched (latency when the stream keeps up with its input); never below 4."""
    return max(1, min(largest, max(4, -(-posts // MIN_REQUESTS))))


MIN_REQUESTS = 4


class _Done:
    def __init__(self, value) -> None:
        self.value = value

    def result(self):
        return self.value


def score_captions(outcomes: Sequence[Outcome], signals: Sequence[TextSignal]) -> None:
    """Each text signal's score of each post's caption, appended to the outcome's signals (one call per signal)."""
    if not signals or not outcomes:
        return
    captions = [o.post.caption for o in outcomes]
    for signal in signals:
        for outcome, scored in zip(outcomes, signal.score(captions), strict=True):
            outcome.signals.append(scored)


def _load(outcome: Outcome, images: Callable[[PostCreated], LoadedImage], preset: Callable,
          image_signals: Sequence[ImageSignal] = ()) -> None:
    """Fetch, check, decode, hash and preprocess one post's image; trouble is recorded on the outcome."""
    post = outcome.post
    try:
        loaded = images(post)
        outcome.sha256, outcome.pdq, outcome.pdq_quality = loaded.sha256, loaded.pdq, loaded.pdq_quality
        outcome.signal_inputs = {signal.name: signal.prepare(loaded.image) for signal in image_signals}
        outcome.image = preset(loaded.image)
    except PoisonInputError as error:
        outcome.poison = error
    except RetryableError as error:
        outcome.failed = error
    except Exception as error:  # noqa: BLE001 - a decoder/preprocessing crash on one image is that post's alone
        log.exception("post %s: unexpected error processing its image", post.post_id)
        outcome.poison = PoisonInputError(R.UNPROCESSABLE_IMAGE, f"{type(error).__name__}: {str(error)[:300]}")


def _check_bank(outcome: Outcome, banks: BankMatcher | None, categories: list[str], policy: Policy) -> None:
    if banks is None or not outcome.pdq or not post_quality_ok(outcome.pdq_quality):
        return
    hit = banks.match(outcome.pdq)
    if hit:
        outcome.bank_hit = hit
        if bank_action(hit[1], policy) == "remove":  # nothing the model says can change it: skip the model
            outcome.banned = True
            outcome.scores = {c: 0.0 for c in categories}


def decision_signals(outcome: Outcome, model: ModelRef, bank_version: str | None) -> list[SignalScore]:
    """Every signal the policy saw for this post, the image model first."""
    detail = ("not run: bank match" if outcome.banned else
              next((r for r in outcome.reasons if r.startswith("repost:")), ""))
    image = SignalScore(name=IMAGE_SIGNAL, version=f"{model.name}/{model.version}",
                        scores={} if outcome.banned else dict(outcome.scores or {}), detail=detail)
    out = [image, *outcome.signals]
    if bank_version is not None:
        if outcome.bank_hit is None:
            flat = outcome.pdq is not None and not post_quality_ok(outcome.pdq_quality)
            out.append(SignalScore(name="bank", version=bank_version, detail=(
                f"not matched: PDQ quality {outcome.pdq_quality} < {MIN_QUALITY}" if flat else "no match")))
        else:
            bank, entry, distance = outcome.bank_hit
            out.append(SignalScore(name="bank", version=bank_version, scores={entry.category: 1.0},
                                   detail=f"{bank}:{entry.entry_id} action={entry.action} distance={distance}"))
    return out


def decide_all(outcomes: Sequence[Outcome], model: ModelRef, policy: Policy, now: datetime | None = None, *,
               bank_version: str | None = None, defaults: dict | None = None) -> None:
    """The policy's action for each scored outcome, as a Decision (and a ReviewRequest for a review).
    ``bank_version``: how banks were matched (None: no banks consulted); ``defaults``: the signals' own rules."""
    now = now or datetime.now(timezone.utc)
    for outcome in outcomes:
        signals = decision_signals(outcome, model, bank_version)
        action, rule_reasons = decide({} if outcome.banned else outcome.scores, policy, signals=signals[1:],
                                      bank_hit=outcome.bank_hit, defaults=defaults)
        post, record = outcome.post, outcome.record
        source = ({"topic": record.topic, "partition": record.partition, "offset": record.offset}
                  if record is not None else {})
        outcome.decision = Decision(
            decision_id=decision_id(post.post_id, model, policy.version), post_id=post.post_id, action=action,
            scores=outcome.scores, reasons=rule_reasons + outcome.reasons, model=model, policy_version=policy.version,
            decided_at=now, latency_ms=max(0.0, (now - post.created_at).total_seconds() * 1000), source=source,
            signals=signals,
        )
        if action == "review":
            outcome.review = ReviewRequest(decision_id=outcome.decision.decision_id, post_id=post.post_id,
                                           image_uri=post.image_uri, scores=outcome.scores,
                                           reasons=outcome.decision.reasons, requested_at=now, signals=signals,
                                           pdq=outcome.pdq)
