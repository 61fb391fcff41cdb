import os
import signal
import sys
import time

import psutil


from tagwatch.stack import process

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)",
]


def test_spawn_then_stop_gracefully(tmp_path):
    record = process.spawn(SLEEPER, env={}, log_file=tmp_path / "p.log", cwd=tmp_path)
    assert process.is_alive(record)
    assert process.stop(record, timeout_s=5) == "stopped"
    assert not process.is_alive(record)
    assert process.stop(record, timeout_s=5) == "not running"


def test_stop_kills_what_ignores_sigterm(tmp_path):
    log = tmp_path / "p.log"
    record = process.spawn(STUBBORN, env={}, log_file=log, cwd=tmp_path)
    assert process.wait_for(lambda: "ready" in log.read_text(), timeout_s=10)
    assert process.stop(record, timeout_s=0.5) == "killed"
    assert not process.is_alive(record)


def test_a_reused_pid_is_never_ours(tmp_path):
    record = process.spawn(SLEEPER, env={}, log_file=tmp_path / "p.log", cwd=tmp_path)
    try:
        impostor = record.model_copy(update={"create_time": record.create_time - 1000})
        assert not process.is_alive(impostor)
        assert process.stop(impostor, timeout_s=1) == "not running"
        assert process.is_alive(record)  # the real one was left alone
    finally:
        process.stop(record, timeout_s=5)


def test_child_env_reaches_the_process_not_its_argv(tmp_path):
    log = tmp_path / "env.log"
    cmd = [sys.executable, "-c", "import os; print(os.environ['TW_TEST_SECRET'])"]
    record = process.spawn(cmd, env={"TW_TEST_SECRET": "abc123"}, log_file=log, cwd=tmp_path)
    assert process.wait_for(lambda: not process.is_alive(record), timeout_s=10)
    assert log.read_text().strip() == "abc123"
    assert "abc123" not in " ".join(record.command)


def test_tail_reads_the_end(tmp_path):
    path = tmp_path / "x.log"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    assert process.tail(path, 2) == ["line 98", "line 99"]
    assert process.tail(tmp_path / "missing.log") == []


# A leader that forks two grandchildren into its own process group, like tritonserver's python-backend stubs.
FAMILY = ["/bin/sh", "-c", "sleep 60 & sleep 60 & echo forked; wait"]


def _family(record, log):
    assert process.wait_for(lambda: "forked" in log.read_text(), timeout_s=10)
    members = process.group_members(record)
    assert len(members) == 3, members  # sh and both sleeps
    return members


def test_stop_takes_the_whole_process_group(tmp_path):
    log = tmp_path / "p.log"
    record = process.spawn(FAMILY, env={}, log_file=log, cwd=tmp_path)
    members = _family(record, log)
    assert process.stop(record, timeout_s=5) == "stopped"
    assert not [p for p in members if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert process.group_members(record) == []


def test_orphans_of_a_sigkilled_leader_are_found_and_stopped(tmp_path):
    log = tmp_path / "p.log"
    record = process.spawn(FAMILY, env={}, log_file=log, cwd=tmp_path)
    members = _family(record, log)
    os.kill(record.pid, signal.SIGKILL)
    assert process.wait_for(lambda: not process.is_alive(record), timeout_s=5)
    orphans = process.group_members(record)
    assert sorted(p.pid for p in orphans) == sorted(p.pid for p in members if p.pid != record.pid)
    assert process.stop(record, timeout_s=5) == "orphans stopped"
    assert not [p for p in orphans if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert process.stop(record, timeout_s=5) == "not running"


def test_kill_sends_sigkill_to_the_group(tmp_path):
    log = tmp_path / "p.log"
    record = process.spawn(STUBBORN, env={}, log_file=log, cwd=tmp_path)
    assert process.wait_for(lambda: "ready" in log.read_text(), timeout_s=10)
    t0 = time.monotonic()
    assert process.stop(record, timeout_s=30, kill=True) == "killed"
    assert time.monotonic() - t0 < 10  # no 30 s SIGTERM grace: SIGKILL at once
    assert not process.is_alive(record)


def test_a_group_member_without_the_token_is_not_ours(tmp_path):
    log = tmp_path / "p.log"
    record = process.spawn(FAMILY, env={}, log_file=log, cwd=tmp_path)
    try:
        _family(record, log)
        stranger = record.model_copy(update={"group_token": "someone-else"})
        assert process.group_members(stranger) == []
        assert process.stop(stranger, timeout_s=1) == "not running"
        assert len(process.group_members(record)) == 3  # left alone
    finally:
        process.stop(record, timeout_s=5)
