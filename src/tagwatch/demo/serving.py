"""The demo's serving stage: the stack's Triton on the production alias (hot-swapped or restarted), and the nudity
model registered once beside it."""

from __future__ import annotations

import json
import time

from tagwatch.demo.progress import DemoProgress
from tagwatch.demo.stages import bring_stack_up
from tagwatch.errors import StackError
from tagwatch.settings import Settings


def serve_production(base: Settings, *, version: int, progress: DemoProgress, timeout_s: float = 60.0) -> Settings:
    """Start the stack's Triton on `production` (or let a running one hot-swap to it); wait until it serves
    ``version``. A running Triton that refuses the swap (another input shape) is restarted. Returns settings
    pointing at it."""
    from tagwatch.stack import with_stack_endpoints

    result = bring_stack_up(base, progress=progress)
    if "triton" in result.skipped:
        raise StackError(f"Triton did not start: {result.skipped['triton']}", hint="`tagwatch stack logs triton`")
    if not _wait_served(base, version, timeout_s=15.0 if "triton" in result.already_running else timeout_s):
        if "triton" not in result.already_running:
            raise StackError(f"Triton does not serve version {version} after {timeout_s:.0f}s", hint="`tagwatch stack logs triton`")
        progress.say(f"the running Triton did not hot-swap to version {version} (see its log); restarting it")
        restart_triton(base)
        bring_stack_up(base, progress=progress)
        if not _wait_served(base, version, timeout_s=timeout_s):
            raise StackError(f"Triton does not serve version {version} after a restart", hint="`tagwatch stack logs triton`")
    if not _serves_nudity(base):
        progress.say("the running Triton does not serve the nudity model registered since it started; restarting it")
        restart_triton(base)
        bring_stack_up(base, progress=progress)
        if not (_wait_served(base, version, timeout_s=timeout_s) and _serves_nudity(base)):
            raise StackError("Triton does not serve the nudity model after a restart", hint="`tagwatch stack logs triton`")
    progress.say(f"Triton serves version {version}")
    return with_stack_endpoints(base)


def register_nudity_model(settings: Settings) -> str:
    """Register open_nsfw once (the server binds it at start); one line saying what happened."""
    from tagwatch.registry.open_nsfw import ensure_open_nsfw

    found = ensure_open_nsfw(settings)
    if found is None:
        return "off (settings.triton.nsfw_model_name is empty)"
    metadata, registered = found
    return f"{metadata.model_name} v{metadata.version} {'registered now' if registered else 'already registered'}"


def _serves_nudity(base: Settings) -> bool:
    """True unless a nudity model is registered and the running Triton's served.json has no nudity entry."""
    from tagwatch.registry.open_nsfw import open_nsfw_registry
    from tagwatch.serving.workspace import served_file
    from tagwatch.stack import with_stack_endpoints

    registry = open_nsfw_registry(with_stack_endpoints(base))
    if registry is None or registry.read_alias("production") is None:
        return True
    try:
        return "nudity" in json.loads(served_file(base).read_text())
    except (OSError, ValueError):
        return False


def _wait_served(base: Settings, version: int, *, timeout_s: float) -> bool:
    from tagwatch.serving.workspace import served_file

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if json.loads(served_file(base).read_text()).get("version") == version:
                return True
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    return False


def restart_triton(base: Settings) -> None:
    """Stop only the stack's Triton (the next `stack up` starts it again on the same ports)."""
    from tagwatch.stack import process
    from tagwatch.stack.state import read_state
    from tagwatch.stack.triton import TritonService

    state = read_state(base.paths.stack_file)
    recorded = state.services.get("triton") if state else None
    if recorded is not None:
        process.stop(recorded.process, timeout_s=base.stack.stop_timeout_s)
        TritonService(base, state.ports).after_stop()


# -- consumers -----------------------------------------------------------------------------------------
# --idle-exit: a safety net; if the demo itself is SIGKILLed its consumers still end on their own
