"""The moderation stream end to end on the real embedded stack (SeaweedFS + Tansu) with a real ONNX model.

The model is tests/support/colour_model.py (scores follow from colour), run in ONNX Runtime; the Triton path
is covered where the serving layer is (the scorer is the only seam between them).
"""

from __future__ import annotations

import json
import threading

import pytest

from tagwatch.clients import s3_client
from tagwatch.moderation.consumer import ConsumerOptions, ModerationConsumer, decision_id
from tagwatch.moderation.core import micro_batch
from tagwatch.moderation.events import Decision, EventType, header_map
from tagwatch.moderation.ledger import Ledger
from tagwatch.moderation.publish import new_post, publish_posts, upload_image
from tagwatch.moderation.scoring import OnnxScorer
from tests.support import colour_model as cm
from tests.support.stream import private_stream, read_topic


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "colour.onnx"
    return OnnxScorer(path, cm.CATEGORIES, cm.build(path))


def _run(settings, scorer, *, idle_exit_s=4.0, options=None):
    consumer = ModerationConsumer(settings, scorer, cm.POLICY, options=options or ConsumerOptions(max_poll_records=16))
    return consumer.run(threading.Event(), idle_exit_s=idle_exit_s)


def test_every_post_is_decided_once_in_the_ledger(stack_settings, scorer):
    settings = private_stream(stack_settings)
    s3 = s3_client(settings.s3)
    colours = [cm.RED, cm.BLUE, cm.GREY] * 10
    posts = []
    for n, colour in enumerate(colours):
        uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg(colour, seed=n))
        posts.append(new_post(f"p{n:03d}-{settings.kafka.consumer_group}", uri, digest))
    assert publish_posts(settings, posts) == 30

    stats = _run(settings, scorer)
    assert (stats.consumed, stats.decided, stats.dead_lettered) == (30, 30, 0)

    events = read_topic(settings, settings.kafka.topics.decisions, expect=30)
    decisions = {}
    for record in events:
        headers = header_map(record.headers)
        assert headers["ce_type"] == EventType.DECISION.value and headers["ce_specversion"] == "1.0"
        decision = Decision.model_validate_json(record.value)
        assert record.key == decision.post_id.encode() and headers["ce_id"] == decision.decision_id
        decisions[decision.post_id] = decision
    assert len(decisions) == 30
    ledger = Ledger(s3, settings.s3.buckets.ledger)
    for post, colour in zip(posts, colours, strict=True):
        decision = decisions[post.post_id]
        assert decision.action == cm.EXPECTED[colour], (colour, decision.scores)
        assert decision.decision_id == decision_id(post.post_id, scorer.model, cm.POLICY.version)
        assert ledger.get(post.post_id) == decision  # the audit record is the event, byte for byte
    # everything was committed: the group has nothing left to read
    again = _run(settings, scorer, idle_exit_s=3.0)
    assert again.consumed == 0


def test_reprocessing_keeps_one_ledger_record_and_the_same_decision_id(stack_settings, scorer):
    """A crash after produce but before commit means the post is decided again: same id, ledger untouched."""
    settings = private_stream(stack_settings, partitions=1)
    s3 = s3_client(settings.s3)
    uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg(cm.RED, seed=99))
    post = new_post(f"dup-{settings.kafka.consumer_group}", uri, digest)
    publish_posts(settings, [post])
    assert _run(settings, scorer).decided == 1
    first = Ledger(s3, settings.s3.buckets.ledger).get(post.post_id)

    # the same event again (what a redelivery looks like to the consumer)
    publish_posts(settings, [post])
    stats = _run(settings, scorer)
    assert stats.decided == 1 and stats.ledger_duplicates == 1
    assert Ledger(s3, settings.s3.buckets.ledger).get(post.post_id) == first
    events = read_topic(settings, settings.kafka.topics.decisions, expect=2)
    ids = {json.loads(r.value)["decision_id"] for r in events}
    assert len(events) == 2 and ids == {first.decision_id}  # a duplicate event, droppable by its id


