"""The final stats file of `tagwatch moderate --stats-out FILE`: what a program reads instead of log lines.

One process writes ``FILE`` with its RunStats fields (consumed, decided, dead_lettered, ...). With
``--processes N`` child ``i`` writes ``child_stats_path(FILE, i)`` (``stats.json`` -> ``stats.0.json``) and the
parent, once every child has exited, writes ``FILE`` with the sum of each field over the children that wrote one,
plus ``processes`` (N) and ``reported`` (how many children wrote stats; fewer than N means some were killed).
Every file is written atomically (tagwatch.output.write_json_atomic).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from tagwatch.output import write_json_atomic

log = logging.getLogger(__name__)


def child_stats_path(path: Path, index: int) -> Path:
    """Where child ``index`` of a ``--processes N`` run writes its stats: ``stats.json`` -> ``stats.<index>.json``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{index}{path.suffix}")


def write_stats(path: Path, stats: Any) -> None:
    """``stats`` (a RunStats dataclass or a dict) as one JSON object in ``path``, atomically."""
    write_json_atomic(path, dataclasses.asdict(stats) if dataclasses.is_dataclass(stats) else dict(stats))


def read_stats(path: Path) -> dict[str, Any] | None:
    """The stats a process wrote, or None when it wrote none (killed before its end) or the file is unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("stats file %s is unreadable: %s", path, error)
        return None
    if not isinstance(data, dict):
        log.warning("stats file %s holds %s, not an object", path, type(data).__name__)
        return None
    return data


def combine(children: list[dict[str, Any] | None]) -> dict[str, Any]:
    """The parent's stats: every numeric field summed over the children that reported, plus processes/reported."""
    reported = [c for c in children if c is not None]
    totals: dict[str, Any] = {}
    for child in reported:
        for key, value in child.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
    return {**totals, "processes": len(children), "reported": len(reported)}
