"""The review loop's core on the real stack (SeaweedFS + Tansu), without the web app: the feeder's own group fills
the S3 queue and skips a record that is not a review request, the recorder writes the outcome to the post's ledger
history and the review-outcomes topic, and `tagwatch ledger show` prints the post's whole history."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tagwatch.clients import kafka_config, s3_client
from tagwatch.moderation.events import Decision, EventType, ModelRef, ReviewRequest, encode
from tagwatch.moderation.ledger import Ledger, LedgerHistory
from tagwatch.review.feeder import Feeder
from tagwatch.review.outcomes import OutcomeRecorder, Verdict
from tagwatch.review.queue import LeaseLost, ReviewQueue
from tests.conftest import run_cli
from tests.support.stream import read_topic, stream_env, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture()
def review_settings(stack_settings):
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    tag = uuid.uuid4().hex[:8]
    topics = stack_settings.kafka.topics.model_copy(update={"review": f"t{tag}.review",
                                                            "review_outcomes": f"t{tag}.outcomes"})
    kafka = stack_settings.kafka.model_copy(update={"topics": topics})
    admin = KafkaAdminClient(**kafka_config(kafka, client_id="test-admin"))
    try:
        admin.create_topics([NewTopic(topics.review, 2, 1), NewTopic(topics.review_outcomes, 2, 1)])
    finally:
        admin.close()
    review = stack_settings.review.model_copy(update={"consumer_group": f"g{tag}-review", "lease_s": 60})
    return stack_settings.model_copy(update={"kafka": kafka, "review": review}), tag


def _decision(post_id: str, tag: str) -> Decision:
    return Decision(decision_id=f"d-{post_id}", post_id=post_id, action="review", scores={"weapons": 0.6, "drugs": 0.1},
                    reasons=["weapons 0.60 >= review 0.50"], model=ModelRef(name="m", version="3", sha256="0" * 64),
                    policy_version=f"m-policy-{tag}", decided_at=datetime.now(timezone.utc), latency_ms=12.0)


def test_feeder_queue_recorder_and_ledger_show(review_settings):
    from kafka import KafkaProducer

    settings, tag = review_settings
    s3 = s3_client(settings.s3)
    bucket = settings.s3.buckets.ledger
    ledger, history = Ledger(s3, bucket), LedgerHistory(s3, bucket)
    post_ids = [f"rc{tag}-{i}" for i in range(3)]
    producer = KafkaProducer(acks="all", **kafka_config(settings.kafka, client_id="test-review-producer"))
    try:
        for post_id in post_ids:
            decision = _decision(post_id, tag)
            ledger.record(decision)
            request = ReviewRequest(decision_id=decision.decision_id, post_id=post_id,
                                    image_uri=f"s3://posts/images/{post_id}.png", scores=decision.scores,
                                    reasons=decision.reasons, requested_at=datetime.now(timezone.utc))
            value, headers = encode(request, EventType.REVIEW, subject=post_id)
            producer.send(settings.kafka.topics.review, key=post_id.encode(), value=value, headers=headers)
        # a record that is not a review request: counted and skipped, never stops the group
        producer.send(settings.kafka.topics.review, key=b"junk", value=b"{not json")
        producer.flush()

        queue = ReviewQueue(s3, bucket, lease_s=60)
        invalid: list[str] = []
        feeder = Feeder(settings, queue, on_invalid=invalid.append)
        feeder.consumer = feeder._consumer()
        try:
            wait_for(lambda: feeder.poll_once() >= 0 and {i.request.post_id for i in queue.pending()} >= set(post_ids)
                     and invalid, 60, "the feeder to enqueue three requests and skip the junk record")
        finally:
            feeder.consumer.close()
        assert invalid == ["invalid_request"]
        assert queue.enqueue(queue.item(post_ids[0]).request) is False  # a re-delivered request is a no-op

        recorder = OutcomeRecorder(queue=queue, ledger=ledger, history=history, producer=producer,
                                   topic=settings.kafka.topics.review_outcomes)
        lease = queue.claim(post_ids[0], "alice")
        assert queue.claim(post_ids[0], "bob") is None  # leased to alice
        at = datetime.now(timezone.utc) + timedelta(seconds=1)
        outcome = recorder.record(post_ids[0], lease.token, Verdict("remove", ("weapons",), "knife"),
                                  reviewer="alice", at=at)
        with pytest.raises(LeaseLost):  # the same form again: the item is closed, nothing written twice
            recorder.record(post_ids[0], lease.token, Verdict("allow"), reviewer="alice", at=at)
        assert post_ids[0] not in {i.request.post_id for i in queue.pending()}
    finally:
        producer.close()

    records = read_topic(settings, settings.kafka.topics.review_outcomes, expect=1, timeout_s=30)
    assert len(records) == 1
    headers = {k: v.decode() for k, v in records[0].headers}
    assert headers["ce_type"] == EventType.REVIEW_OUTCOME.value and headers["ce_id"] == outcome.outcome_id
    assert json.loads(records[0].value)["categories"] == ["weapons"]
    entries = history.entries(post_ids[0])
    assert [(kind, e["action"], e["reviewer"]) for kind, e in entries] == [("review", "remove", "alice")]
    assert ledger.get(post_ids[0]).action == "review"  # the first decision stands

    env = stream_env(settings)
    shown = run_cli("ledger", "show", post_ids[0], env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "decision  review" in lines[1] and "review    remove  by alice" in lines[-1], shown.stdout
    as_json = json.loads(run_cli("ledger", "show", post_ids[0], "--json", env=env).stdout)
    assert [e["kind"] for e in as_json["history"]] == ["review"] and as_json["decision"]["action"] == "review"
    missing = run_cli("ledger", "show", f"nope-{tag}", env=env)
    assert missing.returncode == 1 and "no record of post" in missing.stderr and "hint:" in missing.stderr
