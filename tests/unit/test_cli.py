"""The real console entry point, run as a user runs it (subprocess). No services needed here."""

import json
import socket

from tests.conftest import run_cli


def _env(tmp_path, **extra):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGWATCH_")}
    env.update({"TAGWATCH_PATHS__STATE_DIR": str(tmp_path / "state"), **extra})
    return env


def _one_line_error(result, *fragments):
    """Exactly one `error:` line, then exactly one `hint:` line, and nothing after them (no traceback, no wrapped
    continuation); before them only the command's own progress bullets. The fragments are in those two lines."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    hints = [i for i, line in enumerate(lines) if line.startswith("hint: ")]
    assert len(errors) == 1 and len(hints) == 1, result.stderr
    assert hints[0] == errors[0] + 1 == len(lines) - 1, result.stderr  # the hint follows the error and ends it
    assert all(line.startswith("• ") for line in lines[:errors[0]]), result.stderr
    reported = lines[errors[0]] + "\n" + lines[hints[0]]
    for fragment in fragments:
        assert fragment in reported, result.stderr


def test_help_explains_the_product_in_two_lines():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "hashtags" in result.stdout and "Kafka" in result.stdout
    for command in ("config", "stack", "demo"):
        assert command in result.stdout
    stack_help = run_cli("stack", "--help").stdout
    for command in ("up", "down", "status", "logs", "check"):
        assert command in stack_help


def test_config_show_masks_the_secret(tmp_path):
    secret = "very-secret-token-9f8e7d"
    for args in (["config", "show"], ["config", "show", "--json"], ["-v", "config", "show"]):
        result = run_cli(*args, env=_env(tmp_path, TAGWATCH_S3__SECRET_ACCESS_KEY=secret))
        assert result.returncode == 0, result.stderr
        assert secret not in result.stdout + result.stderr
        assert "**********" in result.stdout
        assert "TAGWATCH_S3__SECRET_ACCESS_KEY" in result.stdout or "secret_access_key" in result.stdout


def test_config_show_reads_yaml_and_env(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("kafka:\n  partitions: 7\n")
    long_dir = tmp_path / ("a-state-dir-whose-path-is-longer-than-eighty-columns-" * 2)  # a wrap would split it
    result = run_cli("--config", str(config), "config", "show", "--json",
                     env=_env(tmp_path, TAGWATCH_TRITON__GRPC_PORT="9101", TAGWATCH_PATHS__STATE_DIR=str(long_dir)))
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)  # stdout is a pipe here, as in any script
    assert shown["kafka"]["partitions"] == 7 and shown["triton"]["grpc_port"] == 9101
    assert shown["paths"]["state_dir"] == str(long_dir)


def test_bad_value_is_one_line_exit_3(tmp_path):
    result = run_cli("config", "show", env=_env(tmp_path, TAGWATCH_KAFKA__PARTITIONS="zero"))
    _one_line_error(result, "kafka.partitions")
    assert result.returncode == 3


def test_unwritable_state_dir_is_one_line_exit_3(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_cli("stack", "up", env=_env(tmp_path, TAGWATCH_PATHS__STATE_DIR=str(blocker / "state")))
    _one_line_error(result, "not writable", "TAGWATCH_PATHS__STATE_DIR")
    assert result.returncode == 3


def test_missing_binary_is_one_line_exit_3(tmp_path):
    result = run_cli("stack", "up", env=_env(tmp_path, TAGWATCH_STACK__WEED_BINARY=str(tmp_path / "no-weed")))
    _one_line_error(result, "weed binary was not found", "TAGWATCH_STACK__WEED_BINARY")
    assert result.returncode == 3


def test_port_in_use_is_one_line_exit_3_and_starts_nothing(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        result = run_cli("stack", "up", "--s3-port", str(port), env=_env(tmp_path))
    finally:
        holder.close()
    _one_line_error(result, f"127.0.0.1:{port}", "already in use")
    assert result.returncode == 3
    assert not (tmp_path / "state" / "stack.json").exists()  # nothing was started, nothing recorded


def test_status_and_down_without_a_stack(tmp_path):
    status = run_cli("stack", "status", env=_env(tmp_path))
    assert status.returncode == 4 and "stopped" in status.stdout
    down = run_cli("stack", "down", env=_env(tmp_path))
    assert down.returncode == 0 and "not running" in down.stdout


def test_logs_rejects_unknown_service(tmp_path):
    result = run_cli("stack", "logs", "kafkaa", env=_env(tmp_path))
    _one_line_error(result, "kafkaa", "seaweedfs")


def test_demo_help_lists_its_options_and_bad_state_dir_is_one_error_line(tmp_path):
    help_text = run_cli("demo", "--help", env=_env(tmp_path)).stdout
    for option in ("--quick", "--report-dir", "--fresh", "--consumers"):
        assert option in help_text
    (tmp_path / "file").write_text("not a directory")
    result = run_cli("demo", "--quick", "--report-dir", str(tmp_path / "r"),
                     env=_env(tmp_path, TAGWATCH_PATHS__STATE_DIR=str(tmp_path / "file" / "state")))
    assert result.returncode == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "state dir" in errors[0], result.stderr  # after the stage lines, one error + hint
    assert any(line.startswith("hint: ") for line in result.stderr.splitlines()) and "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def test_publish_ids_out_that_is_a_directory_is_one_error_line(tmp_path):
    result = run_cli("posts", "publish", "--synthetic", "--n", "1", "--ids-out", str(tmp_path), env=_env(tmp_path))
    _one_line_error(result, f"--ids-out {tmp_path} is a directory")
    assert result.returncode == 3
