"""Helpers for stream tests: private topics per test, reading a topic back completely."""

from __future__ import annotations

import time
import uuid

from tagwatch.clients import kafka_config
from tagwatch.settings import Settings


def wait_for(predicate, timeout_s: float, what: str, *, logs=(), interval: float = 0.25) -> None:
    """Poll ``predicate`` until true; else fail naming ``what``, with the tail of each consumer log in ``logs``
    (paths, or objects with a ``tail()`` such as ConsumerProcess)."""
    from tagwatch.stack.process import wait_for as poll

    if poll(predicate, timeout_s=timeout_s, interval_s=interval):
        return
    tails = "\n".join(log.tail() if hasattr(log, "tail") else f"--- {log.name}\n{log.read_text(errors='replace')[-2500:]}"
                      for log in logs)
    raise AssertionError(f"timed out waiting for {what}" + (f"; consumers' logs:\n{tails}" if tails else ""))


def private_stream(settings: Settings, partitions: int = 2) -> Settings:
    """A copy of ``settings`` with its own topics and consumer group, created on the broker."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    tag = uuid.uuid4().hex[:8]
    topics = settings.kafka.topics.model_copy(update={
        "posts": f"t{tag}.posts", "decisions": f"t{tag}.decisions",
        "review": f"t{tag}.review", "dead_letter": f"t{tag}.dlq", "deleted": f"t{tag}.deleted",
    })
    kafka = settings.kafka.model_copy(update={"topics": topics, "consumer_group": f"g{tag}", "partitions": partitions})
    admin = KafkaAdminClient(**kafka_config(kafka, client_id="test-admin"))
    try:
        admin.create_topics([NewTopic(t, partitions, 1) for t in (
            topics.posts, topics.decisions, topics.review, topics.dead_letter, topics.deleted)])
    finally:
        admin.close()
    return settings.model_copy(update={"kafka": kafka})


def read_topic(settings: Settings, topic: str, *, expect: int, timeout_s: float = 60.0) -> list:
    """Every record of ``topic`` from the beginning, waiting until at least ``expect`` arrived.

    Reads by assign + seek to 0 (Tansu's end offsets are unreliable, so 'until the end' is not knowable).
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(enable_auto_commit=False, **kafka_config(settings.kafka, client_id="test-reader"))
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        records = []
        deadline = time.monotonic() + timeout_s
        quiet_until = None
        while time.monotonic() < deadline:
            got = consumer.poll(timeout_ms=500)
            for recs in got.values():
                records.extend(recs)
            if len(records) >= expect:
                # keep reading briefly so duplicates beyond `expect` are counted too
                quiet_until = quiet_until or time.monotonic() + 1.5
                if time.monotonic() > quiet_until:
                    break
        return records
    finally:
        consumer.close()


def stream_env(settings: Settings) -> dict[str, str]:
    """Env for a `tagwatch` subprocess that uses ``settings``' stack, private topics and group."""
    import os

    t = settings.kafka.topics
    return {
        **os.environ,
        "TAGWATCH_PATHS__STATE_DIR": str(settings.paths.state_dir),
        "TAGWATCH_S3__SECRET_ACCESS_KEY": settings.s3.secret_access_key.get_secret_value(),
        "TAGWATCH_STACK__FREE_PORTS": "true",
        "TAGWATCH_KAFKA__TOPICS__POSTS": t.posts,
        "TAGWATCH_KAFKA__TOPICS__DECISIONS": t.decisions,
        "TAGWATCH_KAFKA__TOPICS__REVIEW": t.review,
        "TAGWATCH_KAFKA__TOPICS__DEAD_LETTER": t.dead_letter,
        "TAGWATCH_KAFKA__TOPICS__DELETED": t.deleted,
        "TAGWATCH_KAFKA__CONSUMER_GROUP": settings.kafka.consumer_group,
    }


def assert_audit_clean(settings: Settings, expected: set[str], *, quiet_s: float = 1.5):
    """The stream audit (moderation/audit.py) over ``expected``: nothing lost, each ledger record equal to the
    post's first decision event, one decision id per post, no commit past an undecided record. Returns the report."""
    from tagwatch.moderation.readback import audit_stream

    report = audit_stream(settings, expected=expected, quiet_s=quiet_s)
    summary = report.to_dict()
    assert report.lost == 0 and report.unhandled_records == 0, summary
    assert report.ledger_records == len(expected) and report.ledger_missing == 0, summary
    assert report.ledger_mismatches == 0, summary
    assert report.conflicting_decision_ids == 0, summary
    assert report.commit_violations == 0, summary
    assert report.ok, summary
    return report


def decide_posts(settings: Settings, env: dict[str, str], posts: dict, *, log_path, what: str = "the posts decided",
                 timeout_s: float = 120.0) -> dict:
    """Publish ``posts`` (name -> PostCreated), let one real `tagwatch moderate` process decide them, stop it with
    SIGTERM (it must exit 0); name -> (the decision event, the ledger record) of each post."""
    import signal
    import subprocess
    import sys

    from tagwatch.clients import s3_client
    from tagwatch.moderation.events import Decision
    from tagwatch.moderation.ledger import Ledger
    from tagwatch.moderation.publish import publish_posts

    assert publish_posts(settings, list(posts.values())) == len(posts)
    with open(log_path, "wb") as log:
        consumer = subprocess.Popen([sys.executable, "-m", "tagwatch", "moderate", "--max-poll-records", "8"],
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        ledger = Ledger(s3_client(settings.s3), settings.s3.buckets.ledger)
        ids = {p.post_id for p in posts.values()}
        wait_for(lambda: ids <= set(ledger.post_ids()), timeout_s, what, logs=[log_path])
        events = {}
        for record in read_topic(settings, settings.kafka.topics.decisions, expect=len(posts)):
            event = Decision.model_validate_json(record.value)
            events[event.post_id] = event
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=90) == 0, log_path.read_text(errors="replace")[-3000:]
        return {name: (events[p.post_id], ledger.get(p.post_id)) for name, p in posts.items()}
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
