"""Start server processes detached from the CLI, and stop exactly those (by PID, guarded against PID reuse)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict

log = logging.getLogger(__name__)


class ProcessRecord(BaseModel):
    """What the state file keeps of one started process: enough to find it again and to know it is ours."""

    model_config = ConfigDict(frozen=True)

    pid: int
    create_time: float  # psutil's; a reused PID has a different one
    command: list[str]
    log_file: Path


def spawn(command: list[str], *, env: dict[str, str], log_file: Path, cwd: Path) -> ProcessRecord:
    """Start ``command`` in its own session, stdout+stderr appended to ``log_file``.

    The child gets ``env`` on top of a copy of this process's environment, so credentials reach it without
    ever appearing on its command line (where `ps` would show them).
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, **env}
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the CLI; Ctrl+C in the terminal does not reach it
        )
    create_time = psutil.Process(proc.pid).create_time()
    log.debug("started pid %d: %s", proc.pid, command[0])
    return ProcessRecord(pid=proc.pid, create_time=create_time, command=command, log_file=log_file)


def find(record: ProcessRecord) -> psutil.Process | None:
    """The live process of ``record``, or None if it exited or its PID now belongs to someone else."""
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > 0.5:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(record.pid)
            return None
        return proc
    except psutil.NoSuchProcess:
        return None


def is_alive(record: ProcessRecord) -> bool:
    return find(record) is not None


def stop(record: ProcessRecord, *, timeout_s: float) -> str:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL. Returns 'not running', 'stopped' or 'killed'.

    Children the server forked are stopped too (they are ours: we started their parent).
    """
    proc = find(record)
    if proc is None:
        return "not running"
    try:
        children = proc.children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    family = [proc, *children]
    for member in family:
        _signal(member, signal.SIGTERM)
    _reap(record.pid)
    _, alive = psutil.wait_procs(family, timeout=timeout_s)
    if not alive:
        _reap(record.pid)
        return "stopped"
    for member in alive:
        log.warning("pid %d did not stop in %.0fs; killing it", member.pid, timeout_s)
        _signal(member, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=5)
    _reap(record.pid)
    return "killed"


def _signal(proc: psutil.Process, signum: int) -> None:
    try:
        proc.send_signal(signum)
    except psutil.NoSuchProcess:
        pass


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our direct child (started in this same CLI process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_for(predicate, *, timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll ``predicate`` until it returns true or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of a log file (empty if it does not exist)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return data.splitlines()[-lines:]
