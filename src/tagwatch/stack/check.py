"""`tagwatch stack check`: prove each service works end to end, not just that its port answers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from tagwatch.clients import kafka_config, s3_client
from tagwatch.settings import Settings


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    seconds: float


def run_checks(settings: Settings) -> list[CheckResult]:
    """Run every round trip; ``settings`` must carry endpoints (see ``with_stack_endpoints``)."""
    results = [
        _timed("s3 buckets", lambda: check_buckets(settings)),
        _timed("s3 put/get", lambda: check_s3_round_trip(settings)),
        _timed("kafka topics", lambda: check_topics(settings)),
        _timed("kafka produce/consume", lambda: check_kafka_round_trip(settings)),
    ]
    from tagwatch.stack.state import read_state

    state = read_state(settings.paths.stack_file)
    if state is not None and "triton" in state.services:  # optional: only when the stack runs it
        port = state.ports.triton_http or settings.triton.http_port
        results.append(_timed("triton infer", lambda: check_triton_infer(settings, port)))
    return results


def check_triton_infer(settings: Settings, http_port: int) -> str:
    """One request of one blank image through the stack's Triton (HTTP, so this never imports tritonclient.grpc)."""
    import numpy as np

    from tagwatch.serving.client import ModelClient

    with ModelClient(url=f"{settings.triton.host}:{http_port}", model_name=settings.triton.model_name,
                     protocol="http", retries=1) as client:
        out = client.infer(np.zeros((1, *client.input_shape()), dtype=np.float32))
    return (f"{settings.triton.model_name} version {int(out['model_version'][0])} scored 1 image "
            f"({out['category_scores'].shape[1]} categories)")


def check_buckets(settings: Settings) -> str:
    client = s3_client(settings.s3)
    have = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    missing = [b for b in settings.s3.buckets.all() if b not in have]
    if missing:
        raise AssertionError(f"missing buckets: {', '.join(missing)} (run `tagwatch stack up` to create them)")
    return f"{len(settings.s3.buckets.all())} buckets present"


def check_s3_round_trip(settings: Settings) -> str:
    client = s3_client(settings.s3)
    bucket = settings.s3.buckets.posts
    key = f"_tagwatch/check/{uuid.uuid4().hex}"
    body = uuid.uuid4().bytes * 64
    client.put_object(Bucket=bucket, Key=key, Body=body)
    try:
        got = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    finally:
        client.delete_object(Bucket=bucket, Key=key)
    if got != body:
        raise AssertionError(f"read back {len(got)} bytes that differ from the {len(body)} written")
    return f"wrote, read and deleted s3://{bucket}/{key.rsplit('/', 1)[0]}/… ({len(body)} B)"


def check_topics(settings: Settings) -> str:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**kafka_config(settings.kafka, client_id="tagwatch-check"))
    try:
        have = set(admin.list_topics())
    finally:
        admin.close()
    missing = [t for t in settings.kafka.topics.all() if t not in have]
    if missing:
        raise AssertionError(f"missing topics: {', '.join(missing)} (run `tagwatch stack up` to create them)")
    return f"{len(settings.kafka.topics.all())} topics present"


def check_kafka_round_trip(settings: Settings) -> str:
    """Produce one record (acks=all) and read exactly that offset back.

    Reads by assign+seek to the offset the broker acknowledged, not by group or end offset: Tansu's reported
    end offsets are unreliable (PLATFORM.md) and a group join costs seconds.
    """
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = settings.kafka.topics.check
    marker = uuid.uuid4().hex.encode()
    common = kafka_config(settings.kafka, client_id="tagwatch-check")
    producer = KafkaProducer(acks="all", **common)
    try:
        meta = producer.send(topic, key=b"check", value=marker, partition=0).get(timeout=15)
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(enable_auto_commit=False, consumer_timeout_ms=10000, **common)
    try:
        tp = TopicPartition(topic, meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    if record.offset == meta.offset:
                        if record.value != marker:
                            raise AssertionError(f"offset {meta.offset} holds another value")
                        return f"{topic}[{meta.partition}]@{meta.offset} produced and consumed"
        raise AssertionError(f"{topic}[{meta.partition}]@{meta.offset} was acknowledged but not readable in 15s")
    finally:
        consumer.close()


def _timed(name: str, fn: Callable[[], str]) -> CheckResult:
    t0 = time.monotonic()
    try:
        detail = fn()
        ok = True
    except Exception as error:  # a check reports what failed; it never raises past here
        detail = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
        ok = False
    return CheckResult(name=name, ok=ok, detail=detail, seconds=time.monotonic() - t0)
