"""The stream on the real serving path: registry `production` alias -> the stack's Triton (PyTriton) -> two
`tagwatch moderate` processes; Triton is killed and restarted mid-run. Nothing is lost, every decision is
labelled with the registry version and policy that made it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tagwatch.clients import s3_client
from tagwatch.moderation.ledger import Ledger
from tagwatch.moderation.publish import new_post, publish_posts, upload_image
from tagwatch.registry import ModelRegistry
from tagwatch.stack import with_stack_endpoints
from tagwatch.stack.state import read_state
from tests.conftest import make_settings, run_cli
from tests.support import colour_model as cm
from tests.support.serving_models import export_tiny
from tests.support.stream import private_stream, read_topic, stream_env


def _wait_for(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_stream_through_triton_survives_a_triton_restart(tmp_path):
    base = make_settings(tmp_path / "state", kafka={"partitions": 2})
    env0 = {**stream_env(base), "TAGWATCH_KAFKA__PARTITIONS": "2"}
    assert run_cli("stack", "up", env=env0).returncode == 0
    consumers = []
    try:
        settings = with_stack_endpoints(base)
        registry = ModelRegistry(s3_client(settings.s3), bucket=settings.s3.buckets.models,
                                 model_name=settings.triton.model_name)
        registry.register(export_tiny(tmp_path / "export", model_name=settings.triton.model_name).out_dir,
                          alias="production")
        up = run_cli("stack", "up", env=env0)
        assert up.returncode == 0 and "started triton" in up.stdout, up.stdout + up.stderr

        settings = private_stream(with_stack_endpoints(base), partitions=2)
        env = stream_env(settings)
        s3 = s3_client(settings.s3)
        total = 80
        posts = []
        for n in range(total):
            uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg([cm.RED, cm.BLUE, cm.GREY][n % 3], seed=500 + n))
            posts.append(new_post(f"tri-{n:03d}-{settings.kafka.consumer_group}", uri, digest))
        log = open(tmp_path / "consumers.log", "wb")
        for _ in range(2):
            consumers.append(subprocess.Popen(
                [sys.executable, "-m", "tagwatch", "moderate", "--max-poll-records", "8", "--idle-exit", "8"],
                env=env, stdout=log, stderr=subprocess.STDOUT))
        publish_posts(settings, posts[:40])
        ledger = Ledger(s3, settings.s3.buckets.ledger)
        ours = {p.post_id for p in posts}
        decided = lambda: len(ours & set(ledger.post_ids()))  # noqa: E731
        _wait_for(lambda: decided() >= 10, 120, "first decisions")

        # Triton dies (SIGKILL, whole family) while posts keep arriving; `stack up` brings it back.
        triton = psutil.Process(read_state(settings.paths.stack_file).services["triton"].process.pid)
        family = [triton, *triton.children(recursive=True)]
        for proc in family:
            proc.kill()
        psutil.wait_procs(family, timeout=15)
        publish_posts(settings, posts[40:])
        time.sleep(3)  # consumers hit the outage: pause, back off, retry
        assert decided() < total
        up = run_cli("stack", "up", env=env0)
        assert up.returncode == 0 and "started triton" in up.stdout, up.stdout + up.stderr
        _wait_for(lambda: decided() == total, 180, "every post decided after the restart")
        for proc in consumers:
            proc.wait(timeout=90)
        log.close()
        assert all(proc.returncode == 0 for proc in consumers), (tmp_path / "consumers.log").read_text()[-3000:]

        events = read_topic(settings, settings.kafka.topics.decisions, expect=total)
        by_post = {}
        for record in events:
            data = json.loads(record.value)
            by_post.setdefault(data["post_id"], set()).add(data["decision_id"])
            assert data["model"]["name"] == settings.triton.model_name and data["model"]["version"] == "1"
            assert data["policy_version"] == "policy-1"
        assert set(by_post) >= ours and all(len(by_post[p]) == 1 for p in ours)
        text = (tmp_path / "consumers.log").read_text()
        assert "retrying" in text  # the outage was seen and ridden out, not skipped
        print(f"\ntriton restart: {total} posts, {len(events)} decision events, "
              f"{len(events) - total} duplicates")
    finally:
        for proc in consumers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        assert run_cli("stack", "down", env=env0).returncode == 0
