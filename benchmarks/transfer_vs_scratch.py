"""Pretrained-then-transfer vs from-scratch on the moderation holdout, same transfer budget, several seeds.
Prints ONE JSON line: per arm the mean/std/all holdout category mAP, and the chance level.

    PYTHONPATH=src python benchmarks/transfer_vs_scratch.py [--dataset synthetic:768] [--seeds 3]

Arms: ``scratch`` (fine-tune from random init), ``probe`` (linear probe on the pretrained backbone),
``finetune`` (fine-tune from the pretrained checkpoint). Pretraining uses the hashtags of the same train split.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic:768")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pretrain-steps", type=int, default=150)
    parser.add_argument("--transfer-steps", type=int, default=60)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("TAGWATCH_PATHS__STATE_DIR", tempfile.mkdtemp(prefix="tw-tvs-"))

    from tagwatch.train.pretrain import main as pretrain
    from tagwatch.train.transfer import main as transfer

    root = Path(tempfile.mkdtemp(prefix="tw-tvs-runs-"))
    common = ["--dataset", args.dataset, "--batch-size", str(args.batch_size), "--no-progress", "--workers", "1",
              "--checkpoint-root", str(root / "ck"), *(["--threads", str(args.threads)] if args.threads else [])]
    results: dict[str, list[float]] = {"scratch": [], "probe": [], "finetune": []}
    chance: list[float] = []
    pretrain_map: list[float] = []
    for seed in range(args.seeds):
        pre = pretrain([*common, "--seed", str(seed), "--image-size", str(args.image_size), "--width", str(args.width),
                        "--steps", str(args.pretrain_steps), "--lr", "0.1", "--warmup-steps", "10", "--calibrate-steps", "0",
                        "--run-id", f"pre-{seed}", "--output-dir", str(root / f"pre-{seed}")])
        pretrain_map.append(pre["val_hashtag_map"])
        for arm in results:
            init = ["--init", "none", "--image-size", str(args.image_size), "--width", str(args.width)] if arm == "scratch" \
                else ["--init", str(root / "ck" / f"pre-{seed}")]
            out = transfer([*common, *init, "--seed", str(seed), "--mode", "probe" if arm == "probe" else "finetune",
                            "--steps", str(args.transfer_steps), "--lr", "0.05", "--run-id", f"{arm}-{seed}",
                            "--output-dir", str(root / f"{arm}-{seed}")])
            results[arm].append(out["holdout"]["category_map"])
            if arm == "scratch":
                chance.append(out["holdout"]["chance_category_map"])
    summary = {"benchmark": "transfer_vs_scratch", "dataset": args.dataset, "seeds": args.seeds,
               "pretrain_steps": args.pretrain_steps, "transfer_steps": args.transfer_steps,
               "image_size": args.image_size, "metric": "holdout category mAP",
               "chance": round(statistics.mean(chance), 4),
               "pretrain_val_hashtag_map_mean": round(statistics.mean(pretrain_map), 4)}
    for arm, values in results.items():
        summary[arm] = {"mean": round(statistics.mean(values), 4),
                        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
                        "runs": [round(v, 4) for v in values]}
    summary["finetune_over_scratch"] = round(summary["finetune"]["mean"] / summary["scratch"]["mean"], 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
