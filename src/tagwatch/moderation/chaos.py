"""Chaos at scale on a private embedded stack: posts (with hostile records mixed in) flow through N consumer
processes scoring on Triton while, at seeded random moments, a working consumer is SIGKILLed and replaced, the
broker (Tansu) is restarted and Triton is restarted. At the end the stream audit (``moderation/audit.py``)
says what was lost, whether the ledger equals the first decision events, and whether any commit passed an
undecided record. ``benchmarks/chaos.py`` is the command line; this is the whole run.

Member 0 is never killed: its RSS over the run is the soak figure (one process lifetime, start vs end).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import shutil
import signal
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tagwatch.settings import Settings, child_env, load_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChaosConfig:
    posts: int = 20_000
    consumers: int = 2
    consumer_kills: int = 10
    broker_restarts: int = 2
    triton_restarts: int = 2
    hostile_rate: float = 0.01
    seed: int = 0
    rate: float | None = None  # posts/s; None: posts/120 s, within [10, 200]
    partitions: int = 4
    images: int = 500  # distinct images the posts cycle through
    max_poll_records: int = 32
    max_wall_s: float = 1800.0
    state_dir: Path | None = None  # None: a fresh temp dir, removed after a clean run
    victim_wait_s: float = 30.0  # how long a kill waits for a member that owns partitions and has work in flight
    stall_s: float = 120.0  # publishing and chaos over, nothing newly handled for this long: stop waiting

    @property
    def publish_rate(self) -> float:
        return self.rate or min(200.0, max(10.0, self.posts / 120))


@dataclass
class _Published:
    ids: set[str] = field(default_factory=set)
    acked_at: dict[str, str] = field(default_factory=dict)  # post_id -> "partition@offset" the broker acknowledged
    hostile: int = 0
    failed: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


def chaos_settings(state_dir: Path, partitions: int) -> Settings:
    """A private stack's settings: its own state dir, free ports, its own secret."""
    import secrets

    return load_settings(paths={"state_dir": state_dir}, stack={"free_ports": True, "start_timeout_s": 90.0},
                         s3={"secret_access_key": f"chaos-{secrets.token_hex(8)}"}, kafka={"partitions": partitions})


def consumer_env(settings: Settings) -> dict[str, str]:
    """Environment for a `tagwatch moderate` child that uses ``settings``' private stack."""
    return child_env(settings)


def restart_service(settings: Settings, name: str) -> None:
    """Kill a stack service (SIGKILL, its whole process group) and bring it back.

    Uses ``Stack.restart(name, kill=True)`` where the stack has it; otherwise kills the process group recorded
    in the state file (services are started with their own session, so pgid == pid) plus any child that left
    the group, and runs ``Stack.up()``, which starts what is not alive.
    """
    import psutil

    from tagwatch.stack import Stack
    from tagwatch.stack.process import find
    from tagwatch.stack.state import read_state

    stack = Stack(settings)
    if hasattr(stack, "restart"):
        stack.restart(name, kill=True)
        return
    record = read_state(settings.paths.stack_file).services[name].process
    proc = find(record)
    if proc is not None:
        family = [proc, *proc.children(recursive=True)]
        if os.getpgid(record.pid) == record.pid != os.getpgid(0):
            os.killpg(record.pid, signal.SIGKILL)
        for member in family:
            try:
                member.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(family, timeout=30)
    result = stack.up()
    if name not in result.started:
        raise RuntimeError(f"{name} did not come back: {result.skipped.get(name, 'not started')}")


def serve_tiny_model(settings: Settings, work: Path) -> None:
    """Register the tiny stand-in model as `production` and start the stack's Triton with it."""
    from tagwatch.clients import s3_client
    from tagwatch.export.tiny import export_tiny
    from tagwatch.registry import ModelRegistry
    from tagwatch.stack import Stack, with_stack_endpoints

    live = with_stack_endpoints(settings)
    registry = ModelRegistry(s3_client(live.s3), bucket=live.s3.buckets.models, model_name=live.triton.model_name)
    registry.register(export_tiny(work / "export", model_name=live.triton.model_name).out_dir, alias="production")
    result = Stack(settings).up()
    if "triton" not in result.started and "triton" not in result.already_running:
        raise RuntimeError(f"triton did not start: {result.skipped.get('triton')}")


