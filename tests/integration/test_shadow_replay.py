"""`tagwatch shadow run` on the real stack: production (the tiny model, policy-1) decides 200 posts through Triton
and a consumer; a candidate (the same model with a stricter policy, registry version 2) is replayed over them on
Triton's shadow model. The diff's counts equal a direct recomputation (the candidate's ONNX in-process +
``policy.decide`` against the ledger), a post production never decided and a dead-lettered record are reported as
such, the shadow run published no decision and wrote no ledger record, the report is in S3 where the gate finds it,
and bad input exits with the documented codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from datetime import datetime, timezone

import numpy as np
import pytest

from tagwatch.clients import kafka_config, s3_client
from tagwatch.moderation.core import ImageSource
from tagwatch.moderation.events import ModelRef, ReviewOutcome
from tagwatch.moderation.ledger import Ledger, LedgerHistory
from tagwatch.moderation.policy import Policy, decide
from tagwatch.moderation.publish import new_post, publish_posts, upload_image
from tagwatch.moderation.scoring import OnnxScorer
from tagwatch.pipeline.gate import shadow_check
from tagwatch.preprocess import Preset
from tagwatch.registry import open_registry
from tagwatch.serving.client import ModelClient
from tagwatch.settings import GateSettings
from tagwatch.shadow.report import latest_report
from tagwatch.stack import with_stack_endpoints
from tests.conftest import make_settings, run_cli
from tests.support import colour_model as cm
from tests.support.serving_models import serve_tiny_model
from tests.support.stream import private_stream, read_topic, stream_env, wait_for

CANDIDATE_POLICY = {"version": "policy-2", "categories": {
    "weapons": {"remove_threshold": 0.9, "review_threshold": 0.5},
    "violence": {"remove_threshold": 0.55, "review_threshold": 0.52},
    "alcohol": {"remove_threshold": 0.9, "review_threshold": 0.6},
}}
TOTAL = 200


def _register_variant(registry, export_dir, tmp_path, name: str, *, policy=None, max_batch_size=None) -> int:
    """The tiny export registered again with another policy or served config."""
    variant = tmp_path / name
    shutil.copytree(export_dir, variant)
    if policy is not None:
        (variant / "policy.json").write_text(json.dumps(policy))
    if max_batch_size is not None:
        info = json.loads((variant / "export.json").read_text())
        info["layout"]["max_batch_size"] = max_batch_size
        (variant / "export.json").write_text(json.dumps(info))
    return registry.register(variant).version


def _recompute(settings, registry, version: int, posts, ledger) -> Counter:
    """production -> candidate transitions from the candidate's ONNX in-process and the ledger."""
    local = registry.fetch(version, dest=settings.paths.state_dir / "recompute")
    scorer = OnnxScorer(local.onnx_path, local.categories(), ModelRef(name="c", version=str(version), sha256="x"))
    policy = Policy.model_validate(local.policy)
    preset = Preset.from_dict(local.metadata.preset)
    images = ImageSource(s3_client(settings.s3), settings.s3.buckets.posts)
    pixels = np.stack([preset(images(post).image) for post in posts])
    scores = scorer.score(pixels)
    transitions = Counter()
    for post, row in zip(posts, scores, strict=True):
        action, _ = decide(dict(zip(scorer.categories, map(float, row), strict=True)), policy)
        transitions[f"{ledger.get(post.post_id).action}->{action}"] += 1
    return transitions


def _outcome(decision, action: str) -> ReviewOutcome:
    now = datetime.now(timezone.utc)
    return ReviewOutcome(outcome_id=uuid.uuid4().hex, post_id=decision.post_id, decision_id=decision.decision_id,
                         action=action, categories=[next(iter(decision.scores))] if action == "remove" else [],
                         reviewer="alice", reviewed_at=now, requested_at=decision.decided_at,
                         time_to_decision_s=(now - decision.decided_at).total_seconds(),
                         image_uri="s3://posts/images/x.jpg", model_version=decision.model.version,
                         policy_version=decision.policy_version, scores=decision.scores)


