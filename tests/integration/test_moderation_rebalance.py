"""Rebalance correctness on the real broker: nothing is skipped when the group changes while a batch is retried.

The invariant under test: an offset is committed only when every record before it on that partition has a
ledger record or a dead letter. Each test ends with every post decided (ledger) and the group's committed
offsets at the end of every partition, and checks that no commit ever passed an undecided record.

The model server is the one stand-in (``GatedScorer``: "down until released"), so the outage starts and ends
exactly when the test says; the consumers, Kafka (Tansu) and S3 (SeaweedFS) are real.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest

from tagwatch.clients import kafka_config, s3_client
from tagwatch.errors import RetryableError
from tagwatch.moderation.consumer import ConsumerOptions, ModerationConsumer
from tagwatch.moderation.group import close_member
from tagwatch.moderation.ledger import Ledger
from tagwatch.moderation.publish import new_post, publish_posts, upload_image
from tagwatch.moderation.scoring import OnnxScorer
from tests.support import colour_model as cm
from tests.support.stream import private_stream

FAST = ConsumerOptions(max_poll_records=4, backoff_initial_s=0.2, backoff_max_s=1.0, poll_timeout_ms=200)


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "colour.onnx"
    return OnnxScorer(path, cm.CATEGORIES, cm.build(path))


class GatedScorer:
    """A model server that is down until ``release`` is set (a stand-in for Triton only)."""

    def __init__(self, inner) -> None:
        self.inner, self.release, self.failures = inner, threading.Event(), 0
        self.categories, self.model = inner.categories, inner.model

    def score(self, images):
        if not self.release.is_set():
            self.failures += 1
            raise RetryableError("model server unavailable (simulated outage)")
        return self.inner.score(images)


class CommitWatch:
    """Records every offset commit a consumer makes, and checks each against the ledger at that moment."""

    def __init__(self, consumer: ModerationConsumer, ledger: Ledger, posts_by_offset: dict) -> None:
        self.violations: list[str] = []
        self.commits = 0
        original = consumer.consumer.commit

        def commit(offsets=None, **kwargs):
            for tp, meta in (offsets or {}).items():
                for offset in range(meta.offset):
                    post_id = posts_by_offset.get((tp.partition, offset))
                    if post_id is not None and ledger.get(post_id) is None:
                        self.violations.append(f"{tp.topic}[{tp.partition}] committed {meta.offset} past undecided "
                                               f"offset {offset} ({post_id})")
            self.commits += 1
            return original(offsets, **kwargs)

        consumer.consumer.commit = commit


def _publish(settings, n: int, tag: str) -> tuple[list, dict]:
    """``n`` posts (distinct images); returns them and {(partition, offset): post_id} as the broker placed them."""
    from kafka import KafkaConsumer, TopicPartition

    s3 = s3_client(settings.s3)
    posts = []
    for i in range(n):
        uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg([cm.RED, cm.BLUE, cm.GREY][i % 3], seed=7000 + i))
        posts.append(new_post(f"{tag}-{i:03d}-{settings.kafka.consumer_group}", uri, digest))
    assert publish_posts(settings, posts) == n
    reader = KafkaConsumer(enable_auto_commit=False, **kafka_config(settings.kafka, client_id="placement"))
    try:
        tps = [TopicPartition(settings.kafka.topics.posts, p) for p in range(settings.kafka.partitions)]
        reader.assign(tps)
        for tp in tps:
            reader.seek(tp, 0)
        placed, deadline = {}, time.monotonic() + 30
        while len(placed) < n and time.monotonic() < deadline:
            for tp, records in reader.poll(timeout_ms=500).items():
                for r in records:
                    placed[(tp.partition, r.offset)] = r.key.decode()
    finally:
        reader.close()
    assert len(placed) == n
    return posts, placed


@contextmanager
def running(consumer: ModerationConsumer, *, idle_exit_s: float, gate: threading.Event | None = None):
    """The consumer's loop in a thread; on the way out the gate opens, the loop is told to stop and joined."""
    stop = threading.Event()
    runner = threading.Thread(target=consumer.run, args=(stop,), kwargs={"idle_exit_s": idle_exit_s})
    runner.start()
    try:
        yield runner
    finally:
        if gate is not None:
            gate.set()
        stop.set()
        runner.join(timeout=60)


def _finishes(runner: threading.Thread, timeout_s: float) -> None:
    runner.join(timeout=timeout_s)
    assert not runner.is_alive(), f"the consumer did not go idle and exit within {timeout_s:.0f}s"


def _wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.05)


