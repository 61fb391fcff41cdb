"""The embedded stack against the real SeaweedFS and Tansu binaries."""

from __future__ import annotations

import json

import psutil
import pytest
from pydantic import SecretStr

from tagwatch.clients import s3_client
from tagwatch.stack import Stack, run_checks
from tests.conftest import run_cli, stack_env


def test_round_trips_pass(stack_settings):
    results = run_checks(stack_settings)
    assert [r.name for r in results if not r.ok] == [], [r.detail for r in results]


def test_every_listener_is_on_loopback(stack_settings):
    pids = {row.pid for row in Stack(stack_settings).status() if row.pid}
    assert len(pids) == 2
    listening = [
        conn.laddr
        for pid in pids
        for conn in psutil.Process(pid).connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    ]
    assert len(listening) >= 11  # ten SeaweedFS ports and Kafka
    assert {addr.ip for addr in listening} == {"127.0.0.1"}, listening


def test_credentials_are_enforced(stack_settings):
    from botocore.exceptions import ClientError

    wrong = stack_settings.s3.model_copy(update={"secret_access_key": SecretStr("not-the-secret"), "max_attempts": 1})
    with pytest.raises(ClientError, match="SignatureDoesNotMatch|AccessDenied"):
        s3_client(wrong).list_buckets()


def test_cli_status_check_and_idempotent_up(stack_settings):
    env = stack_env(stack_settings)
    status = run_cli("stack", "status", env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.count("healthy") == 2
    again = run_cli("stack", "up", env=env)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    check = run_cli("stack", "check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("OK") >= 5 and "FAIL" not in check.stdout
    as_json = run_cli("stack", "check", "--json", env=env)
    report = json.loads(as_json.stdout)  # plain JSON whatever the terminal width (no rich wrapping)
    assert as_json.returncode == 0 and report["ok"] and len(report["checks"]) == 4  # S3 x2, Kafka x2 (no Triton)
    assert all(c["ok"] and c["seconds"] >= 0 for c in report["checks"])


def test_secret_never_reaches_output_or_logs(stack_settings):
    secret = stack_settings.s3.secret_access_key.get_secret_value()
    env = stack_env(stack_settings)
    outputs = [run_cli(*args, env=env) for args in (["-v", "stack", "check"], ["-v", "stack", "status"], ["stack", "logs"], ["-v", "config", "show"])]
    for result in outputs:
        assert secret not in result.stdout + result.stderr
    logs = [p for p in stack_settings.paths.logs_dir.rglob("*") if p.is_file()]
    assert logs, "the stack wrote no logs at all?"
    for path in logs:
        assert secret not in path.read_text(errors="replace"), path
    assert secret not in stack_settings.paths.stack_file.read_text()
