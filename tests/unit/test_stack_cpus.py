"""CPU isolation (stack/cpus.py): the plan, the trampoline that pins a started server before it runs, pinning a
running process's threads, and the consumer's CPUs read from the stack's state file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import psutil

from tagwatch.stack.cpus import consumer_cpus, cpu_plan, pinned_command, usable_cpus
from tagwatch.stack.ports import StackPorts
from tagwatch.stack.process import ProcessRecord
from tagwatch.stack.state import ServiceState, StackState, write_state
from tests.conftest import make_settings

AFFINITY = "import os, json; print(json.dumps(sorted(os.sched_getaffinity(0))))"


def test_plan_gives_the_model_the_last_cpus_and_keeps_one_for_the_rest() -> None:
    assert cpu_plan(1, [0, 1]).model == (1,) and cpu_plan(1, [0, 1]).rest == (0,)
    plan = cpu_plan(2, range(8))
    assert plan.model == (6, 7) and plan.rest == (0, 1, 2, 3, 4, 5)
    assert cpu_plan(1, [3, 5, 9]).model == (9,)  # the CPUs a container allows, not 0..n-1
    assert cpu_plan(0, range(8)) is None  # isolation off
    assert cpu_plan(1, [0]) is None and cpu_plan(2, [0, 1]) is None  # nothing would be left for the rest


def test_trampoline_pins_the_server_before_it_runs() -> None:
    cpu = min(usable_cpus())
    out = subprocess.run(pinned_command([sys.executable, "-c", AFFINITY], [cpu]), capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) == [cpu]
    assert pinned_command(["weed", "mini"], None) == ["weed", "mini"] == pinned_command(["weed", "mini"], [])


def test_pin_this_process_covers_running_threads_and_later_ones() -> None:
    # in a child: pinning the test process itself would confine the rest of the suite
    code = """
import json, os, threading, time
from tagwatch.stack.cpus import pin_this_process, thread_affinities
stop = threading.Event()
early = threading.Thread(target=stop.wait); early.start()
cpu = min(os.sched_getaffinity(0))
assert pin_this_process([cpu]) >= 2
late = threading.Thread(target=stop.wait); late.start()
print(json.dumps([sorted(a) for a in thread_affinities(os.getpid())]))
stop.set()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    found = json.loads(out.stdout)
    assert len(found) == 3 and all(a == [min(usable_cpus())] for a in found)


def test_consumer_cpus_are_those_the_running_model_server_does_not_hold(tmp_path) -> None:
    settings = make_settings(tmp_path)
    settings.paths.stack_file.parent.mkdir(parents=True, exist_ok=True)
    assert consumer_cpus(settings) is None  # no stack
    me = psutil.Process()
    model_cpu = max(usable_cpus())
    state = StackState(host="127.0.0.1", ports=StackPorts(**{f: 1 for f in ("s3", "s3_grpc", "master", "master_grpc",
                       "volume", "volume_grpc", "filer", "filer_grpc", "admin", "admin_grpc", "kafka")}))
    record = ProcessRecord(pid=me.pid, create_time=me.create_time(), command=["tritonserver"], log_file=tmp_path / "l")
    state.services["triton"] = ServiceState(name="triton", process=record, version="x", endpoint="grpc://x",
                                            started_at=datetime.now(timezone.utc), cpus=[model_cpu])
    write_state(settings.paths.stack_file, state)
    rest = tuple(sorted(usable_cpus() - {model_cpu}))
    assert consumer_cpus(settings) == (rest or None)
    state.services["triton"] = state.services["triton"].model_copy(update={"cpus": None})  # isolation off
    write_state(settings.paths.stack_file, state)
    assert consumer_cpus(settings) is None
    assert os.sched_getaffinity(0) == usable_cpus()  # nothing here pinned the test process
