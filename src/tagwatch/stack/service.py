"""The seam every embedded server fits: SeaweedFS and Tansu now, Triton when the serving part joins.

A service knows its command line, the environment its child needs, the ports it binds, how to tell it is
healthy, and what to create once it is (buckets, topics). The manager does the starting, waiting and stopping.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from abc import ABC, abstractmethod
from pathlib import Path

from tagwatch.errors import BinaryNotFoundError
from tagwatch.settings import Settings
from tagwatch.stack.ports import StackPorts


class EmbeddedService(ABC):
    name: str
    # An optional service starts only when ``skip_reason()`` is None (Triton: when a production model exists);
    # `stack status` does not count it as down when it is not running.
    optional: bool = False
    runs_model: bool = False  # the model server: CPUs of its own when settings.stack.model_cpus > 0 (stack/cpus.py)

    def __init__(self, settings: Settings, ports: StackPorts) -> None:
        self.settings = settings
        self.ports = ports
        self.host = settings.stack.host

    @property
    def data_dir(self) -> Path:
        return self.settings.paths.state_dir / self.name

    @property
    def log_file(self) -> Path:
        return self.settings.paths.logs_dir / f"{self.name}.log"

    @abstractmethod
    def binary(self) -> Path: ...

    @abstractmethod
    def command(self) -> list[str]: ...

    def env(self) -> dict[str, str]:
        return {}

    @abstractmethod
    def bound_ports(self) -> dict[str, int]: ...

    @abstractmethod
    def endpoint(self) -> str: ...

    @abstractmethod
    def is_healthy(self) -> bool:
        """One quick probe; the manager polls it until the start timeout."""

    def skip_reason(self) -> str | None:
        """Why an optional service should not start now (None: start it). Called after earlier services are up."""
        return None

    def prepare(self) -> None:
        """Create what the platform expects once the service is healthy (idempotent)."""

    def after_stop(self) -> None:
        """Remove what the stopped process leaves behind outside the state dir."""

    def version(self) -> str:
        try:
            out = subprocess.run(
                [str(self.binary()), *self.version_args()], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return self.parse_version(out.stdout + out.stderr)

    def version_args(self) -> list[str]:
        return ["--version"]

    def parse_version(self, output: str) -> str:
        return output.strip().splitlines()[0] if output.strip() else "unknown"


def resolve_binary(configured: Path | None, *, name: str, package_hint: str, setting: str, fallbacks: list[Path]) -> Path:
    """Find a server binary: the configured path, else the package's, else PATH. Clear error if none."""
    candidates = [configured] if configured else [*fallbacks]
    if not configured and (found := shutil.which(name)):
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate and candidate.is_file() and _executable(candidate):
            return candidate
    where = str(configured) if configured else ", ".join(str(c) for c in candidates) or "PATH"
    raise BinaryNotFoundError(
        f"the {name} binary was not found (looked at {where})",
        hint=f"install it with `{package_hint}` (`make install` does) or point {setting} at it",
    )


def venv_bin(name: str) -> Path:
    """A console binary installed beside this Python (pip puts package binaries there)."""
    return Path(sys.executable).parent / name


def _executable(path: Path) -> bool:
    import os

    return os.access(path, os.X_OK)
