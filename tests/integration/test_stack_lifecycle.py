"""Up, write, down, up again: objects, messages and committed group offsets survive; nothing is left running."""

from __future__ import annotations

import uuid

import psutil
import pytest

from tagwatch.clients import kafka_config, s3_client
from tagwatch.stack import Stack, with_stack_endpoints
from tagwatch.stack.state import read_state
from tests.conftest import make_settings, run_cli, stack_env


def _processes_mentioning(text: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(text in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _listening_on(ports) -> list[int]:
    """Which of ``ports`` some process still listens on (catches a leftover broker, whose argv has no path)."""
    wanted = set(ports.model_dump().values())
    return sorted(
        c.laddr.port for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.laddr.port in wanted
    )


def _group_consumer(settings, topic):
    from kafka import KafkaConsumer

    return KafkaConsumer(
        topic,
        group_id="tw-lifecycle",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka.session_timeout_ms,
        heartbeat_interval_ms=1000,
        max_poll_records=1,
        **kafka_config(settings.kafka, client_id="tw-lifecycle"),
    )


def _poll_one(consumer, timeout_s=30.0):
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000, max_records=1).values():
            return records[0]
    raise AssertionError("no record within %.0fs" % timeout_s)


@pytest.mark.slow
def test_cli_up_check_down_then_data_survives_restart(tmp_path):
    from kafka import KafkaProducer

    base = make_settings(tmp_path / "state", kafka={"partitions": 1})
    env = {**stack_env(base), "TAGWATCH_KAFKA__PARTITIONS": "1"}

    up = run_cli("stack", "up", env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "started seaweedfs, tansu" in up.stdout
    check = run_cli("stack", "check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    settings = with_stack_endpoints(base)
    first_ports = read_state(settings.paths.stack_file).ports

    # Write an object, two messages, and commit the group past the first message only.
    key, body = f"survive/{uuid.uuid4().hex}", uuid.uuid4().bytes
    s3_client(settings.s3).put_object(Bucket=settings.s3.buckets.datasets, Key=key, Body=body)
    topic = settings.kafka.topics.posts
    producer = KafkaProducer(acks="all", **kafka_config(settings.kafka, client_id="tw-lifecycle"))
    sent = [producer.send(topic, key=b"k", value=f"message-{i}".encode()).get(timeout=15) for i in range(2)]
    producer.close()
    consumer = _group_consumer(settings, topic)
    first = _poll_one(consumer)
    assert first.value == b"message-0"
    consumer.commit()
    consumer.close()

    pids = [svc.process.pid for svc in read_state(settings.paths.stack_file).services.values()]
    down = run_cli("stack", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
    assert _processes_mentioning(str(settings.paths.state_dir)) == []
    assert _listening_on(first_ports) == []
    assert read_state(settings.paths.stack_file).services == {}

    up_again = run_cli("stack", "up", env=env)
    assert up_again.returncode == 0, up_again.stdout + up_again.stderr
    assert read_state(settings.paths.stack_file).ports == first_ports  # free ports are kept per state dir
    try:
        got = s3_client(settings.s3).get_object(Bucket=settings.s3.buckets.datasets, Key=key)["Body"].read()
        assert got == body
        consumer = _group_consumer(settings, topic)
        resumed = _poll_one(consumer)
        consumer.close()
        assert (resumed.offset, resumed.value) == (sent[1].offset, b"message-1")  # committed offset survived
    finally:
        assert run_cli("stack", "down", env=env).returncode == 0
    assert _processes_mentioning(str(settings.paths.state_dir)) == []
    assert _listening_on(first_ports) == []


@pytest.mark.slow
def test_a_crashed_service_is_restarted_alone(tmp_path):
    settings = make_settings(tmp_path / "state")
    stack = Stack(settings)
    stack.up()
    try:
        state = read_state(settings.paths.stack_file)
        weed_pid = state.services["seaweedfs"].process.pid
        psutil.Process(state.services["tansu"].process.pid).kill()
        rows = {row.name: row for row in stack.status()}
        assert rows["seaweedfs"].healthy and not rows["tansu"].running
        result = stack.up()
        assert result.started == ["tansu"] and result.already_running == ["seaweedfs"]
        assert read_state(settings.paths.stack_file).services["seaweedfs"].process.pid == weed_pid
    finally:
        stack.down()
    assert _processes_mentioning(str(settings.paths.state_dir)) == []
    assert _listening_on(state.ports) == []


@pytest.mark.slow
def test_a_service_that_dies_at_start_fails_up_and_leaves_nothing(tmp_path):
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'tansu: cannot start, disk on fire' >&2\nexit 1\n")
    fake.chmod(0o755)
    settings = make_settings(tmp_path / "state")
    env = {**stack_env(settings), "TAGWATCH_STACK__TANSU_BINARY": str(fake)}
    result = run_cli("stack", "up", env=env)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "tansu exited during start-up" in result.stderr
    assert "disk on fire" in result.stderr
    assert "tansu.log" in result.stderr  # names the log file
    assert "Traceback" not in result.stderr
    assert read_state(settings.paths.stack_file).services == {}
    assert _processes_mentioning(str(settings.paths.state_dir)) == []