def _assert_all_decided_and_committed(settings, posts, placed, watch: CommitWatch) -> None:
    from kafka import KafkaConsumer, TopicPartition

    ledger = Ledger(s3_client(settings.s3), settings.s3.buckets.ledger)
    undecided = [p.post_id for p in posts if ledger.get(p.post_id) is None]
    assert not undecided, f"{len(undecided)} posts never decided: {undecided[:5]}"
    assert watch.commits and not watch.violations, watch.violations[:5]
    reader = KafkaConsumer(group_id=settings.kafka.consumer_group, **kafka_config(settings.kafka, client_id="check"))
    try:
        for partition in range(settings.kafka.partitions):
            end = 1 + max((o for p, o in placed if p == partition), default=-1)
            assert reader.committed(TopicPartition(settings.kafka.topics.posts, partition)) == end, partition
    finally:
        reader.close()


def _other_member(settings):
    from kafka import KafkaConsumer

    member = KafkaConsumer(group_id=settings.kafka.consumer_group, enable_auto_commit=False,
                           session_timeout_ms=settings.kafka.session_timeout_ms,
                           heartbeat_interval_ms=max(500, settings.kafka.session_timeout_ms // 3),
                           max_poll_records=1, **kafka_config(settings.kafka, client_id="intruder"))
    member.subscribe([settings.kafka.topics.posts])
    return member


def test_a_rebalance_during_a_backoff_with_partitions_coming_back_skips_nothing(stack_settings, scorer):
    """The chaos run's lost ranges, deterministically: the member is backing off (model down) when another member
    joins (its partitions are revoked and one is given back) and leaves (the other comes back as a new
    assignment). Records of partitions assigned during the wait were polled and dropped, and the fetch
    position moved past them; a partition kept paused across the rebalance was never read again."""
    settings = private_stream(stack_settings, partitions=2)
    posts, placed = _publish(settings, 40, "rb")
    gated = GatedScorer(scorer)
    consumer = ModerationConsumer(settings, gated, cm.POLICY, options=FAST)
    ledger = Ledger(s3_client(settings.s3), settings.s3.buckets.ledger)
    watch = CommitWatch(consumer, ledger, placed)
    with running(consumer, idle_exit_s=5.0, gate=gated.release) as runner:
        _wait(lambda: gated.failures >= 1, 60, "the first failed batch (the member is backing off)")
        intruder = _other_member(settings)
        _wait(lambda: intruder.poll(timeout_ms=100) is not None and len(intruder.assignment()) == 1, 60,
              "the second member to get a partition")
        _wait(lambda: len(consumer.consumer.assignment()) == 1, 30, "the first member to keep one partition")
        close_member(intruder)  # leaves (politely when the group is stable): its partition comes back
        _wait(lambda: len(consumer.consumer.assignment()) == 2, 60, "both partitions back with the first member")
        time.sleep(1.5)  # several back-off polls with the returned partition unpaused under the old code
        assert gated.failures >= 2
        gated.release.set()
        _finishes(runner, 120)
    _assert_all_decided_and_committed(settings, posts, placed, watch)


def test_a_takeover_during_a_model_outage_skips_nothing(stack_settings, scorer):
    """Two members, the model down: one member vanishes (closed without LeaveGroup, like a crash, so the broker
    expires it) while the other backs off; the survivor takes its partitions over mid-outage."""
    settings = private_stream(stack_settings, partitions=2)
    posts, placed = _publish(settings, 40, "to")
    gated = GatedScorer(scorer)
    survivor = ModerationConsumer(settings, gated, cm.POLICY, options=FAST, client_id="survivor")
    watch = CommitWatch(survivor, Ledger(s3_client(settings.s3), settings.s3.buckets.ledger), placed)
    with running(survivor, idle_exit_s=5.0, gate=gated.release) as runner:
        _wait(lambda: gated.failures >= 1, 60, "the survivor's first failed batch")
        victim = _other_member(settings)
        _wait(lambda: victim.poll(timeout_ms=100) is not None and len(victim.assignment()) == 1, 60,
              "the victim to own a partition")
        victim._coordinator.reset_generation()  # no LeaveGroup: it vanishes like a SIGKILLed member
        victim.close(autocommit=False)
        _wait(lambda: len(survivor.consumer.assignment()) == 2, 90, "the survivor to take over after the expiry")
        time.sleep(1.5)
        gated.release.set()
        _finishes(runner, 120)
    _assert_all_decided_and_committed(settings, posts, placed, watch)


class FaultyS3:
    """The real S3 client, except that GETs of one object answer HTTP 500 (SeaweedFS cannot be made to fail for
    one key only, so this fault is injected; the bucket and every other object are the real store)."""

    def __init__(self, real, bad_key: str) -> None:
        self.real, self.bad_key, self.refused = real, bad_key, 0

    def get_object(self, **kwargs):
        from botocore.exceptions import ClientError

        if kwargs.get("Key") == self.bad_key:
            self.refused += 1
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"},
                               "ResponseMetadata": {"HTTPStatusCode": 500}}, "GetObject")
        return self.real.get_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_record_that_keeps_failing_is_dead_lettered_and_the_partition_reported_stuck_meanwhile(stack_settings, scorer):
    import urllib.error
    import urllib.request

    from tagwatch.moderation.events import DeadLetter
    from tagwatch.stack.ports import pick_free_ports
    from tests.support.stream import read_topic

    settings = private_stream(stack_settings, partitions=1)
    posts, placed = _publish(settings, 6, "ex")
    bad = posts[2]
    options = ConsumerOptions(max_poll_records=8, backoff_initial_s=0.3, backoff_max_s=1.0, max_record_attempts=4,
                              stuck_after_s=0.5)
    consumer = ModerationConsumer(settings, scorer, cm.POLICY, options=options)
    faulty = FaultyS3(consumer.moderator.s3, bad.image_uri.split("/", 3)[3])
    consumer.moderator.s3 = faulty
    watch = CommitWatch(consumer, Ledger(s3_client(settings.s3), settings.s3.buckets.ledger), {
        k: v for k, v in placed.items() if v != bad.post_id})
    (port,) = pick_free_ports("127.0.0.1", 1)
    server = consumer.metrics.serve(port)
    health: list[tuple[int, str]] = []
    try:
        with running(consumer, idle_exit_s=4.0) as runner:
            while runner.is_alive():
                try:
                    response = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
                    health.append((response.status, response.read().decode()))
                except urllib.error.HTTPError as error:
                    health.append((error.code, error.read().decode()))
                time.sleep(0.2)
    finally:
        server.shutdown()
    assert faulty.refused == 4  # its attempts, then never asked again
    stuck = [body for code, body in health if code == 503 and "stuck:" in body]
    assert stuck and f"{settings.kafka.topics.posts}[0]@" in stuck[0], health[:5]
    assert health[-1][0] == 200 or not consumer.metrics.stuck_now()
    letters = [DeadLetter.model_validate_json(r.value)
               for r in read_topic(settings, settings.kafka.topics.dead_letter, expect=1)]
    assert [(dl.reason, dl.attempts) for dl in letters] == [("retries_exhausted", 4)]
    assert "HTTP 500 InternalError" in letters[0].error and letters[0].first_seen < letters[0].last_seen
    ledger = Ledger(s3_client(settings.s3), settings.s3.buckets.ledger)
    assert ledger.get(bad.post_id) is None
    assert all(ledger.get(p.post_id) is not None for p in posts if p is not bad)
    assert watch.commits and not watch.violations


