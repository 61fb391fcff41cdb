"""Shared fixtures: a private embedded stack on free ports in a temp dir, and a CLI runner.

The session stack is started once (about 2 s) and stopped at the end; tests that must restart or break a stack
start their own in their own temp dir.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tagwatch.settings import Settings, load_settings


TEST_SWITCHES = {"TAGWATCH_UPDATE_SCREENSHOTS"}


def pytest_configure(config: pytest.Config) -> None:
    # The suite must not pick up a developer's own TAGWATCH_* settings or their running stack. Kept: switches of
    # the tests themselves, which are no settings (TAGWATCH_UPDATE_SCREENSHOTS: test_review_app.py).
    for name in list(os.environ):
        if name.startswith("TAGWATCH_") and name not in TEST_SWITCHES:
            del os.environ[name]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "unit" in parts:
            item.add_marker(pytest.mark.unit)
        elif "integration" in parts:
            item.add_marker(pytest.mark.integration)


def make_settings(state_dir: Path, secret: str | None = None, **overrides) -> Settings:
    """Settings for a private stack: its own state dir, free ports, its own secret."""
    stack = {"free_ports": True, "start_timeout_s": 45.0, **overrides.pop("stack", {})}
    s3 = {"secret_access_key": secret or f"test-secret-{secrets.token_hex(8)}", **overrides.pop("s3", {})}
    return load_settings(paths={"state_dir": state_dir}, stack=stack, s3=s3, **overrides)


def stack_env(settings: Settings) -> dict[str, str]:
    """Environment that makes a `tagwatch` subprocess use ``settings``' stack and secret."""
    return {
        **os.environ,
        "TAGWATCH_PATHS__STATE_DIR": str(settings.paths.state_dir),
        "TAGWATCH_S3__SECRET_ACCESS_KEY": settings.s3.secret_access_key.get_secret_value(),
        "TAGWATCH_STACK__FREE_PORTS": "true",
        "TAGWATCH_STACK__START_TIMEOUT_S": str(settings.stack.start_timeout_s),
    }


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess (what a user runs)."""
    return subprocess.run(
        [sys.executable, "-m", "tagwatch", *args],
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory):
    """A running private stack for the whole session; yields Settings with its endpoints filled in."""
    from tagwatch.stack import Stack, with_stack_endpoints

    settings = make_settings(tmp_path_factory.mktemp("stack"))
    stack = Stack(settings)
    stack.up()
    try:
        yield with_stack_endpoints(settings)
    finally:
        stack.down()