def _publish(settings: Settings, config: ChaosConfig, refs: list[tuple[str, str]], hostile: list, out: _Published) -> None:
    """Send the posts at the configured rate, a hostile record in place of a post at ``hostile_rate``."""
    from kafka import KafkaProducer

    from tagwatch.clients import kafka_config
    from tagwatch.moderation.events import EventType, encode
    from tagwatch.moderation.publish import Send, confirm_sends, new_post, send

    rng = random.Random(config.seed + 1)
    run = uuid.uuid4().hex[:6]
    producer = KafkaProducer(acks="all", linger_ms=5, **kafka_config(settings.kafka, client_id="chaos-publisher"))
    topic, rate, t0 = settings.kafka.topics.posts, config.publish_rate, time.monotonic()
    sends: list[Send] = []
    try:
        for n in range(config.posts):
            delay = t0 + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if hostile and rng.random() < config.hostile_rate:
                _name, key, value, headers, _reason = rng.choice(hostile)
                sends.append(send(producer, topic, Send(None, key, value, headers)))
                continue
            post = new_post(f"chaos-{run}-{n:07d}", *refs[n % len(refs)])
            value, headers = encode(post, EventType.POST_CREATED, subject=post.post_id)
            sends.append(send(producer, topic, Send(post.post_id, post.post_id.encode(), value, headers)))
        confirmed, failed = confirm_sends(producer, topic, sends)
        out.failed += len(failed)  # an unacknowledged send is not expected downstream; counted
        for item, metadata in confirmed:
            if item.post_id is None:
                out.hostile += 1
            else:
                out.ids.add(item.post_id)
                out.acked_at[item.post_id] = f"{metadata.partition}@{metadata.offset}"
    except Exception as error:  # noqa: BLE001 - reported in the result, never a silent thread death
        out.error = f"{type(error).__name__}: {error}"[:300]
    finally:
        producer.close(timeout=10)
        out.done.set()


class _Progress:
    """Follows the decisions and dead-letter topics: which posts-topic records and post ids are handled."""

    def __init__(self, settings: Settings) -> None:
        from tagwatch.moderation.readback import TopicFollower

        topics = settings.kafka.topics
        self.posts_topic, self.decisions_topic = topics.posts, topics.decisions
        self.follower = TopicFollower(settings.kafka, [topics.decisions, topics.dead_letter], client_id="chaos-progress")
        self.positions: set[tuple[int, int]] = set()
        self.ids: set[str] = set()

    def update(self) -> None:
        for record in self.follower.poll(timeout_ms=200):
            data = json.loads(record.value)
            if record.topic == self.decisions_topic:
                self.ids.add(data["post_id"])
                source = data.get("source") or {}
                if source.get("topic") == self.posts_topic:
                    self.positions.add((int(source["partition"]), int(source["offset"])))
            elif data.get("topic") == self.posts_topic:
                self.positions.add((int(data["partition"]), int(data["offset"])))
                self.ids.add(_post_id_of(data.get("original_value_b64") or ""))

    def complete(self, published: _Published) -> bool:
        acked = len(published.ids) + published.hostile
        return published.done.is_set() and len(self.positions) >= acked and published.ids <= self.ids


def _post_id_of(value_b64: str) -> str:
    try:
        data = json.loads(base64.b64decode(value_b64))
        return str(data.get("post_id", "")) if isinstance(data, dict) else ""
    except ValueError:
        return ""


def run_chaos(config: ChaosConfig, *, report=lambda msg: log.info("%s", msg)) -> dict:
    """The whole run; returns the result (one JSON-able dict). Never exceeds ``max_wall_s`` by much:
    every wait is bounded by it, then the audit runs on whatever the stream holds."""
    from tagwatch.stack import Stack

    t0 = time.monotonic()
    deadline = t0 + config.max_wall_s
    state_dir = config.state_dir or Path(tempfile.mkdtemp(prefix="tagwatch-chaos-"))
    settings = chaos_settings(state_dir, config.partitions)
    stack = Stack(settings)
    members: list = []
    result: dict = {}
    try:
        stack.up()
        report(f"stack up in {state_dir}")
        serve_tiny_model(settings, state_dir / "chaos")
        report("tiny model registered and served on Triton")
        result = _drive(settings, config, members, deadline, report)
    finally:
        for member in members:
            member.stop(timeout_s=30)
        stack.down()
    result["wall_s"] = round(time.monotonic() - t0, 1)
    if result.get("ok") and config.state_dir is None:
        shutil.rmtree(state_dir, ignore_errors=True)
    else:
        result["state_dir"] = str(state_dir)  # consumer logs under chaos/ for a look at what went wrong
    return result


