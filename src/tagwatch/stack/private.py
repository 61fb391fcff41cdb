"""A private embedded stack for a benchmark or a one-off script: its own state dir, free ports, down at the end."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tagwatch.stack.manager import Stack
from tagwatch.stack.state import with_stack_endpoints


@contextmanager
def private_stack(state_dir: Path, **overrides: Any) -> Iterator[Any]:
    """Start SeaweedFS + Tansu under ``state_dir`` on free ports and yield Settings with their endpoints; the stack
    is brought down on exit (also on an error). ``overrides``: load_settings sections (e.g. ``triton={...}``)."""
    from tagwatch.settings import load_settings

    stack_section = {"free_ports": True, "start_timeout_s": 60.0, **overrides.pop("stack", {})}
    settings = load_settings(paths={"state_dir": Path(state_dir)}, stack=stack_section, **overrides)
    stack = Stack(settings)
    stack.up()
    try:
        yield with_stack_endpoints(settings)
    finally:
        stack.down()
