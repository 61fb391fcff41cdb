"""Supervised stack processes: a service is its whole process group. Losing the main process (SIGKILL) leaves no
survivor that `stack up`/`down`/`status` does not stop; `stack up` exits 4 when a service that was due to start
does not; `stack restart SERVICE [--kill]` brings one service back on the same ports.

Real binaries and processes throughout; the CLI runs without COLUMNS (what a user's pipe or file gets).
"""

from __future__ import annotations

import os
import signal
import socket

import psutil
import pytest

from tagwatch.stack import Stack, process, run_checks, with_stack_endpoints
from tagwatch.stack.state import read_state
from tagwatch.stack.tansu import _package_binary
from tests.conftest import make_settings, run_cli, stack_env


def _env(settings, **extra: str) -> dict[str, str]:
    return {**stack_env(settings), **extra}


def _alive(procs: list[psutil.Process]) -> list[int]:
    return [p.pid for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _listening(port: int) -> bool:
    return any(c.laddr.port == port for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN)


def _health(settings) -> dict[str, bool]:
    return {row.name: row.healthy for row in Stack(settings).status()}


def _sigkill_leader(settings, name: str) -> tuple[process.ProcessRecord, list[psutil.Process]]:
    """SIGKILL the recorded main process of ``name``; return its record and the group members that outlive it."""
    record = read_state(settings.paths.stack_file).services[name].process
    os.kill(record.pid, signal.SIGKILL)
    assert process.wait_for(lambda: not process.is_alive(record), timeout_s=10)
    return record, process.group_members(record)


@pytest.mark.slow
def test_a_sigkilled_leader_leaves_no_survivors_across_up_and_down(tmp_path):
    # A broker behind a wrapper shell: the recorded pid is the shell, the port belongs to its child, as Triton's
    # port belongs to tritonserver, a child of the recorded python process.
    wrapper = tmp_path / "tansu-wrapper"
    wrapper.write_text(f'#!/bin/sh\n"{_package_binary()[0]}" "$@" &\nwait\n')
    wrapper.chmod(0o755)
    settings = make_settings(tmp_path / "state")
    env = _env(settings, TAGWATCH_STACK__TANSU_BINARY=str(wrapper))
    up = run_cli("stack", "up", env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        ports = read_state(settings.paths.stack_file).ports

        record, survivors = _sigkill_leader(settings, "tansu")
        assert survivors and _listening(ports.kafka)  # the precondition: a broker nobody records holds the port
        again = run_cli("stack", "up", env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "had died" in again.stderr
        assert _alive(survivors) == []
        assert read_state(settings.paths.stack_file).ports == ports  # freed, so the same ports again
        assert _health(settings) == {"seaweedfs": True, "tansu": True, "triton": False}

        record, survivors = _sigkill_leader(settings, "tansu")
        assert survivors
        down = run_cli("stack", "down", env=env)
        assert down.returncode == 0, down.stdout + down.stderr
        assert "tansu: orphans stopped" in down.stderr
        assert _alive(survivors) == []
        assert not _listening(ports.kafka)
    finally:
        run_cli("stack", "down", env=env)


@pytest.mark.slow
def test_restart_tansu_keeps_its_ports_and_comes_back_healthy(tmp_path):
    settings = make_settings(tmp_path / "state", kafka={"partitions": 1})
    env = _env(settings, TAGWATCH_KAFKA__PARTITIONS="1")
    stack = Stack(settings)
    stack.up()
    try:
        before = read_state(settings.paths.stack_file)
        old = psutil.Process(before.services["tansu"].process.pid)

        restarted = run_cli("stack", "restart", "tansu", env=env)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        assert "tansu restarted" in restarted.stdout
        after = read_state(settings.paths.stack_file)
        assert after.ports == before.ports
        assert after.services["tansu"].process.pid != old.pid and _alive([old]) == []
        assert after.services["seaweedfs"].process == before.services["seaweedfs"].process  # left alone
        assert _health(settings) == {"seaweedfs": True, "tansu": True, "triton": False}

        # The library call the chaos benchmark uses: a crash, then the same ports, healthy, working end to end.
        result = stack.restart("tansu", kill=True)
        assert result.stopped == "killed"
        assert read_state(settings.paths.stack_file).ports == before.ports
        checks = run_checks(with_stack_endpoints(settings))
        assert [c.name for c in checks if not c.ok] == [], [c.detail for c in checks]

        unknown = run_cli("stack", "restart", "kafka", env=env)
        assert unknown.returncode == 4, unknown.stdout + unknown.stderr
        assert "no stack service named 'kafka'" in unknown.stderr and "seaweedfs, tansu, triton" in unknown.stderr
    finally:
        stack.down()


@pytest.mark.slow
def test_triton_that_cannot_bind_fails_up_then_restarts_and_survives_a_sigkill(tmp_path):
    from tagwatch.clients import s3_client
    from tagwatch.registry import ModelRegistry
    from tests.support.serving_models import export_tiny

    settings = make_settings(tmp_path / "state", kafka={"partitions": 1})
    env = _env(settings, TAGWATCH_KAFKA__PARTITIONS="1")
    up = run_cli("stack", "up", env=env)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        assert up.returncode == 0, up.stdout + up.stderr  # no `production` model yet: skipping Triton is fine
        assert "triton not started: no `production` model" in up.stderr
        ports = read_state(settings.paths.stack_file).ports
        live = with_stack_endpoints(settings)
        registry = ModelRegistry(s3_client(live.s3), bucket=live.s3.buckets.models, model_name=live.triton.model_name)
        registry.register(export_tiny(tmp_path / "export", model_name=live.triton.model_name).out_dir,
                          alias="production")

        blocker.bind(("127.0.0.1", ports.triton_http))
        blocker.listen()
        refused = run_cli("stack", "up", env=env)
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert f"error: triton failed to start: triton cannot bind 127.0.0.1:{ports.triton_http}" in refused.stderr
        assert "triton.log" in refused.stderr and "Traceback" not in refused.stderr
        assert _health(settings) == {"seaweedfs": True, "tansu": True, "triton": False}  # the rest stays up
        blocker.close()

        up = run_cli("stack", "up", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        first = read_state(settings.paths.stack_file).services["triton"].process
        family = process.group_members(first)
        assert any(p.name() == "tritonserver" for p in family)

        restarted = run_cli("stack", "restart", "triton", env=env)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        assert _alive(family) == []
        assert read_state(settings.paths.stack_file).ports == ports
        # restart waited for ready; status is a fresh probe with a 1-2 s timeout, which a loaded 2-core box can miss
        assert process.wait_for(lambda: _health(settings)["triton"], timeout_s=15)

        record, survivors = _sigkill_leader(settings, "triton")
        assert any(p.name() == "tritonserver" for p in survivors), survivors  # what the issue saw
        rows = {row.name: row for row in Stack(settings).status()}
        assert not rows["triton"].running and rows["triton"].orphans_stopped
        assert _alive(survivors) == []
        up = run_cli("stack", "up", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert read_state(settings.paths.stack_file).ports == ports
        assert _health(settings) == {"seaweedfs": True, "tansu": True, "triton": True}
        family = process.group_members(read_state(settings.paths.stack_file).services["triton"].process)
    finally:
        blocker.close()
        down = run_cli("stack", "down", env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert _alive(family) == []
    assert not any(_listening(port) for port in ports.model_dump().values())


def test_restart_without_a_stack_says_how_to_start_one(tmp_path):
    env = _env(make_settings(tmp_path / "state"))
    result = run_cli("stack", "restart", "tansu", env=env)
    assert result.returncode == 4, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: the embedded stack has no state file yet") and lines[1].startswith("hint:")
    assert "tagwatch stack up" in lines[1] and len(lines) == 2
    helped = run_cli("stack", "restart", "--help", env=env)
    words = " ".join(helped.stdout.split())  # help is for people: rich wraps it when stdout is a pipe
    assert helped.returncode == 0 and "--kill" in words and "tagwatch stack restart triton --kill" in words
    assert "restart" in run_cli("stack", "--help", env=env).stdout
