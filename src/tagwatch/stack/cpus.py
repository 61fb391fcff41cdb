"""CPU isolation on one machine: the local model server on CPUs of its own, everything else on the rest.

Why: Triton answers a request through a chain of processes and threads (tritonserver, the python-backend stub,
PyTriton's proxy, the ONNX Runtime thread), one request at a time per model instance. On a machine whose cores
are shared with the consumer, SeaweedFS and Tansu, every hop of that chain waits for a core, and the model serves
~95 images/s instead of the ~116 it serves alone, with four requests queued 90 % of the time
(``benchmarks/stream.py``). With the model server alone on ``settings.stack.model_cpus`` CPUs (default 1, its
ONNX Runtime thread count) and everything else on the others, it keeps its pace. A cluster gets the same from
Kubernetes (a Guaranteed pod with integer CPUs under the static CPU manager policy).

The stack pins the services it starts (``pinned_command``: a one-line trampoline sets the affinity, then execs the
server, so every thread and child it ever starts inherits it) and records the CPUs in its state file;
``tagwatch moderate run`` pins itself to the CPUs the model server does not hold (``consumer_cpus``). With
``model_cpus = 0``, or no more CPUs than that, nothing is pinned. Linux only (elsewhere: nothing is pinned).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_TRAMPOLINE = ("import os, sys; os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(',')}); "
               "os.execvp(sys.argv[2], sys.argv[2:])")


@dataclass(frozen=True)
class CpuPlan:
    model: tuple[int, ...]  # the model server's CPUs
    rest: tuple[int, ...]  # everything else's


def usable_cpus() -> set[int]:
    """The CPUs this process may run on (a container's or taskset's limit included)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def cpu_plan(model_cpus: int, available: Iterable[int] | None = None) -> CpuPlan | None:
    """The last ``model_cpus`` usable CPUs for the model server, the others for the rest; None: share them all
    (isolation off, not supported here, or no CPU would be left for the rest)."""
    cpus = sorted(usable_cpus() if available is None else available)
    if model_cpus <= 0 or len(cpus) <= model_cpus or not hasattr(os, "sched_setaffinity"):
        return None
    return CpuPlan(model=tuple(cpus[-model_cpus:]), rest=tuple(cpus[:-model_cpus]))


def pinned_command(command: list[str], cpus: Sequence[int] | None) -> list[str]:
    """``command`` run on ``cpus`` only (unchanged when ``cpus`` is empty or None)."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return command
    return [sys.executable, "-c", _TRAMPOLINE, ",".join(str(c) for c in cpus), *command]


def pin_this_process(cpus: Sequence[int]) -> int:
    """Every thread of this process on ``cpus`` (threads started later inherit it from their creator); returns
    how many threads were pinned."""
    return _pin_threads("/proc/self/task", cpus)


def _pin_threads(task_dir: str, cpus: Iterable[int]) -> int:
    pinned = 0
    try:
        tids = os.listdir(task_dir)
    except OSError:  # the process ended
        return 0
    for tid in tids:
        try:
            os.sched_setaffinity(int(tid), set(cpus))
            pinned += 1
        except OSError:  # the thread ended meanwhile
            pass
    return pinned


def thread_affinities(pid: int) -> list[set[int]]:
    """The CPU set of each thread of ``pid`` (tests and `stack status`)."""
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            found.append(set(os.sched_getaffinity(int(tid))))
        except OSError:
            pass
    return found


def consumer_cpus(settings) -> tuple[int, ...] | None:
    """The CPUs a consumer on this machine should use: those the local stack's running model server does not
    hold. None when no local model server holds CPUs of its own (isolation off, no stack, or no Triton)."""
    from tagwatch.stack.process import is_alive
    from tagwatch.stack.state import read_state

    state = read_state(settings.paths.stack_file)
    triton = state.services.get("triton") if state else None
    if triton is None or not triton.cpus or not is_alive(triton.process):
        return None
    rest = tuple(sorted(usable_cpus() - set(triton.cpus)))
    return rest or None


def pin_consumer(settings) -> tuple[int, ...] | None:
    """Pin this process (a consumer) off the model server's CPUs; the CPUs it now runs on, or None (unchanged)."""
    cpus = consumer_cpus(settings)
    if cpus:  # the caller says where it now runs (the CLI prints it)
        pin_this_process(cpus)
    return cpus


def pin_process_tree(pid: int, cpus: Iterable[int]) -> None:
    """Every thread of ``pid`` and of all its descendants on ``cpus`` (a benchmark switching a running stack
    between shared and isolated CPUs)."""
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return
    for proc in procs:
        _pin_threads(f"/proc/{proc.pid}/task", cpus)
