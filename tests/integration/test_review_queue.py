"""The review queue's leases, the feeder and the outcome recorder against the real embedded S3 (SeaweedFS, whose
If-None-Match / If-Match writes the leases rely on) and Kafka (Tansu). A fake clock moves time for expiry."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from tagwatch.clients import s3_client
from tagwatch.moderation.events import ReviewOutcome
from tagwatch.moderation.ledger import Ledger, LedgerHistory
from tagwatch.review.feeder import Feeder
from tagwatch.review.outcomes import InvalidVerdict, Verdict
from tagwatch.review.queue import LeaseLost, ReviewQueue
from tagwatch.review.serve import build_service
from tests.support.review import png, post_for_review, review_world, send_requests
from tests.support.stream import read_topic, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world(stack_settings):
    return review_world(stack_settings)


def queue_for(settings, clock, expired=None, lease_s=60.0) -> ReviewQueue:
    return ReviewQueue(s3_client(settings.s3), settings.s3.buckets.ledger, lease_s=lease_s, clock=clock,
                       on_lease_expired=expired)


def test_two_reviewers_contending_exactly_one_gets_the_item(world):
    clock = Clock()
    queue = queue_for(world, clock)
    for i in range(4):
        queue.enqueue(post_for_review(world, f"race-{i}", image=png((i, 0, 0))))
    for i in range(4):
        barrier, got = threading.Barrier(4), {}

        def claim(name: str) -> None:
            barrier.wait()
            got[name] = queue.claim(f"race-{i}", name)

        threads = [threading.Thread(target=claim, args=(f"r{n}",)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [name for name, lease in got.items() if lease is not None]
        assert len(winners) == 1, got
        assert queue.lease_of(f"race-{i}")[0].reviewer == winners[0]


def test_next_for_never_hands_one_item_to_two_reviewers(world):
    clock = Clock()
    queue = queue_for(world, clock)
    for i in range(3):
        queue.enqueue(post_for_review(world, f"next-{i}", image=png((0, i, 0))))
    got: dict[str, str | None] = {}

    def take(name: str) -> None:
        found = queue.next_for(name)
        got[name] = found[0].request.post_id if found else None

    threads = [threading.Thread(target=take, args=(f"r{n}",)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got.values()) == ["next-0", "next-1", "next-2"]
    assert queue.next_for("r9") is None and queue.stats().leased == 3


def test_an_expired_lease_is_taken_over_once_and_the_old_token_loses(world):
    clock, expired = Clock(), []
    queue = queue_for(world, clock, expired=expired.append)
    queue.enqueue(post_for_review(world, "exp-1", image=png((0, 0, 9))))
    alice = queue.claim("exp-1", "alice")
    assert queue.claim("exp-1", "bob") is None
    again = queue.claim("exp-1", "alice")  # a reload: same token, later expiry
    assert again.token == alice.token and again.expires_at >= alice.expires_at
    clock.now += timedelta(seconds=61)
    assert queue.check("exp-1", alice.token)  # expired but nobody took it: still alice's
    barrier, got = threading.Barrier(2), {}

    def take(name: str) -> None:
        barrier.wait()
        got[name] = queue.claim("exp-1", name)

    threads = [threading.Thread(target=take, args=(n,)) for n in ("bob", "carol")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (winner,) = [name for name, lease in got.items() if lease is not None]
    assert [lease.reviewer for lease in expired] == ["alice"]
    with pytest.raises(LeaseLost):
        queue.renew("exp-1", alice.token, "alice")
    renewed = queue.renew("exp-1", got[winner].token, winner)
    clock.now += timedelta(seconds=30)
    assert queue.claim("exp-1", "alice") is None  # renewed: still live for the winner
    assert renewed.expires_at > got[winner].expires_at - timedelta(seconds=1)


def test_release_gives_the_item_back_without_counting_an_expiry(world):
    clock, expired = Clock(), []
    queue = queue_for(world, clock, expired=expired.append)
    queue.enqueue(post_for_review(world, "skip-1", image=png((5, 5, 5))))
    alice = queue.claim("skip-1", "alice")
    assert not queue.release("skip-1", "not-the-token")
    assert queue.release("skip-1", alice.token)
    assert queue.next_for("alice", skip={"skip-1"}) is None
    bob = queue.claim("skip-1", "bob")
    assert bob is not None and bob.token != alice.token and expired == []


def test_the_recorder_writes_history_event_and_done_once(world):
    service = build_service(world)
    try:
        request = post_for_review(world, "rec-1", image=png((1, 1, 1)))
        service.queue.enqueue(request)
        lease = service.queue.claim("rec-1", "alice")
        with pytest.raises(InvalidVerdict):
            service.recorder.record("rec-1", lease.token, Verdict("remove"), reviewer="alice",
                                    at=datetime.now(timezone.utc))
        with pytest.raises(LeaseLost):
            service.recorder.record("rec-1", lease.token, Verdict("allow"), reviewer="bob",
                                    at=datetime.now(timezone.utc))
        outcome = service.recorder.record("rec-1", lease.token, Verdict("remove", ("weapons",), " x "),
                                          reviewer="alice", at=datetime.now(timezone.utc))
        assert outcome.note == "x" and outcome.model_version == "7" and outcome.decision_id == request.decision_id
        with pytest.raises(LeaseLost):  # a re-submitted form
            service.recorder.record("rec-1", lease.token, Verdict("allow"), reviewer="alice",
                                    at=datetime.now(timezone.utc))
        history = LedgerHistory(service.s3, world.s3.buckets.ledger)
        assert [kind for kind, _ in history.entries("rec-1")] == ["review"]
        assert service.queue.done("rec-1").outcome_id == outcome.outcome_id
        assert Ledger(service.s3, world.s3.buckets.ledger).get("rec-1").action == "review"  # first decision kept
        records = read_topic(world, world.kafka.topics.review_outcomes, expect=1, timeout_s=20)
        assert [ReviewOutcome.model_validate_json(r.value).outcome_id for r in records] == [outcome.outcome_id]
    finally:
        service.producer.close(timeout=5)


def test_the_feeder_enqueues_before_committing_and_skips_what_is_not_a_request(world):
    requests = [post_for_review(world, f"feed-{i}", image=png((0, 0, i))) for i in range(3)]
    send_requests(world, requests)
    from kafka import KafkaProducer

    from tagwatch.clients import kafka_config

    producer = KafkaProducer(acks="all", **kafka_config(world.kafka, client_id="test-garbage"))
    producer.send(world.kafka.topics.review, key=b"x", value=b"{not json").get(timeout=20)
    producer.close()
    queue = queue_for(world, Clock())
    invalid: list[str] = []
    feeder = Feeder(world, queue, on_invalid=invalid.append)
    feeder.start()
    try:
        wait_for(lambda: len(queue.pending()) == 3 and invalid, 45, "the feeder to enqueue 3 requests")
    finally:
        feeder.stop()
    assert invalid == ["invalid_request"]
    assert queue.same_image(requests[0].image_uri) == ["feed-0"]
    again = Feeder(world, queue)  # a restart: the offsets were committed, nothing is enqueued twice
    again.consumer = again._consumer()
    try:
        added = 0
        for _ in range(20):
            added += again.poll_once(timeout_ms=1000)
            if again.consumer.assignment():
                added += sum(again.poll_once(timeout_ms=1000) for _ in range(2))
                break
        assigned = again.consumer.assignment()
    finally:
        again.stop()
    assert assigned and added == 0 and len(queue.pending()) == 3


def test_review_queue_cli_prints_the_queue(world):
    import json

    from tests.conftest import run_cli
    from tests.support.review import review_env

    queue = queue_for(world, Clock())
    for i in range(2):
        queue.enqueue(post_for_review(world, f"cli-{i}", image=png((9, i, 9))))
    queue.claim("cli-0", "alice")
    result = run_cli("review", "queue", "--json", env=review_env(world))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["pending"], data["leased"]) == (2, 1)
    assert [(i["post_id"], i["status"], i["reviewer"]) for i in data["items"]] == [
        ("cli-0", "leased", "alice"), ("cli-1", "available", None)]
    text = run_cli("review", "queue", env=review_env(world))
    assert text.returncode == 0 and "cli-1" in text.stdout and "2 pending" in text.stdout
