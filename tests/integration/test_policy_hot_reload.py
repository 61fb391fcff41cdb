"""A policy promoted while a consumer runs decides its next batch, with no restart, on the real serving path:
registry `production` -> the stack's Triton -> one `tagwatch moderate` process. Then a policy alias that names
a policy for another model (moved behind the CLI's back, as a stale alias would) is refused by the consumer,
which keeps deciding with the served version's own policy and says why in its log."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from tagwatch.clients import s3_client
from tagwatch.moderation.ledger import Ledger
from tagwatch.moderation.publish import new_post, publish_posts, upload_image
from tagwatch.registry import ModelRegistry
from tagwatch.registry.policies import PolicyStore
from tagwatch.stack import with_stack_endpoints
from tests.conftest import make_settings, run_cli
from tests.support import colour_model as cm
from tests.support.policies import policy_document
from tests.support.serving_models import CATEGORIES, export_tiny, serve_tiny_model
from tests.support.stream import private_stream, read_topic, stream_env, wait_for


def _publish(settings, s3, tag: str, n: int, seed: int) -> set[str]:
    posts = []
    for i in range(n):
        uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg(cm.GREY, seed=seed + i))
        posts.append(new_post(f"{tag}-{i:02d}-{settings.kafka.consumer_group}", uri, digest))
    assert publish_posts(settings, posts) == n
    return {p.post_id for p in posts}


def _log(path) -> str:
    """The consumer's log with whitespace collapsed (its rich handler wraps lines at 80 columns in a file)."""
    return " ".join(path.read_text(errors="replace").split())


def test_a_promoted_policy_decides_the_next_batch_without_a_restart(tmp_path):
    base = make_settings(tmp_path / "state")
    env0 = stream_env(base)
    consumer = None
    try:
        serve_tiny_model(base, env0, tmp_path / "export")
        settings = private_stream(with_stack_endpoints(base), partitions=1)
        env = {**stream_env(settings), "TAGWATCH_MODERATION__POLICY_POLL_S": "0.5"}
        s3 = s3_client(settings.s3)
        registry = ModelRegistry(s3, bucket=settings.s3.buckets.models, model_name=settings.triton.model_name)
        store = PolicyStore(registry)
        ledger = Ledger(s3, settings.s3.buckets.ledger)
        log_path = tmp_path / "consumer.log"
        with open(log_path, "wb") as log:
            consumer = subprocess.Popen([sys.executable, "-m", "tagwatch", "moderate", "--max-poll-records", "8"],
                                        env=env, stdout=log, stderr=subprocess.STDOUT)

        def decided(ids):
            return lambda: ids <= set(ledger.post_ids())

        def events_for(ids, expect_total):
            events = [json.loads(r.value) for r in read_topic(settings, settings.kafka.topics.decisions,
                                                              expect=expect_total)]
            return [e for e in events if e["post_id"] in ids]

        first = _publish(settings, s3, "before", 6, seed=0)
        wait_for(decided(first), 120, "the first posts decided", logs=[log_path])
        before = events_for(first, 6)
        assert {e["policy_version"] for e in before} == {"policy-1"}  # no policy alias: the version's own

        # promote a registered policy (everything scoring >= 0 is removed) while the consumer runs
        (tmp_path / "remove-all.json").write_text(json.dumps(policy_document(CATEGORIES, review=0.0, remove=0.0)))
        done = run_cli("policy", "register", str(tmp_path / "remove-all.json"), "--model-version", "1",
                       "--alias", "production", "--reason", "test: remove everything", env=env)
        assert done.returncode == 0, done.stderr
        promoted_id = f"{settings.triton.model_name}-policy-1"

        second = _publish(settings, s3, "after", 6, seed=100)
        wait_for(decided(second), 120, "the posts after the promote decided", logs=[log_path])
        after = events_for(second, 12)
        assert {e["policy_version"] for e in after} == {promoted_id}
        assert {e["action"] for e in after} == {"remove"}
        assert all(any(r.startswith("policy:") for r in e["reasons"]) for e in after)
        assert consumer.poll() is None  # the same process: no restart
        assert f"policy {promoted_id} (policy version 1" in _log(log_path)

        # a policy for model version 2 named by the alias behind the CLI's back: the consumer refuses it
        registry.register(export_tiny(tmp_path / "v2", model_name=settings.triton.model_name, seed=1).out_dir)
        foreign = store.register(policy_document(CATEGORIES, review=0.0, remove=0.0), model_version=2,
                                 source="import")
        store._move_alias(foreign.number, alias="production", reason="test: bypasses the promote check")
        third = _publish(settings, s3, "refused", 4, seed=200)
        wait_for(decided(third), 120, "the posts after the refusal decided", logs=[log_path])
        assert {e["policy_version"] for e in events_for(third, 16)} == {"policy-1"}
        log_text = _log(log_path)
        assert log_text.count(f"refusing policy {foreign.policy_id}") == 1  # once per (policy, model)
        assert "calibrated for" in log_text and "version 2" in log_text

        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=90) == 0, log_path.read_text(errors="replace")[-3000:]
    finally:
        if consumer is not None and consumer.poll() is None:
            consumer.kill()
            consumer.wait()
        assert run_cli("stack", "down", env=env0).returncode == 0