@pytest.mark.slow
def test_shadow_run_diff_equals_a_direct_recomputation(tmp_path) -> None:
    base = make_settings(tmp_path / "state", kafka={"partitions": 2})
    env0 = {**stream_env(base), "TAGWATCH_KAFKA__PARTITIONS": "2"}
    consumer = None
    try:
        serve_tiny_model(base, env0, tmp_path / "export")
        settings = private_stream(with_stack_endpoints(base), partitions=2)
        env = stream_env(settings)
        s3 = s3_client(settings.s3)
        registry = open_registry(settings)
        candidate = _register_variant(registry, tmp_path / "export", tmp_path, "candidate", policy=CANDIDATE_POLICY)
        other_config = _register_variant(registry, tmp_path / "export", tmp_path, "other-config", max_batch_size=16)

        posts = []
        for n in range(TOTAL + 1):
            uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg([cm.RED, cm.BLUE, cm.GREY][n % 3],
                                                                               seed=700 + n))
            posts.append(new_post(f"sh-{n:03d}-{settings.kafka.consumer_group}", uri, digest))
        decided, undecided = posts[:TOTAL], posts[TOTAL]
        assert publish_posts(settings, decided) == TOTAL
        _publish_poison(settings)
        ledger = Ledger(s3, settings.s3.buckets.ledger)
        ours = {p.post_id for p in decided}
        with open(tmp_path / "consumer.log", "wb") as log:
            consumer = subprocess.Popen([sys.executable, "-m", "tagwatch", "moderate", "--idle-exit", "3"], env=env,
                                        stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: len(ours & set(ledger.post_ids())) == TOTAL, 120, "production decides 200 posts",
                 logs=[tmp_path / "consumer.log"])
        assert consumer.wait(timeout=60) == 0
        assert publish_posts(settings, [undecided]) == 1  # after the consumer left: production never decides it
        events_before = len(read_topic(settings, settings.kafka.topics.decisions, expect=TOTAL))
        ledger_before = set(ledger.post_ids())

        # two decided posts carry a reviewer outcome in the ledger history: the report measures agreement on them
        reviewed = {decided[0].post_id: "remove", decided[1].post_id: "allow"}
        history = LedgerHistory(s3, settings.s3.buckets.ledger)
        for post_id, action in reviewed.items():
            history.append_review(_outcome(ledger.get(post_id), action))

        out = tmp_path / "report"
        run = run_cli("shadow", "run", "--candidate", f"{settings.triton.model_name}@{candidate}", "--from", "0",
                      "--out", str(out), "--json", env=env, timeout=180)
        assert run.returncode == 0, run.stdout + run.stderr
        report = json.loads(run.stdout)

        expected = _recompute(settings, registry, candidate, decided, ledger)
        assert report["summary"]["compared"] == TOTAL and report["summary"]["records"] == TOTAL + 2
        assert report["summary"]["skipped"] == {"no_production_decision": 1, "image_unavailable": 0,
                                                "dead_letter": 1, "duplicate": 0}
        assert Counter(report["transitions"]) == expected
        assert report["changed"] == sum(n for t, n in expected.items() if t.split("->")[0] != t.split("->")[1]) > 0
        removes = sum(n for t, n in expected.items() if t.endswith("->remove")) - \
            sum(n for t, n in expected.items() if t.startswith("remove->"))
        assert report["rates"]["remove"]["delta"]["value"] == pytest.approx(removes / TOTAL)
        assert report["candidate"]["version"] == candidate and report["candidate"]["policy_version"] == "policy-2"
        assert report["production"]["versions"] == {"v1 / policy-1": TOTAL}
        agreement = report["reviewer_agreement"]
        production_agrees = sum((ledger.get(p).action == "remove") == (a == "remove") for p, a in reviewed.items())
        assert agreement["reviewed"] == 2 and agreement["production"]["value"] == production_agrees / 2
        page = (out / "shadow-report.html").read_text()
        assert page.count('src="data:image/jpeg;base64,') == len(report["top_changed"]) == 12

        # nothing emitted: no new decision event, no new ledger record (the undecided post stays undecided)
        assert len(read_topic(settings, settings.kafka.topics.decisions, expect=events_before)) == events_before
        assert set(ledger.post_ids()) == ledger_before and ledger.get(undecided.post_id) is None
        # the report is in S3 where the gate looks, and the gate judges it
        stored = latest_report(s3, settings.s3.buckets.models, settings.triton.model_name, candidate)
        assert stored["run_id"] == report["run_id"]
        ok, reason = shadow_check(stored, version=candidate, limits=GateSettings(require_shadow=True,
                                                                                  max_remove_rate_increase=0.0))
        assert not ok and "remove rate change" in reason  # a third more removals: beyond a zero limit

        # production's model still serves version 1 beside the shadow one
        with ModelClient(url=f"127.0.0.1:{settings.triton.http_port}", model_name=settings.triton.model_name,
                         protocol="http") as client:
            assert set(client.infer(np.zeros((2, *client.input_shape()), np.float32))["model_version"]) == {1}

        # --ledger-range: the posts production decided in the last 10 minutes, exactly those records
        # ... decided by the candidate's policy registered as a policy version of its own (policy:REF)
        from tagwatch.registry.policies import PolicyStore
        from tagwatch.registry.serving_view import read_serving_view

        from tests.support.policies import policy_document

        served = read_serving_view(registry, candidate)
        document = policy_document(served.categories)  # schema-valid, with the candidate's own thresholds
        document["categories"] = {name: {**rule, **CANDIDATE_POLICY["categories"].get(name, {"mode": "off"})}
                                  for name, rule in document["categories"].items()}
        registered = PolicyStore(registry).register(document, model_version=candidate, source="import")
        by_ledger = run_cli("shadow", "run", "--candidate", f"{settings.triton.model_name}@{candidate}",
                            "--ledger-range", "10m..", "--policy", f"policy:{registered.number}", "--no-upload",
                            "--json", env=env, timeout=180)
        assert by_ledger.returncode == 0, by_ledger.stdout + by_ledger.stderr
        again = json.loads(by_ledger.stdout)
        assert again["range"]["mode"] == "ledger" and again["summary"]["records"] == TOTAL
        assert again["candidate"]["policy_version"] == registered.policy_id
        assert again["summary"]["compared"] == TOTAL and Counter(again["transitions"]) == expected

        name = settings.triton.model_name
        for args, code, text in (
            (["--candidate", f"other@{candidate}", "--from", "0"], 3, "this registry serves"),
            (["--candidate", f"{name}@99", "--from", "0"], 11, "has no version 99"),
            (["--candidate", f"{name}@{candidate}", "--from", "100000"], 16, "no post.created record"),
            (["--candidate", f"{name}@{other_config}", "--from", "0"], 13, "differs from the one the shadow model"),
        ):
            bad = run_cli("shadow", "run", *args, "--no-upload", env=env, timeout=120)
            assert bad.returncode == code, bad.stdout + bad.stderr
            assert text in bad.stderr and "hint:" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        if consumer is not None and consumer.poll() is None:
            consumer.kill()
        assert run_cli("stack", "down", env=env0).returncode == 0


def _publish_poison(settings) -> None:
    """One record that is not a post.created CloudEvent: production dead-letters it."""
    from kafka import KafkaProducer

    producer = KafkaProducer(acks="all", **kafka_config(settings.kafka, client_id="test-poison"))
    try:
        producer.send(settings.kafka.topics.posts, key=b"poison", value=b"not an event").get(timeout=30)
    finally:
        producer.close()
