"""A `tagwatch moderate` process watched from outside: what it owns (its log), what it does (its /metrics), its RSS.

Chaos runs (``benchmarks/chaos.py``, the chaos tests) use this to kill a member only when the kill means
something: it owns partitions right now (no rebalance in progress) and has records in flight.

What it owns and whether it has work in flight come from its /metrics (``tagwatch_assigned``,
``tagwatch_partitions_owned``, ``tagwatch_in_flight``), never from its log: log lines go through rich, which wraps
them when stderr is not a terminal. Tests that check a log message itself search it with whitespace collapsed.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil

NO_LEAVE_GROUP = "closing without LeaveGroup"


def collapse(text: str) -> str:
    return " ".join(text.split())


def owned_from_metrics(text: str) -> list[str] | None:
    """``tagwatch_partitions_owned{partition="t[0]"} 1.0`` lines -> ["t[0]"]; None unless ``tagwatch_assigned`` is 1."""
    if parse_metric(text, "tagwatch_assigned") != 1.0:
        return None
    return sorted(_OWNED.findall(text))


_OWNED = re.compile(r'^tagwatch_partitions_owned\{partition="([^"]+)"\} 1\.0$', re.MULTILINE)


def parse_metric(text: str, name: str) -> float:
    """Sum of a Prometheus metric's samples (all label sets) in exposition text; 0 if absent."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            if head.split("{")[0] == name:
                total += float(value)
    return total


class ConsumerProcess:
    """One consumer subprocess; ``args`` are `tagwatch moderate`'s (a metrics port is added)."""

    def __init__(self, args: list[str], *, env: dict[str, str], log_path: Path, metrics_port: int) -> None:
        self.log_path, self.metrics_port = log_path, metrics_port
        with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tagwatch", "moderate", *args, "--metrics-port", str(metrics_port)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        self.pid = self.proc.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def owned(self) -> list[str] | None:
        """Partitions its last assignment gave (from /metrics); None while rebalancing, starting, or gone."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        return owned_from_metrics(text)

    def metric(self, name: str) -> float | None:
        """A metric from its /metrics (None if the endpoint does not answer: starting, or gone)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as response:
                return parse_metric(response.read().decode(), name)
        except OSError:
            return None

    def is_working(self) -> bool:
        """Owns partitions (no rebalance in progress) and has polled records not yet committed."""
        if not self.alive or not self.owned():
            return False
        return (self.metric("tagwatch_in_flight") or 0) > 0

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def sigkill(self) -> None:
        """No drain, no commit, no goodbye."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (finish the batch, commit, leave), SIGKILL if it does not exit in time; the exit code."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.sigkill()
        return self.proc.returncode

    def rss_mb(self) -> float | None:
        try:
            return psutil.Process(self.pid).memory_info().rss / 2**20
        except psutil.Error:
            return None

    def tail(self, chars: int = 2500) -> str:
        return f"--- {self.log_path.name} (pid {self.pid})\n{self.log_text()[-chars:]}"