def test_a_repost_reuses_the_earlier_decision(stack_settings, scorer):
    settings = private_stream(stack_settings, partitions=1)
    s3 = s3_client(settings.s3)
    uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg(cm.BLUE, seed=7))
    tag = settings.kafka.consumer_group
    publish_posts(settings, [new_post(f"orig-{tag}", uri, digest), new_post(f"repost-{tag}", uri, digest)])
    stats = _run(settings, scorer, options=ConsumerOptions(max_poll_records=1))  # one per batch, in order
    assert stats.decided == 2
    ledger = Ledger(s3, settings.s3.buckets.ledger)
    original, repost = ledger.get(f"orig-{tag}"), ledger.get(f"repost-{tag}")
    assert repost.action == original.action == "remove"
    assert f"repost:orig-{tag}" in repost.reasons and repost.scores == original.scores


def test_poison_goes_to_the_dlq_with_its_reason_and_the_stream_goes_on(stack_settings, scorer):
    from kafka import KafkaProducer

    from tagwatch.clients import kafka_config
    from tagwatch.moderation.events import DeadLetter
    from tagwatch.moderation.images import ImageLimits
    from tagwatch.moderation.hostile import cases

    settings = private_stream(stack_settings, partitions=1)
    s3 = s3_client(settings.s3)
    tag = settings.kafka.consumer_group
    bad = cases(s3, settings.s3.buckets.posts, tag, lambda data: upload_image(s3, settings.s3.buckets.posts, data))
    assert len(bad) >= 15
    producer = KafkaProducer(acks="all", max_request_size=2_000_000, **kafka_config(settings.kafka, client_id="test-bad"))
    for _, key, value, headers, _ in bad:
        producer.send(settings.kafka.topics.posts, key=key, value=value, headers=headers)
    producer.flush()
    producer.close()
    uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg(cm.GREY, seed=5))
    publish_posts(settings, [new_post(f"after-the-poison-{tag}", uri, digest)])

    limits = ImageLimits(max_bytes=200_000, max_pixels=1_000_000)  # small, so "too big" cases are cheap to make
    stats = _run(settings, scorer, options=ConsumerOptions(max_poll_records=8, limits=limits))
    assert (stats.dead_lettered, stats.decided) == (len(bad), 1)

    letters = read_topic(settings, settings.kafka.topics.dead_letter, expect=len(bad))
    got = {}
    for record in letters:
        letter = DeadLetter.model_validate_json(record.value)
        got[letter.offset] = letter
    assert len(got) == len(bad)
    import base64

    for offset, (name, key, value, headers, reason) in enumerate(bad):
        letter = got[offset]
        assert letter.reason == reason, f"{name}: {letter.reason} ({letter.error})"
        if letter.original_ref:  # too large to embed within the producer's limit: stored in S3, referenced
            bucket, _, object_key = letter.original_ref.removeprefix("s3://").partition("/")
            letter = DeadLetter.model_validate_json(s3.get_object(Bucket=bucket, Key=object_key)["Body"].read())
        assert letter.tombstone == (value is None), name  # a tombstone is not an empty value
        assert (letter.original_value_b64 is None) == (value is None), name
        assert base64.b64decode(letter.original_value_b64 or "") == (value or b""), name  # the original, untouched
        assert letter.error and letter.attempts == 1
    assert Ledger(s3, settings.s3.buckets.ledger).get(f"after-the-poison-{tag}").action == "allow"
    assert _run(settings, scorer, idle_exit_s=3.0).consumed == 0  # poison was committed, not retried forever


class _FlakyScorer:
    """Stands in for a Triton that is down for the first ``failures`` calls. A mock of the model server only
    (the consumer, Kafka and S3 are real): the restart-Triton chaos test covers the real outage."""

    def __init__(self, inner, failures):
        self.inner, self.failures, self.calls, self.images = inner, failures, 0, 0
        self.categories, self.model = inner.categories, inner.model

    def score(self, images):
        from tagwatch.errors import RetryableError

        self.calls += 1
        self.images += len(images)
        if self.calls <= self.failures:
            raise RetryableError("model server unavailable (simulated)")
        return self.inner.score(images)


def _six_posts(stack_settings, colour, tag: str):
    """(private stream settings, an S3 client, 6 posts of ``colour`` published on it)."""
    settings = private_stream(stack_settings, partitions=1)
    s3 = s3_client(settings.s3)
    posts = []
    for n in range(6):
        uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg(colour, seed=100 * len(tag) + n))
        posts.append(new_post(f"{tag}-{n}-{settings.kafka.consumer_group}", uri, digest))
    publish_posts(settings, posts)
    return settings, s3, posts


def _retrying_consumer(settings, scorer) -> ModerationConsumer:
    return ModerationConsumer(settings, scorer, cm.POLICY,
                              options=ConsumerOptions(max_poll_records=16, backoff_initial_s=0.2))


