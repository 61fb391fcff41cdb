import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from tagwatch.errors import ConfigError
from tagwatch.settings import CONFIG_ENV_VAR, Settings, load_settings


@pytest.fixture(autouse=True)
def _no_config_file(monkeypatch):
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)


def test_defaults_name_every_shared_thing():
    s = load_settings()
    assert s.s3.buckets.all() == ["posts", "datasets", "models", "checkpoints", "ledger", "kafka"]
    assert s.kafka.topics.posts == "tagwatch.posts.created"
    assert s.paths.state_dir == Path("~/.local/share/tagwatch").expanduser().absolute()
    assert s.stack.host == "127.0.0.1"


def test_env_vars_use_section_double_underscore(monkeypatch):
    monkeypatch.setenv("TAGWATCH_STACK__S3_PORT", "18333")
    monkeypatch.setenv("TAGWATCH_S3__BUCKETS__POSTS", "my-posts")
    monkeypatch.setenv("TAGWATCH_KAFKA__PARTITIONS", "6")
    s = load_settings()
    assert (s.stack.s3_port, s.s3.buckets.posts, s.kafka.partitions) == (18333, "my-posts", 6)
    assert s.s3.buckets.models == "models"  # siblings keep their defaults


def test_precedence_flags_over_env_over_yaml(tmp_path, monkeypatch):
    config = tmp_path / "tagwatch.yaml"
    config.write_text("stack:\n  s3_port: 1111\n  kafka_port: 2222\n  seaweed_master_port: 3333\n")
    monkeypatch.setenv("TAGWATCH_STACK__KAFKA_PORT", "4444")
    monkeypatch.setenv("TAGWATCH_STACK__S3_PORT", "5555")
    s = load_settings(config, stack={"s3_port": 6666, "kafka_port": None})
    assert s.stack.s3_port == 6666  # flag beats env
    assert s.stack.kafka_port == 4444  # unset flag (None) does not mask env
    assert s.stack.seaweed_master_port == 3333  # yaml beats default


def test_settings_are_frozen():
    s = load_settings()
    with pytest.raises(ValidationError, match="frozen"):
        s.stack.s3_port = 1  # type: ignore[misc]
    assert s.stack.s3_port != 1


def test_secret_is_masked_everywhere_but_its_getter():
    s = load_settings(s3={"secret_access_key": "hunter2-very-secret"})
    assert "hunter2-very-secret" not in repr(s)
    assert "hunter2-very-secret" not in str(s)
    assert "hunter2-very-secret" not in s.model_dump_json()
    assert "hunter2-very-secret" not in json.dumps(s.redacted())
    assert s.s3.secret_access_key.get_secret_value() == "hunter2-very-secret"
    assert "hunter2-very-secret" in s.secret_values()


def test_invalid_value_is_a_config_error_that_does_not_echo_input(monkeypatch):
    monkeypatch.setenv("TAGWATCH_STACK__S3_PORT", "not-a-port-xyzzy")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "stack.s3_port" in info.value.message
    assert "xyzzy" not in info.value.message
    assert info.value.hint


def test_stack_refuses_non_loopback_host():
    with pytest.raises(ConfigError, match="loopback"):
        load_settings(stack={"host": "0.0.0.0"})


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_unknown_key_in_yaml_is_rejected(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("stack:\n  s3_prot: 1\n")
    with pytest.raises(ConfigError, match="s3_prot"):
        load_settings(config)


def test_state_dir_expands_user(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    s = Settings(paths={"state_dir": "~/tw"})
    assert s.paths.state_dir == tmp_path / "tw"
    assert s.paths.stack_file == tmp_path / "tw" / "stack.json"


def test_child_env_rebuilds_the_same_settings_in_a_child(monkeypatch, tmp_path):
    """What a child process reads back from ``child_env`` is the parent's Settings, secret and flags included."""
    from tagwatch.settings import child_env, load_settings, settings_env

    parent = load_settings(paths={"state_dir": tmp_path}, stack={"free_ports": True, "s3_port": 18333},
                           s3={"secret_access_key": "child-secret"}, kafka={"partitions": 5})
    env = child_env(parent, base={"PATH": "/bin"}, EXTRA="1")
    assert env["PATH"] == "/bin" and env["EXTRA"] == "1"
    assert env["TAGWATCH_S3__SECRET_ACCESS_KEY"] == "child-secret" and "TAGWATCH_S3__ENDPOINT_URL" not in env
    for key in [k for k in os.environ if k.startswith("TAGWATCH_")]:
        monkeypatch.delenv(key)
    for key, value in settings_env(parent).items():
        monkeypatch.setenv(key, value)
    assert load_settings() == parent
