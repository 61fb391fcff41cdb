"""Progress and stage reporting for the demo: one rich Progress with a bar per named task, and timed stages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class DemoProgress:
    """Bars keyed by label (created on first update) and timed stages; ``stage_seconds`` keeps every duration."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.stage_seconds: dict[str, float] = {}
        self._bars: Progress | None = None
        self._tasks: dict[str, int] = {}

    @contextmanager
    def stage(self, name: str, what: str) -> Iterator[None]:
        self.console.rule(f"[bold]{name}[/]", align="left")
        self.console.print(f"[dim]{what}[/]", highlight=False)
        t0 = time.monotonic()
        self._bars = Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), TextColumn("{task.fields[detail]}"), console=self.console)
        self._tasks = {}
        self._bars.start()
        ok = False
        try:
            yield
            ok = True
        finally:
            self._bars.stop()
            self._bars = None
            seconds = time.monotonic() - t0
            self.stage_seconds[name] = round(seconds, 2)
            mark = "[green]done[/]" if ok else "[red]failed[/]"
            self.console.print(f"  {mark} {name} in {seconds:.1f}s", highlight=False)

    def update(self, label: str, *, completed: float, total: float | None = None, detail: str = "") -> None:
        if self._bars is None:
            return
        if label not in self._tasks:
            self._tasks[label] = self._bars.add_task(label, total=total, detail=detail)
        self._bars.update(self._tasks[label], completed=completed, total=total, detail=detail)

    def advance(self, label: str, n: float = 1) -> None:
        if self._bars is not None and label in self._tasks:
            self._bars.advance(self._tasks[label], n)

    def say(self, text: str) -> None:
        self.console.print(f"  • {text}", highlight=False)
