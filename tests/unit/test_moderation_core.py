"""The moderation core without Kafka or S3: posts and an image source in, outcomes out.

The model is the real colour ONNX model of the stream tests (in-process); the images come from an in-memory
source, which is all ``moderate_batch`` asks of a transport.
"""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
from PIL import Image

from tagwatch.errors import ConfigError, PoisonInputError, RetryableError
from tagwatch.moderation.bank import (MIN_QUALITY, BankEntry, BankMatcher, HashBank, entry_from_image,
                                      pdq_hex)
from tagwatch.moderation.core import LoadedImage, Reposts, decision_id, moderate_batch
from tagwatch.moderation.publish import new_post
from tagwatch.moderation.scoring import OnnxScorer
from tagwatch.preprocess import DEFAULT_PRESET
from tests.support import colour_model as cm


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    path = tmp_path_factory.mktemp("colour") / "model.onnx"
    return OnnxScorer(path, cm.CATEGORIES, cm.build(path))


class MemoryImages:
    """post image_uri -> bytes; ``errors`` maps a uri to what fetching it raises."""

    def __init__(self, blobs: dict[str, bytes], errors: dict[str, Exception] | None = None) -> None:
        self.blobs, self.errors, self.calls = blobs, errors or {}, 0

    def __call__(self, post) -> LoadedImage:
        self.calls += 1
        if post.image_uri in self.errors:
            raise self.errors[post.image_uri]
        image = Image.open(io.BytesIO(self.blobs[post.image_uri]))
        image.load()
        pdq, quality = pdq_hex(image)
        return LoadedImage(image=image, sha256=post.sha256, pdq=pdq, pdq_quality=quality)


def _posts(colours):
    blobs, posts = {}, []
    for n, colour in enumerate(colours):
        data = cm.jpeg(colour, seed=n)
        uri = f"s3://posts/{n}.jpg"
        blobs[uri] = data
        posts.append(new_post(f"p{n}", uri, hashlib.sha256(data).hexdigest()))
    return posts, blobs


@pytest.mark.parametrize("pooled", [False, True])
def test_decisions_follow_the_model_and_policy_in_order_with_deterministic_ids(scorer, pooled):
    colours = [cm.RED, cm.GREY, cm.BLUE, cm.GREY, cm.RED]
    posts, blobs = _posts(colours)
    pools = (ThreadPoolExecutor(4), ThreadPoolExecutor(2)) if pooled else None
    try:
        outcomes = moderate_batch(posts, images=MemoryImages(blobs), scorer=scorer, banks=None, policy=cm.POLICY,
                                  preset=DEFAULT_PRESET, infer_batch=2, pools=pools)
    finally:
        for pool in pools or ():
            pool.shutdown()
    assert [o.decision.action for o in outcomes] == [cm.EXPECTED[c] for c in colours]
    assert [o.post.post_id for o in outcomes] == [p.post_id for p in posts]
    assert all(o.decision.decision_id == decision_id(o.post.post_id, scorer.model, cm.POLICY.version) for o in outcomes)
    assert all(o.review is None for o in outcomes)  # nothing between the review and the remove thresholds


def test_one_posts_trouble_stays_on_its_outcome(scorer):
    posts, blobs = _posts([cm.RED, cm.GREY, cm.BLUE])
    images = MemoryImages(blobs, errors={posts[0].image_uri: PoisonInputError("sha256_mismatch", "x"),
                                         posts[2].image_uri: RetryableError("S3 GET timed out")})
    outcomes = moderate_batch(posts, images=images, scorer=scorer, banks=None, policy=cm.POLICY,
                              preset=DEFAULT_PRESET)
    assert outcomes[0].poison.reason == "sha256_mismatch" and outcomes[0].decision is None
    assert outcomes[1].decision.action == "allow"
    assert outcomes[2].failed is not None and outcomes[2].decision is None


def test_a_bank_hit_removes_without_the_model_and_a_repost_reuses_the_first_scores(scorer):
    posts, blobs = _posts([cm.GREY, cm.GREY])
    image = Image.open(io.BytesIO(blobs[posts[0].image_uri]))
    bank = HashBank(name="known-bad", entries=[BankEntry(entry_id="e1", pdq=pdq_hex(image)[0], reason="test",
                                                         added_at=datetime.now(timezone.utc))])
    (hit,) = moderate_batch(posts[:1], images=MemoryImages(blobs), scorer=scorer, banks=BankMatcher([bank]),
                            policy=cm.POLICY, preset=DEFAULT_PRESET)
    assert hit.decision.action == "remove" and hit.decision.reasons[0].startswith("bank:known-bad:e1")

    assert [s.detail for s in hit.decision.signals if s.name == "bank"] == ["known-bad:e1 action=remove distance=0"]

    reposts = Reposts()
    first, = moderate_batch(posts[:1], images=MemoryImages(blobs), scorer=scorer, banks=None, policy=cm.POLICY,
                            preset=DEFAULT_PRESET, reposts=reposts)
    again = new_post("p-again", posts[0].image_uri, posts[0].sha256)
    same, repost = moderate_batch([posts[0], again], images=MemoryImages(blobs), scorer=scorer, banks=None,
                                  policy=cm.POLICY, preset=DEFAULT_PRESET, reposts=reposts)
    assert repost.decision.reasons == ["repost:p0"] and repost.scores == first.scores
    assert same.decision == first.decision.model_copy(update={"decided_at": same.decision.decided_at,
                                                               "latency_ms": same.decision.latency_ms})