class BlockingScorer:
    """A model call that takes until ``release`` (a stand-in for a slow Triton), so the broker can be restarted
    while a batch is in the middle of being decided."""

    def __init__(self, inner) -> None:
        self.inner, self.release, self.entered = inner, threading.Event(), threading.Event()
        self.categories, self.model = inner.categories, inner.model

    def score(self, images):
        self.entered.set()
        self.release.wait(120)
        return self.inner.score(images)


def test_a_broker_restart_mid_batch_loses_nothing(tmp_path, scorer):
    """SIGKILL of the broker while a polled batch is being scored: its produce, ledger and commit meet a broker
    that is coming back; the batch is retried and the rest of the stream goes on."""
    from tagwatch.stack import Stack, with_stack_endpoints
    from tests.conftest import make_settings

    base = make_settings(tmp_path / "stack")
    stack = Stack(base)
    stack.up()
    try:
        settings = private_stream(with_stack_endpoints(base), partitions=2)
        posts, placed = _publish(settings, 30, "br")
        blocking = BlockingScorer(scorer)
        consumer = ModerationConsumer(settings, blocking, cm.POLICY, options=FAST)
        watch = CommitWatch(consumer, Ledger(s3_client(settings.s3), settings.s3.buckets.ledger), placed)
        with running(consumer, idle_exit_s=6.0, gate=blocking.release) as runner:
            assert blocking.entered.wait(60), "no batch reached the model"
            stack.restart("tansu", kill=True)
            blocking.release.set()
            _finishes(runner, 240)
        _assert_all_decided_and_committed(settings, posts, placed, watch)
    finally:
        stack.down()