def test_transient_model_failure_pauses_retries_and_commits_nothing_early(stack_settings, scorer):
    from kafka import KafkaConsumer, TopicPartition

    from tagwatch.clients import kafka_config

    settings, s3, posts = _six_posts(stack_settings, cm.RED, "retry")
    # six posts go to the model as two requests (core.micro_batch: 4 + 2), both sent in every attempt: six failed
    # calls are three failed attempts
    assert micro_batch(6, 16) == 4
    flaky = _FlakyScorer(scorer, failures=6)
    consumer = _retrying_consumer(settings, flaky)
    committed_during_outage = []
    original = consumer._prepare

    def observe(records, *rest):
        if flaky.calls < flaky.failures:  # still failing: the group must not have moved
            tp = TopicPartition(settings.kafka.topics.posts, 0)
            committed_during_outage.append(consumer.consumer.committed(tp))
        return original(records, *rest)

    consumer._prepare = observe
    stats = consumer.run(threading.Event(), idle_exit_s=3.0)
    assert stats.retries == 3 and stats.decided == 6
    assert committed_during_outage and all(c in (None, 0) for c in committed_during_outage)
    ledger = Ledger(s3, settings.s3.buckets.ledger)
    assert all(ledger.get(p.post_id).action == "remove" for p in posts)
    reader = KafkaConsumer(group_id=settings.kafka.consumer_group, **kafka_config(settings.kafka, client_id="check"))
    assert reader.committed(TopicPartition(settings.kafka.topics.posts, 0)) == 6
    reader.close()


def test_a_failed_delivery_is_retried_with_the_same_outcomes_never_scored_again(stack_settings, scorer):
    """The batch's events go out, then its ledger writes fail twice: the retries deliver the same decisions again
    instead of fetching and scoring the images a second time (6 images scored for the 6 posts).

    The ledger fault is injected (the first two writes raise what an S3 outage raises): SeaweedFS creates a
    missing bucket on PUT, so the real store cannot be made to refuse only the ledger. Kafka, S3 and the
    model are real."""
    from tagwatch.errors import RetryableError

    settings, s3, posts = _six_posts(stack_settings, cm.BLUE, "redeliver")
    counting = _FlakyScorer(scorer, failures=0)
    consumer = _retrying_consumer(settings, counting)
    record_batch, failures = consumer.delivery.record, []

    def flaky_record(decisions, bodies=None):
        if len(failures) < 2:
            failures.append(len(decisions))
            raise RetryableError("ledger unavailable: EndpointConnectionError (injected)")
        return record_batch(decisions, bodies)

    consumer.delivery.record = flaky_record
    stats = consumer.run(threading.Event(), idle_exit_s=3.0)
    assert stats.retries == 2 and stats.consumed == 6, stats
    assert counting.images == 6, f"{counting.images} images were scored for 6 posts"
    ledger = Ledger(s3, settings.s3.buckets.ledger)
    assert all(ledger.get(p.post_id).action == "remove" for p in posts)
    decisions = read_topic(settings, settings.kafka.topics.decisions, expect=18)  # delivered 3 times
    by_post: dict[str, set] = {}
    for record in decisions:
        decision = Decision.model_validate_json(record.value)
        by_post.setdefault(decision.post_id, set()).add(decision.decision_id)
    assert set(by_post) == {p.post_id for p in posts}
    # the same outcomes each time: one decision id per post, the one in the ledger
    assert all(ids == {ledger.get(post_id).decision_id} for post_id, ids in by_post.items())


