"""2,000 real held-out posts through a model trained here, served by Triton, decided by two consumer processes.

The whole loop on the real parts, as small as stays honest: openclipart SVGs ingested (the ingest CLI's library call, at 128 px), a dataset
built from them (most posts held out, so 2,000 held-out posts fit in a corpus small enough to render here; the
`data build` CLI has no split flags, so the build runs through its library call), a tiny CNN pretrained on the
train split's hashtags and fine-tuned to the moderation categories (the trainer CLI, a few dozen steps: the
model is weak, which is not what this test is about), exported with the parity check, registered and promoted
with the CLI, served by the stack's Triton. Then every held-out post is published and two `tagwatch moderate`
processes decide them; the stream audit then finds none lost, each ledger record equal to the post's first
decision event, one decision id per post, and no commit past an undecided post.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tagwatch.clients import s3_client
from tagwatch.moderation.ledger import Ledger
from tagwatch.moderation.publish import holdout_posts, publish_posts
from tagwatch.stack import with_stack_endpoints
from tests.conftest import make_settings, run_cli
from tests.support.stream import assert_audit_clean, read_topic, stream_env

POSTS = 2000
INGEST = 2450  # openclipart items; about 2,100 of them land in the holdout with the fractions below


def _check(result, what):
    assert result.returncode == 0, f"{what} failed:\n{result.stdout[-1500:]}\n{result.stderr[-2500:]}"
    return result


def _trainer(kind, args, env, log_path):
    with open(log_path, "wb") as log:
        done = subprocess.run([sys.executable, "-m", "tagwatch.train", kind, *args], env=env, stdout=log,
                              stderr=subprocess.STDOUT, timeout=600)
    assert done.returncode == 0, log_path.read_text(errors="replace")[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_thousand_holdout_posts_through_a_trained_model_on_triton(tmp_path):
    from tagwatch.data.build import BuildConfig
    from tagwatch.data.mapreduce import build_dataset
    from tagwatch.data.ingest import ingest_source
    from tagwatch.data.wordnet import load_wordnet

    base = make_settings(tmp_path / "state", kafka={"partitions": 2})
    env = {**stream_env(base), "TAGWATCH_KAFKA__PARTITIONS": "2", "GLOO_SOCKET_IFNAME": "lo"}
    _check(run_cli("stack", "up", env=env), "stack up")
    consumers = []
    timings = {}
    try:
        settings = with_stack_endpoints(base)
        s3 = s3_client(settings.s3)
        t = time.monotonic()
        # what `tagwatch data ingest --source openclipart --limit N` runs, rendering at 128 px (the CLI renders at
        # 256; a quarter of the pixels makes the render + PDQ of 2,450 SVGs affordable on 2 cores)
        ingest = ingest_source(client=s3, bucket=settings.s3.buckets.posts, source="openclipart", limit=INGEST,
                               workers=2, size=128, author_key=settings.privacy.author_key)
        assert ingest.ingested >= INGEST * 0.9, ingest
        timings["ingest"] = time.monotonic() - t
        t = time.monotonic()
        config = BuildConfig(name="hashtags", holdout_fraction=0.85, positive_holdout_fraction=0.85,
                             val_fraction=0.03, positive_val_fraction=0.03, shard_samples=500, min_shards=2)
        report = build_dataset(client=s3, posts_bucket=settings.s3.buckets.posts,
                               datasets_bucket=settings.s3.buckets.datasets, config=config, wordnet=load_wordnet())
        dataset = f"hashtags/{report.version}"
        timings["build"] = time.monotonic() - t

        t = time.monotonic()
        common = ["--batch-size", "32", "--workers", "1", "--log-every", "5", "--no-progress"]
        _trainer("pretrain", ["--dataset", dataset, "--arch", "tiny_cnn", "--width", "8", "--image-size", "128",
                              "--steps", "40", "--warmup-steps", "2", "--run-id", "holdout-pretrain", "--output-dir",
                              str(tmp_path / "pretrain"), "--calibrate-steps", "0", "--no-evaluate", *common],
                 env, tmp_path / "pretrain.log")
        _trainer("transfer", ["--dataset", dataset, "--init", f"s3://{settings.s3.buckets.checkpoints}/holdout-pretrain",
                              "--mode", "finetune", "--steps", "30", "--run-id", "holdout-transfer", "--output-dir",
                              str(tmp_path / "transfer"), "--review-budget", "0.05", *common],
                 env, tmp_path / "transfer.log")
        summary = json.loads((tmp_path / "transfer" / "summary.json").read_text())
        timings["train"] = time.monotonic() - t

        t = time.monotonic()
        _check(run_cli("model", "export", "--checkpoint", summary["checkpoint"], "--out", str(tmp_path / "export"),
                       "--policy", str(tmp_path / "transfer" / "policy.json"), env=env, timeout=300), "model export")
        registered = _check(run_cli("model", "register", str(tmp_path / "export"), env=env), "model register")
        match = re.search(r"registered \S+ version (\d+)", registered.stdout)
        assert match, registered.stdout
        version = int(match.group(1))
        _check(run_cli("model", "promote", str(version), "--reason", "holdout stream test", env=env), "model promote")
        up = _check(run_cli("stack", "up", env=env), "stack up with the model")
        assert "started triton" in up.stdout, up.stdout
        timings["export+serve"] = time.monotonic() - t

        held = holdout_posts(settings, dataset="hashtags", version=report.version)
        assert len(held) >= POSTS, f"the build held out only {len(held)} posts ({report.splits})"
        posts = [post for post, _ in held[:POSTS]]
        assert len({p.post_id for p in posts}) == POSTS

        t = time.monotonic()
        logs = [tmp_path / "consumer-0.log", tmp_path / "consumer-1.log"]
        for path in logs:
            with open(path, "wb") as log:
                consumers.append(subprocess.Popen([sys.executable, "-m", "tagwatch", "moderate"], env=env, stdout=log,
                                                  stderr=subprocess.STDOUT))
        assert publish_posts(settings, posts) == POSTS
        ledger = Ledger(s3, settings.s3.buckets.ledger)
        ours = {p.post_id for p in posts}
        deadline = time.monotonic() + 300
        while len(ours & set(ledger.post_ids())) < POSTS:
            assert time.monotonic() < deadline and all(c.poll() is None for c in consumers), \
                "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in logs)
            time.sleep(1)
        timings["stream"] = time.monotonic() - t
        for consumer in consumers:
            consumer.send_signal(signal.SIGTERM)
        assert all(c.wait(timeout=60) == 0 for c in consumers)
        stats = [json.loads(p.read_text().strip().splitlines()[-1]) for p in logs]
        assert all(s["decided"] > 0 for s in stats), stats  # both processes took part

        events = read_topic(settings, settings.kafka.topics.decisions, expect=POSTS, timeout_s=120)
        assert all(json.loads(r.value)["model"]["version"] == str(version) for r in events)
        audit = assert_audit_clean(settings, ours)  # nothing lost, ledger == first event, no bad commit
        actions = Counter(ledger.get(post_id).action for post_id in ours)
        duplicates = audit.duplicate_events
        print(f"\nholdout stream: {POSTS} posts ({report.splits}), model v{version}, 0 lost, "
              f"{len(events)} decision events, {duplicates} duplicates, actions {dict(actions)}, "
              f"per consumer {[s['decided'] for s in stats]}, seconds {({k: round(v) for k, v in timings.items()})}")
    finally:
        for consumer in consumers:
            if consumer.poll() is None:
                consumer.send_signal(signal.SIGTERM)
                try:
                    consumer.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    consumer.kill()
        assert run_cli("stack", "down", env=env).returncode == 0
