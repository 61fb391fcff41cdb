"""Where a local Triton server keeps its state: ``<state_dir>/triton`` (``served.json`` says what is served) and
PyTriton's workspace in /tmp, recorded per server PID.

Apart from ``server`` so that the stack, which starts and stops the server process, can clean up after it
without importing the server (and through it the registry and ONNX Runtime).
"""

from __future__ import annotations

import os
from pathlib import Path

from tagwatch.settings import Settings


def triton_dir(settings: Settings) -> Path:
    return settings.paths.state_dir / "triton"


def served_file(settings: Settings) -> Path:
    return triton_dir(settings) / "served.json"


def make_workspace(settings: Settings) -> Path:
    """PyTriton's workspace holds unix sockets, whose paths must stay under ~107 bytes: a short dir in /tmp.

    Its path is recorded per server PID in the state dir, so `stack down` can remove it even after a SIGKILL.
    """
    import tempfile

    parent = Path(tempfile.mkdtemp(prefix="tw-triton-"))
    (triton_dir(settings) / f"workspace.{os.getpid()}.path").write_text(str(parent))
    return parent / "ws"  # PyTriton wants to create the workspace itself


def remove_workspace(settings: Settings, *, pid: int | None = None) -> None:
    """Remove this server's workspace (``pid``), or, with no pid, those of servers that are no longer running."""
    import shutil

    import psutil

    for record in triton_dir(settings).glob("workspace.*.path"):
        owner = int(record.name.split(".")[1]) if record.name.split(".")[1].isdigit() else -1
        if (pid is not None and owner != pid) or (pid is None and psutil.pid_exists(owner)):
            continue
        path = Path(record.read_text().strip())
        if path.name.startswith("tw-triton-"):
            shutil.rmtree(path, ignore_errors=True)
        record.unlink(missing_ok=True)
