"""The stream audit on the real stack: a clean run passes; a ledger record changed behind the stream's back and
a commit past undecided records are both caught (by the library call and by `tagwatch posts audit`)."""

from __future__ import annotations

import json
import threading

import pytest

from tagwatch.clients import kafka_config, s3_client
from tagwatch.moderation.consumer import ConsumerOptions, ModerationConsumer
from tagwatch.moderation.ledger import Ledger
from tagwatch.moderation.publish import new_post, publish_posts, upload_image
from tagwatch.moderation.readback import audit_stream
from tagwatch.moderation.scoring import OnnxScorer
from tests.conftest import run_cli
from tests.support import colour_model as cm
from tests.support.stream import private_stream, stream_env


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "colour.onnx"
    return OnnxScorer(path, cm.CATEGORIES, cm.build(path))


def _publish(settings, s3, names):
    posts = []
    for n, name in enumerate(names):
        uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg([cm.RED, cm.GREY][n % 2], size=48, seed=n))
        posts.append(new_post(f"{name}-{settings.kafka.consumer_group}", uri, digest))
    assert publish_posts(settings, posts) == len(posts)
    return {p.post_id for p in posts}


def _commit_without_deciding(settings) -> None:
    """A member that commits what it polled without deciding it: the bug the audit exists to catch."""
    from kafka import KafkaConsumer, OffsetAndMetadata

    consumer = KafkaConsumer(settings.kafka.topics.posts, group_id=settings.kafka.consumer_group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=settings.kafka.session_timeout_ms,
                             **kafka_config(settings.kafka, client_id="test-bad-member"))
    try:
        polled = []
        for _ in range(60):
            polled.extend(r for recs in consumer.poll(timeout_ms=500).values() for r in recs)
            if len(polled) >= 3:
                break
        assert len(polled) == 3
        offsets = {}
        for r in polled:
            tp = next(tp for tp in consumer.assignment() if tp.partition == r.partition)
            offsets[tp] = OffsetAndMetadata(max(offsets.get(tp, OffsetAndMetadata(0, "", -1)).offset, r.offset + 1), "", -1)
        consumer.commit(offsets)
    finally:
        consumer.close()


def test_the_audit_passes_a_clean_run_and_catches_a_changed_ledger_and_a_bad_commit(stack_settings, scorer, tmp_path):
    from kafka import KafkaProducer

    settings = private_stream(stack_settings, partitions=2)
    s3 = s3_client(settings.s3)
    ours = _publish(settings, s3, [f"a{n}" for n in range(10)])
    producer = KafkaProducer(acks="all", **kafka_config(settings.kafka, client_id="test-poison"))
    producer.send(settings.kafka.topics.posts, key=b"junk", value=b"\xff not json", headers=[]).get(timeout=30)
    producer.close()
    consumer = ModerationConsumer(settings, scorer, cm.POLICY, options=ConsumerOptions(max_poll_records=4))
    stats = consumer.run(threading.Event(), idle_exit_s=3.0)
    assert (stats.decided, stats.dead_lettered) == (10, 1)

    report = audit_stream(settings, expected=ours, quiet_s=1.0)
    assert report.ok, report.to_dict()
    assert (report.posts_seen, report.records_seen, report.decided, report.ledger_records) == (10, 11, 10, 10)
    assert report.dead_letters_by_reason == {"not_a_cloudevent": 1} and report.lost == 0
    assert sum(report.committed.values()) == 11  # everything, the poison included, was committed
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(sorted(ours)) + "\n")
    cli = run_cli("posts", "audit", "--ids", str(ids), "--json", "--quiet", "1", env=stream_env(settings))
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert json.loads(cli.stdout)["decided"] == 10

    # a ledger record replaced behind the stream's back: still one key per post, but not what was decided
    victim = sorted(ours)[0]
    ledger = Ledger(s3, settings.s3.buckets.ledger)
    changed = ledger.get(victim).model_copy(update={"action": "review"})
    s3.put_object(Bucket=settings.s3.buckets.ledger, Key=ledger.key(victim), Body=changed.model_dump_json().encode())
    # three more posts that a broken member commits without deciding
    late = _publish(settings, s3, [f"late{n}" for n in range(3)])
    _commit_without_deciding(settings)

    report = audit_stream(settings, expected=ours | late, quiet_s=1.0)
    assert not report.ok
    assert report.ledger_mismatch_sample == [{"post_id": victim, "fields": ["action"]}]
    assert report.lost == 3 and set(report.lost_sample) == late
    assert report.commit_violations == 3 and {v["post_id"] for v in report.commit_violation_sample} == late
    cli = run_cli("posts", "audit", "--quiet", "1", env=stream_env(settings))  # no ids: every post on the topic
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "commit violations: 3" in cli.stdout and cli.stdout.rstrip().endswith("FAILED")