def _drive(settings: Settings, config: ChaosConfig, members: list, deadline: float, report) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    from tagwatch.clients import s3_client
    from tagwatch.moderation.hostile import cases
    from tagwatch.moderation.members import ConsumerProcess
    from tagwatch.moderation.publish import upload_image
    from tagwatch.moderation.readback import audit_stream
    from tagwatch.moderation.synthetic import colour_jpeg
    from tagwatch.stack import with_stack_endpoints
    from tagwatch.stack.ports import pick_free_ports

    live = with_stack_endpoints(settings)
    s3, bucket = s3_client(live.s3), live.s3.buckets.posts
    with ThreadPoolExecutor(8) as pool:
        refs = list(pool.map(lambda i: upload_image(s3, bucket, colour_jpeg(i)), range(min(config.images, config.posts))))
    hostile = cases(s3, bucket, f"chaos{config.seed}", lambda data: upload_image(s3, bucket, data)) if config.hostile_rate > 0 else []
    logs = settings.paths.state_dir / "chaos"
    logs.mkdir(parents=True, exist_ok=True)
    env = consumer_env(settings)

    def start_member() -> ConsumerProcess:
        member = ConsumerProcess(["--max-poll-records", str(config.max_poll_records)], env=env,
                                 log_path=logs / f"consumer-{len(members)}.log",
                                 metrics_port=pick_free_ports("127.0.0.1", 1)[0])
        members.append(member)
        return member

    steady = start_member()
    live_members = [steady] + [start_member() for _ in range(config.consumers - 1)]
    rng = random.Random(config.seed)
    publish_s = config.posts / config.publish_rate
    events = sorted((rng.uniform(0.1, 0.9) * publish_s, kind) for kind, count in
                    (("kill", config.consumer_kills), ("broker", config.broker_restarts), ("triton", config.triton_restarts))
                    for _ in range(count))
    published = _Published()
    progress = _Progress(live)
    done = {"kill": 0, "kill_skipped": 0, "broker": 0, "triton": 0}
    rss: list[tuple[int, float]] = []
    start = time.monotonic()
    threading.Thread(target=_publish, args=(live, config, refs, hostile, published), daemon=True).start()
    report(f"publishing {config.posts} posts at {config.publish_rate:.0f}/s; {len(events)} chaos events")
    last_rss = 0.0
    handled, handled_at, stalled = 0, time.monotonic(), False
    while time.monotonic() < deadline and not progress.complete(published):
        progress.update()
        now = time.monotonic()
        if len(progress.positions) != handled:
            handled, handled_at = len(progress.positions), now
        elif published.done.is_set() and not events and now - handled_at > config.stall_s:
            stalled = True  # e.g. posts skipped for good: nobody will ever decide them
            report(f"nothing newly handled for {config.stall_s:.0f}s: {handled} records handled; auditing")
            break
        if now - last_rss > 2.0 and (mb := steady.rss_mb()) is not None:
            rss.append((len(progress.positions), mb))
            last_rss = now
        if events and now - start >= events[0][0]:
            _, kind = events.pop(0)
            if kind == "kill":
                victim = _working_victim(live_members[1:] or live_members, min(deadline, now + config.victim_wait_s))
                if victim is None:
                    done["kill_skipped"] += 1
                    report("kill skipped: no member owned partitions with work in flight")
                    continue
                owned = victim.owned()
                victim.sigkill()
                live_members[live_members.index(victim)] = start_member()
                report(f"SIGKILLed consumer pid {victim.pid} (owning {owned}); replacement pid {members[-1].pid}")
            else:
                restart_service(settings, "tansu" if kind == "broker" else "triton")
                report(f"restarted {kind}")
            done[kind] += 1
    timed_out = not stalled and not progress.complete(published)
    progress.follower.close()
    codes = [m.stop(timeout_s=60) for m in live_members]
    audit = audit_stream(live, expected=published.ids, quiet_s=3.0, timeout_s=max(120.0, config.posts / 100))
    start_rss = next((mb for handled, mb in rss if handled >= 0.1 * config.posts), rss[0][1] if rss else None)
    end_rss = rss[-1][1] if rss else None
    result = {
        "posts": len(published.ids), "hostile": published.hostile, "publish_failed": published.failed,
        "publish_error": published.error, "consumer_kills": done["kill"], "kills_skipped": done["kill_skipped"],
        "broker_restarts": done["broker"], "triton_restarts": done["triton"],
        "lost": audit.lost, "unhandled_records": audit.unhandled_records, "ledger_mismatches": audit.ledger_mismatches,
        "ledger_missing": audit.ledger_missing, "ledger_records": audit.ledger_records,
        "duplicate_events": audit.duplicate_events, "conflicting_decision_ids": audit.conflicting_decision_ids,
        "dead_letters_by_reason": audit.dead_letters_by_reason, "commit_violations": audit.commit_violations,
        "lost_sample": audit.lost_sample[:5], "commit_violation_sample": audit.commit_violation_sample[:5],
        # acknowledged by the broker (acks=all, at this partition@offset) yet absent from its log afterwards: the
        # broker lost them (seen with Tansu 0.6.0 across a SIGKILL), nothing a consumer could have decided
        "acked_not_on_topic": {p: published.acked_at.get(p) for p in audit.not_on_topic_sample[:5]},
        "not_on_topic": audit.not_on_topic, "topic_gaps": audit.topic_gap_sample[:10],
        "rss_start_mb": _round(start_rss), "rss_end_mb": _round(end_rss),
        "rss_ratio": round(end_rss / start_rss, 3) if start_rss and end_rss else None,
        # member 0's RSS when 10 %, 25 %, 50 %, 75 % and all of the records had been handled (a leak keeps climbing)
        "rss_curve_mb": [_round(next((mb for handled, mb in rss if handled >= f * config.posts), None))
                         for f in (0.1, 0.25, 0.5, 0.75, 1.0)],
        "consumer_exit_codes": codes, "timed_out": timed_out, "stalled": stalled, "seed": config.seed,
    }
    result["ok"] = audit.ok and not (timed_out or stalled) and published.error is None
    return result


def _working_victim(candidates: list, until: float):
    while time.monotonic() < until:
        working = [m for m in candidates if m.is_working()]
        if working:
            return working[0]
        time.sleep(0.1)
    return None


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None
