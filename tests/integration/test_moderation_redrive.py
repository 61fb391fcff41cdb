"""DLQ re-drive on the real embedded stack (SeaweedFS + Tansu), the CLI run as a user runs it.

Posts whose images are not in S3 yet dead-letter as image_missing; the images are uploaded (the fix); two
re-drives of image_missing run at once (the library call `tagwatch dlq redrive` makes, in two threads); the
consumer runs again. Every fixed post is decided
exactly once, nothing is re-driven twice, and a record already re-driven the maximum number of times stays dead.
"""

from __future__ import annotations

import hashlib
import json
import threading

import pytest

from tagwatch.clients import kafka_config, s3_client
from tagwatch.moderation.claims import ClaimStore
from tagwatch.moderation.consumer import ConsumerOptions, ModerationConsumer
from tagwatch.moderation.dlq import REDRIVE_COUNT_HEADER, read_dead_letters
from tagwatch.moderation.events import Decision, EventType, encode
from tagwatch.moderation.ledger import Ledger
from tagwatch.moderation.publish import new_post, publish_posts, upload_image
from tagwatch.moderation.readback import audit_stream
from tagwatch.moderation.redrive import redrive
from tagwatch.moderation.scoring import OnnxScorer
from tests.conftest import run_cli
from tests.support import colour_model as cm
from tests.support.stream import private_stream, read_topic, stream_env


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "colour.onnx"
    return OnnxScorer(path, cm.CATEGORIES, cm.build(path))


def _run(settings, scorer):
    consumer = ModerationConsumer(settings, scorer, cm.POLICY, options=ConsumerOptions(max_poll_records=16))
    return consumer.run(threading.Event(), idle_exit_s=4.0)


