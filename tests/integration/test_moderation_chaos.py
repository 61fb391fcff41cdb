"""SIGKILL consumers mid-batch, repeatedly: nothing lost, one ledger record per post, duplicates counted.

Real processes (`tagwatch moderate`), real Tansu group rebalances, real SeaweedFS ledger.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest

from tagwatch.clients import s3_client
from tagwatch.moderation.ledger import Ledger
from tagwatch.moderation.publish import new_post, publish_posts, upload_image
from tests.support import colour_model as cm
from tests.support.stream import private_stream, read_topic, stream_env


def _consumer(env, model, policy, log_path, *extra):
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "tagwatch", "moderate", "--onnx", str(model), "--categories", ",".join(cm.CATEGORIES),
             "--policy", str(policy), "--max-poll-records", "8", "--infer-batch", "8", *extra],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )


def _log_tails(paths, chars=2500) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in paths)


def _wait_for(predicate, timeout_s, what, *, interval=0.25):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_sigkill_mid_batch_loses_nothing(stack_settings, tmp_path):
    settings = private_stream(stack_settings, partitions=2)
    s3 = s3_client(settings.s3)
    model, policy = tmp_path / "colour.onnx", tmp_path / "policy.json"
    cm.build(model)
    policy.write_text(cm.POLICY.model_dump_json())
    total = 200
    colours = [cm.RED, cm.BLUE, cm.GREY]
    posts = []
    for n in range(total):
        uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg(colours[n % 3], size=48, seed=n))
        posts.append(new_post(f"chaos-{n:04d}-{settings.kafka.consumer_group}", uri, digest))
    publish_posts(settings, posts)

    ledger = Ledger(s3, settings.s3.buckets.ledger)
    ours = {p.post_id for p in posts}
    decided = lambda: len(ours & set(ledger.post_ids()))  # noqa: E731
    env = stream_env(settings)
    logs = [tmp_path / "steady.log", tmp_path / "victim-0.log"]
    steady = _consumer(env, model, policy, logs[0])  # runs until the end (SIGTERM)
    victim = _consumer(env, model, policy, logs[1], "--idle-exit", "6")
    kills = 0
    try:
        for threshold in (30, 80, 130):
            _wait_for(lambda t=threshold: decided() >= t or victim.poll() is not None, 180, f"{threshold} decisions")
            if victim.poll() is None:
                victim.send_signal(signal.SIGKILL)  # no drain, no commit, no goodbye
                victim.wait()
                kills += 1
            logs.append(tmp_path / f"victim-{len(logs) - 1}.log")
            victim = _consumer(env, model, policy, logs[-1], "--idle-exit", "6")
        _wait_for(lambda: decided() == total, 240, "every post decided")
    except AssertionError as error:
        raise AssertionError(f"{error} ({decided()} of {total} decided, {kills} kills); consumers' logs:\n"
                             f"{_log_tails(logs)}") from None
    finally:
        for proc in (steady, victim):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (steady, victim):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert kills >= 2, "the run finished before the consumer could be killed mid-stream"

    events = read_topic(settings, settings.kafka.topics.decisions, expect=total)
    ids = defaultdict(set)
    counts = defaultdict(int)
    for record in events:
        data = json.loads(record.value)
        ids[data["post_id"]].add(data["decision_id"])
        counts[data["post_id"]] += 1
    assert set(ids) >= ours, f"{len(ours - set(ids))} posts have no decision event"
    assert all(len(ids[p]) == 1 for p in ours)  # duplicates carry the same id: droppable downstream
    assert len(ours & set(ledger.post_ids())) == total
    duplicates = sum(counts[p] - 1 for p in ours)
    print(f"\nchaos: {kills} SIGKILLs, {total} posts, {len(events)} decision events, {duplicates} duplicates")


@pytest.mark.slow
def test_a_member_stopped_mid_rebalance_does_not_wedge_the_group(stack_settings, tmp_path):
    """SIGTERM the group's leader while the rebalance caused by a new member is in progress.

    On Tansu a LeaveGroup from that leader wedges the group for good (moderation/group.py): the new member then
    re-joins forever and nobody owns a partition. The consumer must close without LeaveGroup there, so the
    broker expires it and the new member takes every partition.
    """
    settings = private_stream(stack_settings, partitions=2)
    s3 = s3_client(settings.s3)
    model, policy = tmp_path / "colour.onnx", tmp_path / "policy.json"
    cm.build(model)
    policy.write_text(cm.POLICY.model_dump_json())
    env = stream_env(settings)
    logs = [tmp_path / "leader.log", tmp_path / "newcomer.log"]
    leader = _consumer(env, model, policy, logs[0])
    newcomer = None
    try:
        _wait_for(lambda: "partitions assigned" in logs[0].read_text(errors="replace"), 60, "the leader's assignment")
        newcomer = _consumer(env, model, policy, logs[1])
        # the newcomer's join makes the broker rebalance: the leader revokes its partitions and re-joins
        _wait_for(lambda: logs[0].read_text(errors="replace").count("partitions revoked") >= 2, 60,
                  "the leader to start re-joining", interval=0.02)
        leader.send_signal(signal.SIGTERM)
        assert leader.wait(timeout=60) == 0
        posts = []
        for n in range(12):
            uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg(cm.GREY, size=48, seed=900 + n))
            posts.append(new_post(f"wedge-{n:02d}-{settings.kafka.consumer_group}", uri, digest))
        publish_posts(settings, posts)
        ledger = Ledger(s3, settings.s3.buckets.ledger)
        ours = {p.post_id for p in posts}
        _wait_for(lambda: ours <= set(ledger.post_ids()), 90, "the newcomer to decide every post")
    except AssertionError as error:
        raise AssertionError(f"{error}; consumers' logs:\n{_log_tails(logs)}") from None
    finally:
        for proc in (leader, newcomer):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