class _SlowScorer:
    """The colour model, with each call held until ``release`` is set (a batch still being scored)."""

    def __init__(self, scorer, release) -> None:
        self.scorer, self.release = scorer, release
        self.categories, self.model = scorer.categories, scorer.model

    def score(self, images):
        assert self.release.wait(10)
        return self.scorer.score(images)


@pytest.mark.parametrize("ordered", [True, False])
def test_overlapping_batches_see_a_repost_only_when_the_later_one_waits_for_the_earlier(scorer, ordered):
    """The consumer decides batch N+1 while batch N is still being scored. With ``after`` (what the consumer
    passes), N+1's repost lookups wait for N, so a repost across the two batches is found; without it, the
    lookup runs before N has remembered its image (the race a stranger's run once hit)."""
    import threading
    from concurrent.futures import wait

    posts, blobs = _posts([cm.BLUE])
    again = new_post("p-again", posts[0].image_uri, posts[0].sha256)
    reposts, release = Reposts(), threading.Event()
    common = dict(images=MemoryImages(blobs), banks=None, policy=cm.POLICY, preset=DEFAULT_PRESET, reposts=reposts)
    with ThreadPoolExecutor(2) as pool:
        earlier = pool.submit(moderate_batch, posts, scorer=_SlowScorer(scorer, release), **common)
        later = pool.submit(moderate_batch, [again], scorer=scorer, **common,
                            after=(lambda outcomes: wait([earlier])) if ordered else None)
        if not ordered:
            later.result(timeout=10)  # decided while the earlier batch is still held at its model call
        release.set()
        (first,), (second,) = earlier.result(timeout=10), later.result(timeout=10)
    assert first.decision.reasons and not first.decision.reasons[0].startswith("repost:")
    if ordered:
        assert "repost:p0" in second.decision.reasons and second.scores == first.scores
    else:
        assert not any(r.startswith("repost:") for r in second.decision.reasons)


def test_a_review_request_carries_the_images_pdq_hash(scorer):
    """The review app links near-duplicates by the PDQ hash the stream computed (review/earlier.py)."""
    from tagwatch.moderation.policy import Policy

    posts, blobs = _posts([cm.RED])
    to_review = Policy.model_validate({"version": "all-review", "categories": {
        c: {"remove_threshold": 1.0, "review_threshold": 0.0} for c in cm.CATEGORIES}})
    (outcome,) = moderate_batch(posts, images=MemoryImages(blobs), scorer=scorer, banks=None, policy=to_review,
                                preset=DEFAULT_PRESET)
    image = Image.open(io.BytesIO(blobs[posts[0].image_uri]))
    assert outcome.review is not None and outcome.review.pdq == pdq_hex(image)[0] == outcome.pdq


def test_a_flat_post_image_is_not_matched_against_banks_and_the_decision_says_why(scorer):
    """PDQ quality on the post side: a flat image's hash lies near every other flat image's, so a post under
    MIN_QUALITY is not matched, even against an entry with its very hash (entries that flat are refused on add)."""
    out = io.BytesIO()
    Image.new("RGB", (64, 64), cm.GREY).save(out, format="JPEG", quality=90)
    data = out.getvalue()
    post = new_post("flat", "s3://posts/flat.jpg", hashlib.sha256(data).hexdigest())
    image = Image.open(io.BytesIO(data))
    pdq, quality = pdq_hex(image)
    assert quality < MIN_QUALITY
    bank = HashBank(name="known-bad", entries=[BankEntry(entry_id="e1", pdq=pdq, reason="test",
                                                         added_at=datetime.now(timezone.utc))])
    (outcome,) = moderate_batch([post], images=MemoryImages({post.image_uri: data}), scorer=scorer,
                                banks=BankMatcher([bank]), policy=cm.POLICY, preset=DEFAULT_PRESET)
    assert outcome.bank_hit is None and outcome.decision.action == cm.EXPECTED[cm.GREY]
    (signal,) = [s for s in outcome.decision.signals if s.name == "bank"]
    assert signal.detail == f"not matched: PDQ quality {quality} < {MIN_QUALITY}" and signal.version == "pdq<=31"
    with pytest.raises(ConfigError, match="too flat"):
        entry_from_image(image, "test")



def test_a_small_batch_is_cut_into_smaller_model_requests_and_a_full_one_is_not(scorer) -> None:
    from tagwatch.moderation.core import micro_batch

    assert micro_batch(128, 16) == 16 and micro_batch(64, 16) == 16  # a backlog: the configured size
    assert micro_batch(27, 16) == 7 and micro_batch(5, 16) == 4 and micro_batch(100, 2) == 2

    class Counting:  # the real model, every request's size noted
        categories, model = scorer.categories, scorer.model

        def __init__(self) -> None:
            self.sizes: list[int] = []

        def score(self, images):
            self.sizes.append(len(images))
            return scorer.score(images)

    counting = Counting()
    posts, blobs = _posts([cm.RED, cm.GREY, cm.BLUE] * 3 + [cm.GREY])
    outcomes = moderate_batch(posts, images=MemoryImages(blobs), scorer=counting, banks=None, policy=cm.POLICY,
                              preset=DEFAULT_PRESET, infer_batch=16)
    assert counting.sizes == [4, 4, 2] and all(o.decision is not None for o in outcomes)
