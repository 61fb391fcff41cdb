"""Step timing for local runs: each step appends ``{"step", "event", "t"}`` lines to the JSON-lines file named
by ``TAGWATCH_PIPELINE_EVENTS`` (set by ``tagwatch.pipeline.local`` for its kfp.local subprocesses), which the
local runner reads for per-task wall times and progress callbacks. Unset (a cluster run): nothing is written.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

EVENTS_ENV = "TAGWATCH_PIPELINE_EVENTS"
F = TypeVar("F", bound=Callable[..., Any])


def record_event(step: str, event: str, **fields: Any) -> None:
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return
    line = json.dumps({"step": step, "event": event, "t": time.time(), **fields}, default=str)
    with open(path, "a", encoding="utf-8") as handle:  # one short line per write: appends do not interleave
        handle.write(line + "\n")


def timed_step(step: str) -> Callable[[F], F]:
    def wrap(function: F) -> F:
        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            record_event(step, "start")
            try:
                result = function(*args, **kwargs)
            except BaseException as error:
                record_event(step, "failed", error=f"{type(error).__name__}: {error}")
                raise
            record_event(step, "done")
            return result

        return run  # type: ignore[return-value]

    return wrap


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def step_seconds(events: list[dict[str, Any]]) -> dict[str, float]:
    """Wall seconds per step from its start to its done/failed event (the last run of each step)."""
    starts: dict[str, float] = {}
    out: dict[str, float] = {}
    for event in events:
        if event["event"] == "start":
            starts[event["step"]] = event["t"]
        elif event["step"] in starts:
            out[event["step"]] = round(event["t"] - starts[event["step"]], 2)
    return out
