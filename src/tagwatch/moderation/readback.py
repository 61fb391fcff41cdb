"""Read back what a moderation run left: topics from offset 0, the group's committed offsets, ledger objects.

Tansu's reported end offsets are unreliable (PLATFORM.md), so "the end of a topic" is not knowable: a topic is
read by assign + seek to 0 until nothing new arrived for a quiet period.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from tagwatch.clients import kafka_config, s3_client
from tagwatch.moderation.audit import AuditReport, DeadLetterEvent, DecisionEvent, PostRecord, audit_records
from tagwatch.moderation.ledger import Ledger
from tagwatch.settings import KafkaSettings, Settings

log = logging.getLogger(__name__)


class TopicFollower:
    """Every record of some topics from offset 0, then whatever arrives next, one ``poll`` at a time."""

    def __init__(self, kafka: KafkaSettings, topics: list[str], *, client_id: str = "tagwatch-readback",
                 start=None) -> None:
        """``start(consumer, partitions) -> {TopicPartition: offset}``: where to begin (absent: offset 0)."""
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(enable_auto_commit=False, **kafka_config(kafka, client_id=client_id))
        tps = []
        for topic in topics:
            parts = self._partitions(topic)
            tps.extend(TopicPartition(topic, p) for p in sorted(parts))
        self.consumer.assign(tps)
        offsets = start(self.consumer, tps) if start is not None else {}
        for tp in tps:
            self.consumer.seek(tp, offsets.get(tp, 0))

    def _partitions(self, topic: str, timeout_s: float = 30.0) -> set[int]:
        deadline = time.monotonic() + timeout_s
        while True:
            parts = self.consumer.partitions_for_topic(topic)
            if parts or time.monotonic() > deadline:
                return parts or set()
            time.sleep(0.2)

    def poll(self, timeout_ms: int = 500) -> list:
        got = self.consumer.poll(timeout_ms=timeout_ms)
        return [r for recs in got.values() for r in recs]

    def read_until_quiet(self, *, quiet_s: float = 2.0, timeout_s: float = 120.0, at_least: int = 0) -> list:
        """Records until ``quiet_s`` pass with none new (and at least ``at_least`` arrived), or ``timeout_s``."""
        records: list = []
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            got = self.poll()
            if got:
                records.extend(got)
                last_new = time.monotonic()
            elif len(records) >= at_least and time.monotonic() - last_new > quiet_s:
                break
        return records

    def close(self) -> None:
        self.consumer.close()


def read_all(kafka: KafkaSettings, topic: str, **kwargs) -> list:
    follower = TopicFollower(kafka, [topic])
    try:
        return follower.read_until_quiet(**kwargs)
    finally:
        follower.close()


def committed_offsets(kafka: KafkaSettings, topic: str, partitions: list[int]) -> dict[int, int]:
    """partition -> the consumer group's committed offset on ``topic`` (partitions with no commit are absent)."""
    from kafka import KafkaAdminClient, TopicPartition

    admin = KafkaAdminClient(**kafka_config(kafka, client_id="tagwatch-readback-admin"))
    try:
        wanted = [TopicPartition(topic, p) for p in partitions]
        offsets = admin.list_group_offsets({kafka.consumer_group: wanted}).get(kafka.consumer_group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items()
            if tp.topic == topic and meta is not None and meta.offset >= 0}


def read_ledger(s3, bucket: str, post_ids: set[str], *, workers: int = 16) -> dict[str, dict]:
    """post_id -> ledger object JSON, for those of ``post_ids`` that have one (one listing, then GETs)."""
    ledger = Ledger(s3, bucket)
    present = sorted(post_ids & set(ledger.post_ids()))

    def get(post_id: str) -> tuple[str, dict]:
        body = s3.get_object(Bucket=bucket, Key=ledger.key(post_id))["Body"].read()
        return post_id, json.loads(body)

    with ThreadPoolExecutor(workers) as pool:
        return dict(pool.map(get, present))


def post_record(record) -> PostRecord:
    try:
        data = json.loads(record.value.decode("utf-8")) if record.value is not None else None
    except (UnicodeDecodeError, ValueError):
        data = None
    post_id = data.get("post_id") if isinstance(data, dict) else None
    return PostRecord(record.partition, record.offset, post_id if isinstance(post_id, str) else None)


def decision_event(record, posts_topic: str) -> DecisionEvent:
    return DecisionEvent.from_dict(json.loads(record.value), (record.partition, record.offset), posts_topic=posts_topic)


def dead_letter_event(record) -> DeadLetterEvent:
    data = json.loads(record.value)
    return DeadLetterEvent(reason=data["reason"], topic=data["topic"], partition=int(data["partition"]),
                           offset=int(data["offset"]))


def audit_stream(settings: Settings, *, expected: set[str] | None = None, quiet_s: float = 2.0,
                 timeout_s: float = 300.0) -> AuditReport:
    """Read everything back from the stack in ``settings`` and audit it (see ``moderation/audit.py``)."""
    kafka, topics = settings.kafka, settings.kafka.topics
    at_least = len(expected) if expected is not None else 0
    follower = TopicFollower(kafka, [topics.posts])
    try:
        partitions = sorted(tp.partition for tp in follower.consumer.assignment())
        posts = [post_record(r) for r in follower.read_until_quiet(quiet_s=quiet_s, timeout_s=timeout_s, at_least=at_least)]
    finally:
        follower.close()
    decisions = [decision_event(r, topics.posts) for r in read_all(kafka, topics.decisions, quiet_s=quiet_s, timeout_s=timeout_s)]
    letters = [dead_letter_event(r) for r in read_all(kafka, topics.dead_letter, quiet_s=quiet_s, timeout_s=timeout_s)]
    committed = committed_offsets(kafka, topics.posts, partitions)
    scope = expected if expected is not None else {p.post_id for p in posts if p.post_id is not None}
    ledger = read_ledger(s3_client(settings.s3), settings.s3.buckets.ledger, set(scope))
    return audit_records(posts=posts, decisions=decisions, dead_letters=letters, ledger=ledger, committed=committed,
                         posts_topic=topics.posts, expected=expected)
