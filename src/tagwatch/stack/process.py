"""Start server processes detached from the CLI, and stop exactly those: each in its own process group.

A service is spawned as the leader of a new session (``start_new_session=True``), so its process group id is
the recorded PID and everything it forks (tritonserver, its python-backend stubs) stays in that group. Stopping
signals the whole group; when the leader died (SIGKILL, OOM) but members survive, the group's orphans are still
found and stopped. Guarded against PID reuse: the record keeps the leader's create_time and a token that the
spawned environment carries down to every descendant.

No ``PR_SET_PDEATHSIG`` on the leader: its parent is the short-lived `tagwatch stack up` process, and the server
must outlive it. (PyTriton sets it on tritonserver already.) The group cleanup is what stops grandchildren.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict

log = logging.getLogger(__name__)

# Set in each service's environment (inherited by all its descendants) to the record's group_token.
GROUP_TOKEN_ENV = "TAGWATCH_STACK_GROUP"
_CREATE_TIME_SLACK_S = 0.1  # psutil create times tick in 1/CLK_TCK; a member is never older than its leader


class ProcessRecord(BaseModel):
    """What the state file keeps of one started process: enough to find it again and to know it is ours."""

    model_config = ConfigDict(frozen=True)

    pid: int
    create_time: float  # psutil's; a reused PID has a different one
    command: list[str]
    log_file: Path
    # The value of TAGWATCH_STACK_GROUP in the spawned environment; None in state files written before it existed.
    group_token: str | None = None


def spawn(command: list[str], *, env: dict[str, str], log_file: Path, cwd: Path) -> ProcessRecord:
    """Start ``command`` in its own session, stdout+stderr appended to ``log_file``.

    The child gets ``env`` on top of a copy of this process's environment, so credentials reach it without
    ever appearing on its command line (where `ps` would show them).
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    child_env = {**os.environ, **env, GROUP_TOKEN_ENV: token}
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
    return ProcessRecord(pid=proc.pid, create_time=create_time, command=command, log_file=log_file, group_token=token)


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


def group_members(record: ProcessRecord) -> list[psutil.Process]:
    """Live processes of the group (or session) ``record`` leads, the leader included if alive.

    Members outlive a SIGKILLed leader (they are reparented, keeping their pgid). A process counts only if its
    pgid or session id is the recorded PID, it was created no earlier than the leader, and (records with a token)
    its environment carries the token. If the PID now belongs to another process, the group cannot be ours (the
    kernel does not hand out a PID still in use as a group or session id), so nothing is returned.
    """
    try:
        holder = psutil.Process(record.pid)
        if abs(holder.create_time() - record.create_time) > 0.5:
            return []
    except psutil.NoSuchProcess:
        pass
    members = []
    for proc in psutil.process_iter():
        try:
            if record.pid not in (os.getpgid(proc.pid), os.getsid(proc.pid)):
                continue
            if proc.create_time() < record.create_time - _CREATE_TIME_SLACK_S:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                _reap(proc.pid)
                continue
            if record.group_token is not None and proc.environ().get(GROUP_TOKEN_ENV) != record.group_token:
                continue
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError, PermissionError):
            continue
        members.append(proc)
    return members


def stop(record: ProcessRecord, *, timeout_s: float, kill: bool = False) -> str:
    """Stop the whole process group ``record`` leads: SIGTERM, wait up to ``timeout_s``, then SIGKILL.

    ``kill=True`` sends SIGKILL at once (chaos tests). Returns 'not running', 'stopped', 'killed', or
    'orphans stopped' / 'orphans killed' when the leader was already dead but members of its group were not.
    """
    leader_alive = find(record) is not None
    members = group_members(record)
    if not members:
        _reap(record.pid)
        return "not running"
    prefix = "" if leader_alive else "orphans "
    if not leader_alive:
        log.warning("pid %d is gone but %d process(es) of its group are not (%s); stopping them",
                    record.pid, len(members), ", ".join(f"{p.pid}" for p in members))
    if kill:
        _signal_group(record, members, signal.SIGKILL)
        _, alive = psutil.wait_procs(members, timeout=max(timeout_s, 5))
        _reap(record.pid)
        return prefix + "killed"
    _signal_group(record, members, signal.SIGTERM)
    _reap(record.pid)
    _, alive = psutil.wait_procs(members, timeout=timeout_s)
    late = [p for p in group_members(record) if p not in members]  # forked while stopping
    if not alive and not late:
        _reap(record.pid)
        return prefix + "stopped"
    alive = [*alive, *late]
    log.warning("%d process(es) of pid %d's group did not stop in %.0fs; killing them",
                len(alive), record.pid, timeout_s)
    _signal_group(record, alive, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=5)
    _reap(record.pid)
    return prefix + "killed"


def _signal_group(record: ProcessRecord, members: list[psutil.Process], signum: int) -> None:
    """Signal the process group (also reaches members forked after the listing), then each listed member (a
    session member that moved to a group of its own)."""
    try:
        os.killpg(record.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
    for member in members:
        _signal(member, signum)


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
