"""torchrun from a test: the trainer's own command (``tagwatch.train.cli.torchrun_command``), started in the
background so the test can signal it, with this checkout's ``src`` first on PYTHONPATH (the ranks are new
interpreters: they must import the code under test, not another install)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Mapping

from tagwatch.train.cli import torchrun_command, torchrun_env

SRC = Path(__file__).resolve().parents[2] / "src"


def rank_env(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` for torchrun ranks: gloo on loopback, one OpenMP thread per rank, this checkout's code."""
    return {**torchrun_env(base), "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


def start_torchrun(kind: str, argv: list[str], env: Mapping[str, str], *, nproc: int = 2) -> subprocess.Popen:
    """``python -m tagwatch.train KIND argv`` on ``nproc`` local ranks, stdout and stderr merged, in its own session."""
    return subprocess.Popen(torchrun_command(kind, argv, nproc=nproc), env=rank_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill_tree(pid: int) -> None:
    """SIGKILL torchrun, its ranks and their data workers at once (torchrun puts ranks in their own sessions, so a
    process-group kill would miss them)."""
    import psutil

    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
