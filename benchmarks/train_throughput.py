"""Training throughput SLO: real-data img/s (S3 shards -> workers -> decode/augment -> step) against the
synthetic-data ceiling of the same model/batch/hardware, and the data-wait fraction. Prints ONE JSON line.

The baseline is the same run with the data pipeline in the main process (--workers 0) side by side.

    PYTHONPATH=src python benchmarks/train_throughput.py [--dataset NAME/VERSION] [--steps 60] [--workers 2]

Without --dataset it starts a private embedded stack in a temp dir and writes a synthetic dataset to its S3.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None, help="NAME/VERSION in the configured S3 (default: a synthetic one)")
    parser.add_argument("--arch", default="tiny_cnn")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--samples", type=int, default=1024, help="synthetic dataset size")
    args = parser.parse_args(argv)

    import torch

    stack = None
    dataset = args.dataset
    if dataset is None:
        from tagwatch.clients import s3_client
        from tagwatch.settings import load_settings
        from tagwatch.stack import Stack, with_stack_endpoints
        from tagwatch.train.synthetic import build_synthetic_dataset, write_dataset_to_s3

        state = Path(tempfile.mkdtemp(prefix="tw-bench-"))
        os.environ.update({"TAGWATCH_PATHS__STATE_DIR": str(state), "TAGWATCH_STACK__FREE_PORTS": "true",
                           "TAGWATCH_S3__SECRET_ACCESS_KEY": secrets.token_hex(12)})
        settings = load_settings()
        stack = Stack(settings)
        stack.up()
        settings = with_stack_endpoints(settings)
        synthetic = build_synthetic_dataset(num_samples=args.samples, num_labels=64, image_size=160,
                                            samples_per_shard=64, name="bench")
        write_dataset_to_s3(synthetic, client=s3_client(settings.s3), bucket=settings.s3.buckets.datasets)
        dataset = "bench/v1"
    from tagwatch.train.pretrain import main as pretrain

    try:
        runs = {}
        for label, workers in (("baseline_workers_0", 0), (f"workers_{args.workers}", args.workers)):
            out = Path(tempfile.mkdtemp(prefix="tw-bench-run-"))
            runs[label] = pretrain([
                "--dataset", dataset, "--arch", args.arch, "--width", str(args.width), "--image-size",
                str(args.image_size), "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--workers",
                str(workers), "--calibrate-steps", "10", "--no-evaluate", "--no-progress", "--log-every",
                str(args.steps), "--checkpoint-root", str(out / "ck"), "--output-dir", str(out), "--lr", "0.01",
                *(["--threads", str(args.threads)] if args.threads else [])])
    finally:
        if stack is not None:
            stack.down()
    main_run = runs[f"workers_{args.workers}"]
    base = runs["baseline_workers_0"]
    print(json.dumps({
        "benchmark": "train_throughput", "dataset": dataset, "arch": args.arch, "image_size": args.image_size,
        "batch_size": args.batch_size, "steps": args.steps, "workers": args.workers,
        "real_img_s": round(main_run["img_s"], 1), "synthetic_img_s": round(main_run["ceiling_img_s"], 1),
        "ratio": round(main_run["img_s"] / main_run["ceiling_img_s"], 3),
        "data_wait_fraction": round(main_run["data_wait_fraction"], 3),
        "baseline_real_img_s": round(base["img_s"], 1), "baseline_synthetic_img_s": round(base["ceiling_img_s"], 1),
        "baseline_ratio": round(base["img_s"] / base["ceiling_img_s"], 3),
        "baseline_data_wait_fraction": round(base["data_wait_fraction"], 3),
        "speedup_vs_baseline": round(main_run["img_s"] / base["img_s"], 3),
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "device": "cuda" if torch.cuda.is_available() else "cpu",
        "python": platform.python_version(), "torch": torch.__version__,
    }))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
