"""Wall time of the local pretrain -> deploy pipeline, and what kfp.local adds.

Baseline: the same step functions (``tagwatch.pipeline.steps``) called one after another in one process, no
kfp. Measured: ``run_pretrain_and_deploy`` (kfp.local SubprocessRunner, one subprocess per task, artifacts on
disk). Each on a fresh private embedded stack (free ports, temp state dir) with the same quick parameters, so
both start from an empty registry and ingest from scratch. Prints one JSON line.

    .venv/bin/python benchmarks/pipeline_local.py [--full]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tagwatch.pipeline import steps
from tagwatch.pipeline.deploy import stop_local_triton
from tagwatch.pipeline.local import FULL_PARAMS, QUICK_PARAMS, _environment, run_pretrain_and_deploy, settings_env
from tagwatch.stack import private_stack


def run_direct(settings, params: dict, work: Path) -> dict[str, float]:
    """Every step in this process, timed; the environment the steps read is the same the pipeline gets."""
    with _environment(settings_env(settings)):
        return _run_steps(params, work)


def _run_steps(params: dict, work: Path) -> dict[str, float]:
    seconds: dict[str, float] = {}

    def timed(step, function, **kwargs):
        t0 = time.monotonic()
        result = function(**kwargs)
        seconds[step] = round(time.monotonic() - t0, 2)
        return result

    timed("ingest", steps.ingest_posts, source=params["source"], limit=params["limit"], seed=0)
    built = timed("build-dataset", steps.build_dataset, name=params["dataset_name"], sources=[],
                  shard_samples=params["shard_samples"], top_k=params["top_k"], min_count=params["min_count"],
                  seed=0, categories_yaml=params.get("categories_yaml", ""))
    pre = timed("pretrain", steps.pretrain, mode="local", dataset=built["dataset"], run_id="bench-pretrain",
                steps=params["pretrain_steps"], arch=params["arch"], width=params["width"],
                image_size=params["image_size"], batch_size=params["batch_size"], workers=params["workers"],
                nproc=params["nproc"], output_dir=work / "pretrain")
    tr = timed("transfer", steps.transfer, dataset=built["dataset"], init=pre["checkpoint"], run_id="bench-transfer",
               steps=params["transfer_steps"], batch_size=params["batch_size"], workers=params["workers"],
               output_dir=work / "transfer")
    timed("export", steps.export_model, checkpoint=tr["checkpoint"], out_dir=work / "export", policy=tr["policy"])
    evaluation = timed("evaluate", steps.evaluate, export_dir=work / "export", dataset=built["dataset"],
                       out_dir=work / "evaluation")
    registered = timed("register", steps.register, export_dir=work / "export", metrics=evaluation["metrics"])
    timed("deploy", steps.deploy, mode="local", version=registered["version"])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the non-quick parameters (openclipart, 2 ranks)")
    args = parser.parse_args()
    params = FULL_PARAMS if args.full else QUICK_PARAMS
    figures: dict = {"mode": "full" if args.full else "quick"}
    with tempfile.TemporaryDirectory(prefix="tw-bench-pipe-") as tmp:
        root = Path(tmp)
        with private_stack(root / "direct" / "state") as settings:
            try:
                t0 = time.monotonic()
                direct = run_direct(settings, params, root / "direct" / "work")
                figures["direct_wall_s"] = round(time.monotonic() - t0, 1)
                figures["direct_task_s"] = direct
            finally:
                stop_local_triton(settings)
        with private_stack(root / "kfp" / "state") as settings:
            try:
                result = run_pretrain_and_deploy(settings, quick=not args.full, pipeline_root=root / "kfp" / "runs")
                figures["kfp_local_wall_s"] = result.wall_seconds
                figures["kfp_local_task_s"] = result.task_seconds
                figures["version"], figures["alias"] = result.version, result.alias
                figures["holdout_category_map"] = result.metrics.get("category_map")
            finally:
                stop_local_triton(settings)
    figures["kfp_overhead_s"] = round(figures["kfp_local_wall_s"] - figures["direct_wall_s"], 1)
    figures["ratio_kfp_local_vs_direct"] = round(figures["kfp_local_wall_s"] / figures["direct_wall_s"], 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