def _cli_json(settings, *args):
    result = run_cli(*args, "--quiet", "1.5", env=stream_env(settings), timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_redrive_after_the_fix_decides_each_post_once_and_never_twice(stack_settings, scorer, monkeypatch):
    from kafka import KafkaProducer

    settings = private_stream(stack_settings, partitions=2)
    s3 = s3_client(settings.s3)
    posts_bucket, tag = settings.s3.buckets.posts, settings.kafka.consumer_group
    prefix = f"images/redrive-{tag}"

    def address(blob: bytes) -> tuple[str, str]:  # where upload_image will put it: not there yet
        digest = hashlib.sha256(blob).hexdigest()
        return f"s3://{posts_bucket}/{prefix}/{digest}.jpg", digest

    blobs = {f"fix-{n}-{tag}": cm.jpeg(colour, seed=500 + n) for n, colour in enumerate([cm.RED, cm.BLUE, cm.GREY] * 2)}
    fixed = [new_post(post_id, *address(blob)) for post_id, blob in blobs.items()]
    tired_blob = cm.jpeg(cm.BLUE, seed=599)
    tired = new_post(f"tired-{tag}", *address(tired_blob))  # re-driven 3 times already: stays dead
    uri, digest = upload_image(s3, posts_bucket, cm.jpeg(cm.GREY, seed=598), prefix=prefix)
    fine = new_post(f"fine-{tag}", uri, digest)
    assert publish_posts(settings, [*fixed, fine]) == 7
    producer = KafkaProducer(acks="all", **kafka_config(settings.kafka, client_id="test-redrive"))
    value, headers = encode(tired, EventType.POST_CREATED, subject=tired.post_id)
    producer.send(settings.kafka.topics.posts, key=tired.post_id.encode(), value=value,
                  headers=[*headers, (REDRIVE_COUNT_HEADER, b"3")])
    value, headers = encode(fixed[0], EventType.POST_CREATED, subject="junk")
    producer.send(settings.kafka.topics.posts, key=b"junk-" + tag.encode(), value=b"{not json", headers=headers)
    producer.flush()
    producer.close()

    first = _run(settings, scorer)
    assert (first.decided, first.dead_lettered) == (1, 8), first
    originals = {e.post_id: e.embedded_original() for e in read_dead_letters(settings.kafka, quiet_s=1.5)}
    assert set(originals) == {p.post_id for p in fixed} | {tired.post_id, f"junk-{tag}"}

    # the fix: the images arrive
    for blob in [*blobs.values(), tired_blob]:
        upload_image(s3, posts_bucket, blob, prefix=prefix)

    dry = _cli_json(settings, "dlq", "redrive", "--reason", "image_missing", "--dry-run", "--json")
    assert dry["counts"] == {"would_redrive": 6, "at_max_redrives": 1}, dry
    store = ClaimStore(s3, settings.s3.buckets.ledger)
    assert store.for_topic(settings.kafka.topics.dead_letter) == {}  # a dry run claims nothing

    # Two runs at once. Started as two subprocesses they rarely overlap (the later one sees the earlier one's
    # claims: already_redriven), so the runs are two threads held at a barrier after each has read the existing
    # claims: both plan every dead letter, and only SeaweedFS's conditional PUT can keep them apart.
    reports: list[dict] = [None, None]
    barrier = threading.Barrier(2, timeout=120)
    read_claims = ClaimStore.for_topic

    def read_claims_then_wait(self, topic, **kwargs):
        claims = read_claims(self, topic, **kwargs)
        barrier.wait()
        return claims

    def run_redrive(i: int) -> None:
        reports[i] = redrive(settings, reason="image_missing", quiet_s=1.5).to_dict()

    with monkeypatch.context() as patch:
        patch.setattr(ClaimStore, "for_topic", read_claims_then_wait)
        threads = [threading.Thread(target=run_redrive, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert all(r is not None and r["selected"] == 7 for r in reports), reports
    lost = [o["post_id"] for r in reports for o in r["outcomes"] if o["status"] == "claimed_by_another_run"]
    assert len(lost) == 6, reports  # every dead letter was planned by both runs; each claim went to one
    redriven = [o["post_id"] for r in reports for o in r["outcomes"] if o["status"] == "redriven"]
    assert sorted(redriven) == sorted(p.post_id for p in fixed), reports  # each once, across both runs
    for report in reports:
        assert {o["status"] for o in report["outcomes"]} <= {"redriven", "claimed_by_another_run",
                                                             "already_redriven", "at_max_redrives"}, report
        assert [o["post_id"] for o in report["outcomes"] if o["status"] == "at_max_redrives"] == [tired.post_id]
    claims = store.for_topic(settings.kafka.topics.dead_letter)
    assert sorted(c.post_id for c in claims.values()) == sorted(redriven)
    assert all(c.published is not None and c.redrive_count == 1 for c in claims.values())

    # the re-driven records on the posts topic: the originals byte for byte plus the count header
    posts = read_topic(settings, settings.kafka.topics.posts, expect=9 + 6)
    again = [r for r in posts if (REDRIVE_COUNT_HEADER, b"1") in list(r.headers)]
    assert sorted(r.key.decode() for r in again) == sorted(redriven)
    for record in again:
        original = originals[record.key.decode()]
        assert record.value == original.value
        assert list(record.headers) == [*original.headers, (REDRIVE_COUNT_HEADER, b"1")]
        claim = next(c for c in claims.values() if c.post_id == record.key.decode())
        assert (claim.published.partition, claim.published.offset) == (record.partition, record.offset)

    second = _run(settings, scorer)
    assert (second.consumed, second.decided, second.dead_lettered) == (6, 6, 0), second

    ledger = Ledger(s3, settings.s3.buckets.ledger)
    for post in [*fixed, fine]:
        assert ledger.get(post.post_id) is not None, post.post_id
    assert ledger.get(tired.post_id) is None
    decisions = read_topic(settings, settings.kafka.topics.decisions, expect=7)
    events = [Decision.model_validate_json(r.value) for r in decisions]
    assert sorted(d.post_id for d in events) == sorted(p.post_id for p in [*fixed, fine])  # each decided once

    # a later run finds nothing left to do; the one at the maximum is still reported, still dead
    third = _cli_json(settings, "dlq", "redrive", "--reason", "image_missing", "--json")
    assert third["counts"] == {"already_redriven": 6, "at_max_redrives": 1}, third

    listed = _cli_json(settings, "dlq", "list", "--json")
    assert listed["total"] == 8 and listed["by_reason"] == {"image_missing": 7, "bad_json": 1}, listed
    rows = {row["post_id"]: row for row in listed["dead_letters"]}
    assert rows[tired.post_id]["redrive_count"] == 3 and rows[tired.post_id]["redriven"] is None
    assert all(rows[p.post_id]["redriven"]["published"] is not None for p in fixed)

    result = run_cli("ledger", "redrives", fixed[0].post_id, "--json", env=stream_env(settings))
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert len(shown["redrives"]) == 1 and shown["redrives"][0]["published"]["topic"] == settings.kafka.topics.posts
    assert shown["decision"]["post_id"] == fixed[0].post_id

    result = run_cli("dlq", "show", tired.post_id, "--quiet", "1.5", env=stream_env(settings))
    assert result.returncode == 0, result.stderr
    detail = json.loads(result.stdout)
    assert detail["reason"] == "image_missing" and detail["original_headers"][REDRIVE_COUNT_HEADER] == "3"
    assert detail["original_value"]["post_id"] == tired.post_id

    # the stream audit agrees: nothing lost, ledger = first decision, no commit past an undecided record
    report = audit_stream(settings, expected={p.post_id for p in [*fixed, fine, tired]}, quiet_s=1.5)
    assert (report.lost, report.ledger_mismatches, report.commit_violations) == (0, 0, 0), report.to_dict()
    assert report.conflicting_decision_ids == 0 and report.ledger_records == 7, report.to_dict()

    # a higher maximum lets the tired one go, from the CLI, with its count raised from 3 to 4
    result = run_cli("dlq", "redrive", "--reason", "image_missing", "--max-redrives", "4", "--quiet", "1.5",
                     env=stream_env(settings))
    assert result.returncode == 0, result.stderr
    assert f"{tired.post_id}: redriven count 4 -> " in result.stdout, result.stdout
    assert "7 selected: already_redriven 6, redriven 1" in result.stdout, result.stdout
    posts = read_topic(settings, settings.kafka.topics.posts, expect=9 + 7)
    assert [r.key for r in posts if (REDRIVE_COUNT_HEADER, b"4") in list(r.headers)] == [tired.post_id.encode()]
    assert _run(settings, scorer).decided == 1 and ledger.get(tired.post_id) is not None

    result = run_cli("dlq", "redrive", "--reason", "image_too_small", "--quiet", "1.5", env=stream_env(settings))
    assert result.returncode == 0 and "nothing done" in result.stdout, result.stderr  # empty: not an error


def test_a_stale_claim_is_taken_over_by_exactly_one_of_two_racing_runs(stack_settings):
    """The killed-run case: a claim never published. SeaweedFS's If-Match lets one of two takers win, not both."""
    import uuid
    from datetime import timedelta

    from tagwatch.moderation.claims import RecordAddress, RedriveClaim, now

    store = ClaimStore(s3_client(stack_settings.s3), stack_settings.s3.buckets.ledger)
    topic = f"stale-{uuid.uuid4().hex[:8]}.dlq"
    stale = RedriveClaim(dead_letter=RecordAddress(topic=topic, partition=0, offset=7),
                         original=RecordAddress(topic="posts", partition=1, offset=70), post_id="post-stale",
                         reason="image_missing", redrive_count=1, claimed_by="killed-run",
                         claimed_at=now() - timedelta(hours=1), run_id="dead")
    assert store.claim(stale) and not store.claim(stale)
    takers = [stale.model_copy(update={"claimed_by": f"run-{i}", "claimed_at": now(), "run_id": f"r{i}",
                                       "took_over": "killed-run"}) for i in range(2)]
    barrier, won = threading.Barrier(2, timeout=60), [None, None]

    def take(i: int) -> None:
        barrier.wait()
        won[i] = store.take_over(stale, takers[i])

    threads = [threading.Thread(target=take, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won) == [False, True], won
    (stored,) = store.for_topic(topic).values()
    assert stored == takers[won.index(True)]
    assert not store.take_over(stale, takers[0])  # the stale claim is gone: nobody takes it over again
    assert [c.claimed_by for c in store.for_post("post-stale")] == [stored.claimed_by]
