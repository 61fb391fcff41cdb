import sys

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
