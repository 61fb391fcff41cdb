"""The issue's chaos run, on the real serving path: registry `production` alias -> the stack's Triton
(PyTriton) -> two `tagwatch moderate` processes. In ONE run one consumer is SIGKILLed several times mid-stream
(once while Triton is down and it is backing off with an undecided batch in hand) and Triton itself is killed
and restarted. The stream audit then finds nothing lost, every ledger record equal to the post's first decision
event, no commit past an undecided post and one decision id per post; every decision is labelled with the
registry version and policy that made it, and the duplicate decision events are counted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

import psutil
import pytest

from tagwatch.clients import s3_client
from tagwatch.moderation.ledger import Ledger
from tagwatch.moderation.publish import new_post, publish_posts, upload_image
from tagwatch.stack import with_stack_endpoints
from tagwatch.stack.cpus import cpu_plan, thread_affinities
from tagwatch.stack.state import read_state
from tests.conftest import make_settings, run_cli
from tests.support import colour_model as cm
from tests.support.serving_models import serve_tiny_model
from tests.support.stream import assert_audit_clean, private_stream, read_topic, stream_env, wait_for


def _consumer(env, log_path):
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "tagwatch", "moderate", "--max-poll-records", "8"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)


def _sigkill(proc) -> None:
    proc.send_signal(signal.SIGKILL)  # no drain, no commit, no goodbye
    proc.wait()


@pytest.mark.slow
def test_sigkills_and_a_triton_restart_in_one_run_lose_nothing(tmp_path):
    base = make_settings(tmp_path / "state", kafka={"partitions": 2})
    env0 = {**stream_env(base), "TAGWATCH_KAFKA__PARTITIONS": "2"}
    steady = victim = None
    try:
        serve_tiny_model(base, env0, tmp_path / "export")
        settings = private_stream(with_stack_endpoints(base), partitions=2)
        env = stream_env(settings)
        s3 = s3_client(settings.s3)
        total = 160
        posts = []
        for n in range(total):
            uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg([cm.RED, cm.BLUE, cm.GREY][n % 3], seed=500 + n))
            posts.append(new_post(f"tri-{n:03d}-{settings.kafka.consumer_group}", uri, digest))
        ledger = Ledger(s3, settings.s3.buckets.ledger)
        ours = {p.post_id for p in posts}
        decided = lambda: len(ours & set(ledger.post_ids()))  # noqa: E731
        logs = [tmp_path / "steady.log", tmp_path / "victim-0.log"]
        steady, victim = _consumer(env, logs[0]), _consumer(env, logs[1])

        def respawn():
            logs.append(tmp_path / f"victim-{len(logs) - 1}.log")
            return _consumer(env, logs[-1])

        def victim_owns_partitions():
            return "partitions assigned: t" in logs[-1].read_text(errors="replace")

        # posts keep arriving for the whole run (~32 s), so every kill lands while there is work in flight
        publisher = threading.Thread(target=publish_posts, args=(settings, posts), kwargs={"rate": 5.0})
        publisher.start()
        kills = 0
        for threshold in (15, 40):  # SIGKILL while it holds partitions and posts are being decided
            wait_for(lambda t=threshold: decided() >= t and victim_owns_partitions(), 120, f"{threshold} decisions", logs=logs)
            _sigkill(victim)
            kills += 1
            victim = respawn()
        wait_for(lambda: decided() >= 65 and victim_owns_partitions(), 120, "65 decisions", logs=logs)

        # Triton dies (SIGKILL, whole family) while posts keep arriving ...
        triton = psutil.Process(read_state(settings.paths.stack_file).services["triton"].process.pid)
        family = [triton, *triton.children(recursive=True)]
        for proc in family:
            proc.kill()
        psutil.wait_procs(family, timeout=15)
        wait_for(lambda: "retrying" in logs[-1].read_text(errors="replace"), 60, "the victim to hit the outage", logs=logs)
        # ... and the victim is SIGKILLed while it backs off with an undecided batch in hand
        _sigkill(victim)
        kills += 1
        victim = respawn()
        assert decided() < total
        up = run_cli("stack", "up", env=env0)
        assert up.returncode == 0 and "started triton" in up.stdout, up.stdout + up.stderr
        publisher.join(timeout=120)
        wait_for(lambda: decided() == total, 180, "every post decided after the restart", logs=logs)
        plan = cpu_plan(base.stack.model_cpus)  # `moderate` runs off the model server's CPU (stack/cpus.py)
        if plan is not None:
            assert all(a == set(plan.rest) for a in thread_affinities(steady.pid))
            assert f"consumer on CPUs {','.join(map(str, plan.rest))}" in logs[0].read_text(errors="replace")
        for proc in (steady, victim):
            proc.send_signal(signal.SIGTERM)
        assert all(proc.wait(timeout=90) == 0 for proc in (steady, victim)), \
            "\n".join(p.read_text(errors="replace")[-2000:] for p in logs)

        events = read_topic(settings, settings.kafka.topics.decisions, expect=total)
        for record in events:
            data = json.loads(record.value)
            assert data["model"]["name"] == settings.triton.model_name and data["model"]["version"] == "1"
            assert data["policy_version"] == "policy-1"
        report = assert_audit_clean(settings, ours)  # nothing lost, ledger == first event, no bad commit
        steady_log = logs[0].read_text(errors="replace")
        assert "retrying" in steady_log  # the outage was seen and ridden out by the survivor too, not skipped
        print(f"\nchaos on Triton: {kills} SIGKILLs + 1 Triton restart, {total} posts, 0 lost, "
              f"{report.decision_events} decision events, {report.duplicate_events} duplicates")
    finally:
        for proc in (steady, victim):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        assert run_cli("stack", "down", env=env0).returncode == 0
