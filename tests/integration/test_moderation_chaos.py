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


def _consumer(env, model, policy, log):
    return subprocess.Popen(
        [sys.executable, "-m", "tagwatch", "moderate", "--onnx", str(model), "--categories", ",".join(cm.CATEGORIES),
         "--policy", str(policy), "--max-poll-records", "8", "--infer-batch", "8", "--idle-exit", "6"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def _wait_for(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
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
    logs = open(tmp_path / "consumers.log", "wb")
    steady = _consumer(env, model, policy, logs)
    victim = _consumer(env, model, policy, logs)
    kills = 0
    try:
        for threshold in (30, 80, 130):
            _wait_for(lambda t=threshold: decided() >= t or victim.poll() is not None, 180, f"{threshold} decisions")
            if victim.poll() is None:
                victim.send_signal(signal.SIGKILL)  # no drain, no commit, no goodbye
                victim.wait()
                kills += 1
            victim = _consumer(env, model, policy, logs)
        _wait_for(lambda: decided() == total, 240, "every post decided")
    finally:
        for proc in (steady, victim):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (steady, victim):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        logs.close()
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
