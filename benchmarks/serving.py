"""Serving latency and throughput through a real local Triton, against ONNX Runtime called directly.

Self-contained: a private stack (SeaweedFS) in a temp dir, a model exported (parity-checked) and registered, a
Triton server (`python -m tagwatch.serving.server`) on free ports serving `production`, load from tritonclient
over gRPC (`tagwatch.serving.client`) with N threads each sending one-image requests; then everything stopped.

Baseline: the same model.onnx in ONNX Runtime called directly (in a fresh process, as the server's is), batch 1
(sequential) and batch 16; measured again after the Triton runs, as the noise floor of a shared machine.
Measured: Triton at concurrency 1 (batch 1, no batching possible) and at higher concurrencies, where Triton's
dynamic batcher forms batches (mean batch = inferences / executions from Triton's own metrics).
Client threads and server share the machine's cores, so the figures are what one box gives, not a cluster's.

    .venv/bin/python benchmarks/serving.py [--arch resnet18|tiny] [--seconds 5] [--concurrency 1,4,16]
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from tagwatch.clients import s3_client
from tagwatch.export import export_model
from tagwatch.export.export import load_parity_images
from tagwatch.export.onnx_model import ort_session
from tagwatch.preprocess import DEFAULT_PRESET
from tagwatch.registry import ModelRegistry
from tagwatch.serving.client import ModelClient
from tagwatch.settings import load_settings
from tagwatch.stack import Stack, with_stack_endpoints
from tagwatch.stack.ports import pick_free_ports

NUM_LABELS, NUM_CATEGORIES = 1000, 8


def build_model(arch: str):
    import torch
    from torch import nn

    torch.manual_seed(0)
    if arch == "tiny":
        from tagwatch.export.tiny import TinyTwoHead

        return TinyTwoHead(num_labels=NUM_LABELS, num_categories=NUM_CATEGORIES).eval()
    import torchvision

    class TwoHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = getattr(torchvision.models, arch)(weights=None)
            width = self.backbone.fc.in_features
            self.backbone.fc = nn.Identity()
            self.hashtags = nn.Linear(width, NUM_LABELS)
            self.categories = nn.Linear(width, NUM_CATEGORIES)

        def forward(self, images):
            z = self.backbone(images)
            return self.hashtags(z), torch.sigmoid(self.categories(z))

    return TwoHead().eval()


def summarize(latencies_s: list[float], wall_s: float, images: int) -> dict:
    ms = np.asarray(latencies_s) * 1000
    return {"requests": len(ms), "images": images, "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "throughput_img_s": round(images / wall_s, 1)}


def bench_ort(session, images: np.ndarray, *, batch: int, seconds: float) -> dict:
    latencies, count, i = [], 0, 0
    session.run(None, {"images": images[:batch]})
    t_end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < t_end:
        chunk = images[(i * batch) % (len(images) - batch) :][:batch]
        t = time.perf_counter()
        session.run(None, {"images": chunk})
        latencies.append(time.perf_counter() - t)
        count += len(chunk)
        i += 1
    return summarize(latencies, time.perf_counter() - t0, count)


def bench_triton(url: str, model: str, images: np.ndarray, *, concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []
    start = threading.Barrier(concurrency + 1)

    def worker(k: int) -> None:
        mine = []
        with ModelClient(url=url, model_name=model, protocol="grpc", timeout_s=30) as client:
            client.infer_batch(images[k : k + 1])  # connect + warm
            start.wait()
            j = k
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    client.infer_batch(images[j % len(images) : j % len(images) + 1])
                except Exception as error:  # counted and reported
                    errors.append(type(error).__name__)
                    continue
                mine.append(time.perf_counter() - t)
                j += concurrency
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    out = summarize(latencies, wall, len(latencies))
    out["errors"] = len(errors)
    return out


def triton_counts(port: int, model: str) -> tuple[float, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    inf = exe = 0.0
    for line in body.splitlines():
        if f'model="{model}"' in line:
            if line.startswith("nv_inference_count{"):
                inf += float(line.rsplit(" ", 1)[1])
            elif line.startswith("nv_inference_exec_count{"):
                exe += float(line.rsplit(" ", 1)[1])
    return inf, exe


def run_baseline(onnx_path: Path, seconds: float, threads: int) -> dict:
    """ONNX Runtime in a fresh process, like the server's: no torch OpenMP threads spinning beside it."""
    done = subprocess.run([sys.executable, __file__, "--ort-baseline", str(onnx_path), "--seconds", str(seconds),
                           "--ort-threads", str(threads)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet18", help="resnet18 (default), resnet50, or tiny")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measured mode")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated client thread counts")
    parser.add_argument("--ort-threads", type=int, default=1,
                        help="ONNX Runtime intra-op threads, the same for the baseline and the server (on 2 shared "
                             "cores 1 beats ORT's default spinning pool)")
    parser.add_argument("--ort-baseline", type=Path, help=argparse.SUPPRESS)  # internal: baseline in a fresh process
    args = parser.parse_args()
    if args.ort_baseline:
        images = load_parity_images(DEFAULT_PRESET, count=64)
        session = ort_session(args.ort_baseline, threads=args.ort_threads)
        print(json.dumps({"batch1": bench_ort(session, images, batch=1, seconds=args.seconds),
                          "batch16": bench_ort(session, images, batch=16, seconds=args.seconds)}))
        return
    concurrencies = [int(c) for c in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory(prefix="tw-bench-") as tmp:
        root = Path(tmp)
        settings = load_settings(paths={"state_dir": root / "state"}, stack={"free_ports": True},
                                 triton={"model_name": "bench-serving"})
        stack = Stack(settings)
        stack.up()
        proc = None
        try:
            settings = with_stack_endpoints(settings)
            images = load_parity_images(DEFAULT_PRESET, count=64)
            t0 = time.monotonic()
            result = export_model(build_model(args.arch), out_dir=root / "export", model_name="bench-serving",
                                  labels=[f"tag{i}" for i in range(NUM_LABELS)],
                                  categories=[f"cat{i}" for i in range(NUM_CATEGORIES)], preset=DEFAULT_PRESET,
                                  parity_images=images[:16], max_batch_size=32, preferred_batch_sizes=(8, 16, 32),
                                  max_queue_delay_us=2000)
            export_s = time.monotonic() - t0
            registry = ModelRegistry(s3_client(settings.s3), bucket=settings.s3.buckets.models,
                                     model_name="bench-serving")
            registry.register(result.out_dir, alias="production")

            baseline = run_baseline(result.onnx_path, args.seconds, args.ort_threads)

            http, grpc, metrics = pick_free_ports("127.0.0.1", 3)
            env = {**os.environ, "TAGWATCH_PATHS__STATE_DIR": str(root / "state"),
                   "TAGWATCH_TRITON__MODEL_NAME": "bench-serving", "TAGWATCH_S3__ENDPOINT_URL": settings.s3.endpoint_url}
            t0 = time.monotonic()
            proc = subprocess.Popen([sys.executable, "-m", "tagwatch.serving.server", "--http-port", str(http),
                                     "--grpc-port", str(grpc), "--metrics-port", str(metrics),
                                     "--ort-threads", str(args.ort_threads)], env=env,
                                    stdout=open(root / "server.log", "wb"), stderr=subprocess.STDOUT)
            url = f"127.0.0.1:{grpc}"
            with ModelClient(url=url, model_name="bench-serving") as client:
                client.wait_ready(120)
            ready_s = time.monotonic() - t0
            served_file = root / "state" / "triton" / "served.json"
            deadline = time.monotonic() + 30
            while not served_file.exists() and time.monotonic() < deadline:  # written just after Triton is ready
                time.sleep(0.1)
            served = json.loads(served_file.read_text())
            triton = {}
            for c in concurrencies:
                before = triton_counts(metrics, "bench-serving")
                triton[f"c{c}"] = bench_triton(url, "bench-serving", images, concurrency=c, seconds=args.seconds)
                after = triton_counts(metrics, "bench-serving")
                executions = after[1] - before[1]
                triton[f"c{c}"]["mean_batch"] = round((after[0] - before[0]) / executions, 2) if executions else None
            # Again after the Triton runs (server idle): on a shared machine the drift between the two baseline
            # runs is the noise floor of every ratio below.
            baseline["after_triton_runs"] = run_baseline(result.onnx_path, args.seconds, args.ort_threads)
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
            stack.down()

    best = max(triton.values(), key=lambda r: r["throughput_img_s"])
    c1 = triton.get("c1")
    print(json.dumps({
        "benchmark": "serving", "arch": args.arch, "input": [3, DEFAULT_PRESET.crop, DEFAULT_PRESET.crop],
        "onnx_mb": round(result.info["onnx"]["bytes"] / 1e6, 2), "export_s": round(export_s, 1),
        "parity_max_abs_diff": result.parity.worst(), "triton_start_s": round(ready_s, 2),
        "fetch_verify_load_s": served["start_fetch_verify_load_s"], "ort_session_load_s": served["load_s"],
        "cpus": os.cpu_count(), "ort_threads": args.ort_threads, "seconds_per_mode": args.seconds,
        "baseline_onnxruntime": baseline, "triton_grpc": triton,
        "ratios": {
            "triton_c1_p50_over_ort_batch1_p50": round(c1["p50_ms"] / baseline["batch1"]["p50_ms"], 2) if c1 else None,
            "triton_best_throughput_over_c1": round(best["throughput_img_s"] / c1["throughput_img_s"], 2) if c1 else None,
            "triton_best_throughput_over_ort_batch1": round(best["throughput_img_s"]
                                                            / baseline["batch1"]["throughput_img_s"], 2),
            "triton_best_throughput_over_ort_batch16": round(best["throughput_img_s"]
                                                             / baseline["batch16"]["throughput_img_s"], 2),
        },
    }))


if __name__ == "__main__":
    main()