def test_bank_hit_removes_without_the_model_and_metrics_count_it(stack_settings, scorer, tmp_path):
    import io
    import urllib.request

    import numpy as np
    from PIL import Image

    from tagwatch.moderation.bank_store import BankStore
    from tagwatch.stack.ports import pick_free_ports

    settings = private_stream(stack_settings, partitions=1)
    s3 = s3_client(settings.s3)
    rng = np.random.default_rng(4242)
    banned = Image.fromarray(rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)).resize((128, 128))
    store = BankStore(s3, settings.s3.buckets.models)
    bank_name = f"test-{settings.kafka.consumer_group}"
    entry = store.add(bank_name, banned, "test: known bad image")
    out = io.BytesIO()
    banned.resize((120, 120)).save(out, format="JPEG", quality=70)  # a re-encoded, resized copy
    uri, digest = upload_image(s3, settings.s3.buckets.posts, out.getvalue())
    tag = settings.kafka.consumer_group
    publish_posts(settings, [new_post(f"banned-{tag}", uri, digest)])

    class CountingScorer:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0
            self.categories, self.model = inner.categories, inner.model

        def score(self, images):
            self.calls += len(images)
            return self.inner.score(images)

    counting = CountingScorer(scorer)
    consumer = ModerationConsumer(settings, counting, cm.POLICY, options=ConsumerOptions())
    (port,) = pick_free_ports("127.0.0.1", 1)
    server = consumer.metrics.serve(port)
    try:
        consumer.run(threading.Event(), idle_exit_s=3.0)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read()
    finally:
        server.shutdown()
    decision = Ledger(s3, settings.s3.buckets.ledger).get(f"banned-{tag}")
    assert decision.action == "remove" and any(f"bank:{bank_name}:{entry.entry_id}" in r for r in decision.reasons)
    assert counting.calls == 0  # the model was never asked
    assert 'tagwatch_decisions_total{action="remove"} 1.0' in metrics
    assert "tagwatch_post_to_decision_seconds_count 1.0" in metrics and health == b"ok\n"


def test_transactional_mode_decides_and_commits_through_the_transaction(stack_settings, scorer):
    """On Tansu the transaction calls succeed and the offsets commit inside them (isolation of aborted records
    is not provided by Tansu; on Apache Kafka this mode is exactly-once)."""
    from kafka import KafkaConsumer, TopicPartition

    from tagwatch.clients import kafka_config

    settings = private_stream(stack_settings, partitions=1)
    s3 = s3_client(settings.s3)
    posts = []
    for n in range(5):
        uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg(cm.GREY, seed=300 + n))
        posts.append(new_post(f"tx-{n}-{settings.kafka.consumer_group}", uri, digest))
    publish_posts(settings, posts)
    stats = _run(settings, scorer, options=ConsumerOptions(max_poll_records=2, transactional=True))
    assert stats.decided == 5
    reader = KafkaConsumer(group_id=settings.kafka.consumer_group, **kafka_config(settings.kafka, client_id="check"))
    assert reader.committed(TopicPartition(settings.kafka.topics.posts, 0)) == 5
    reader.close()
    assert len(read_topic(settings, settings.kafka.topics.decisions, expect=5)) == 5


def test_a_monitor_category_is_scored_recorded_and_counted_but_never_actioned(stack_settings, scorer):
    """Issue 13's monitor mode end to end: a red image clears red's thresholds, but red is in monitor mode, so the
    post is allowed; the decision's reasons say `monitor:red` and `tagwatch_monitor_hits_total` counts it."""
    import urllib.request

    from tagwatch.moderation.policy import Policy
    from tagwatch.stack.ports import pick_free_ports

    settings = private_stream(stack_settings, partitions=1)
    s3 = s3_client(settings.s3)
    policy = Policy.model_validate({"version": "colour-policy-monitor", "categories": {
        "red": {"mode": "monitor", "remove_threshold": 1.000001, "review_threshold": 1.000001,
                "monitor_threshold": 0.5, "reason": "2 calibration positives < 10 needed to act"},
        "blue": {"remove_threshold": 0.9, "review_threshold": 0.8}}})
    tag = settings.kafka.consumer_group
    posts = []
    for n, colour in enumerate((cm.RED, cm.BLUE)):
        uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg(colour, seed=500 + n))
        posts.append(new_post(f"monitor-{n}-{tag}", uri, digest))
    publish_posts(settings, posts)
    consumer = ModerationConsumer(settings, scorer, policy, options=ConsumerOptions())
    (port,) = pick_free_ports("127.0.0.1", 1)
    server = consumer.metrics.serve(port)
    try:
        consumer.run(threading.Event(), idle_exit_s=3.0)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    finally:
        server.shutdown()
    ledger = Ledger(s3, settings.s3.buckets.ledger)
    red, blue = ledger.get(posts[0].post_id), ledger.get(posts[1].post_id)
    assert red.action == "allow" and red.scores["red"] > 0.9  # scored and recorded, never actioned
    assert any(r.startswith("monitor:red>=0.500") and "not actioned" in r for r in red.reasons)
    assert red.policy_version == "colour-policy-monitor"
    assert blue.action == "remove"  # the acting category still acts
    assert 'tagwatch_monitor_hits_total{category="red"} 1.0' in metrics
