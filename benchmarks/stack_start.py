"""How long the embedded stack takes to come up, and what tagwatch's orchestration adds.

Baseline: the bare binaries (`weed mini`, then `tansu broker`) started by hand and polled until their TCP ports
accept. Measured: `Stack.up()` (pre-flight, health via S3 ListBuckets and Kafka metadata, buckets and topics
created), cold (new state dir) and warm (restart over existing data), plus `down` and a `check` round trip.
Prints one JSON line.

    .venv/bin/python benchmarks/stack_start.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tagwatch.settings import load_settings
from tagwatch.stack import Stack, run_checks, with_stack_endpoints
from tagwatch.stack.ports import StackPorts
from tagwatch.stack.seaweedfs import SeaweedFS
from tagwatch.stack.tansu import Tansu


def _wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(port)


def bare_start(tmp: Path) -> float:
    """Start both binaries with the same flags tagwatch uses; time until both ports accept."""
    settings = load_settings(paths={"state_dir": tmp}, stack={"free_ports": True})
    ports = StackPorts.pick_free("127.0.0.1")
    procs = []
    t0 = time.monotonic()
    try:
        for cls, port in ((SeaweedFS, ports.s3), (Tansu, ports.kafka)):
            service = cls(settings, ports)
            service.data_dir.mkdir(parents=True, exist_ok=True)
            service.log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(service.log_file, "ab") as log:
                procs.append(
                    subprocess.Popen(service.command(), env={**os.environ, **service.env()}, stdout=log, stderr=log)
                )
            _wait_port(port)
        return time.monotonic() - t0
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bare, cold, warm, down, check = [], [], [], [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            bare.append(bare_start(Path(tmp)))
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(paths={"state_dir": tmp}, stack={"free_ports": True})
            stack = Stack(settings)
            cold.append(stack.up().seconds)
            t0 = time.monotonic()
            results = run_checks(with_stack_endpoints(settings))
            check.append(time.monotonic() - t0)
            assert all(r.ok for r in results), results
            t0 = time.monotonic()
            stack.down()
            down.append(time.monotonic() - t0)
            warm.append(stack.up().seconds)
            stack.down()
    med = statistics.median
    print(
        json.dumps(
            {
                "benchmark": "stack_start",
                "repeats": args.repeats,
                "bare_binaries_ports_open_s": round(med(bare), 3),
                "stack_up_cold_s": round(med(cold), 3),
                "stack_up_warm_s": round(med(warm), 3),
                "stack_down_s": round(med(down), 3),
                "stack_check_s": round(med(check), 3),
                "cold_over_bare_ratio": round(med(cold) / med(bare), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
