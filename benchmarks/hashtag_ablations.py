"""The seed paper's ablations on real posts (issue 14): does hashtag training of EfficientNet-Lite0's top beat the
ImageNet features for the moderation categories, and do 1/k softmax, sqrt resampling and noise robustness hold?

A private embedded stack (free ports, temp dir); the demo's quick corpus (openclipart, OpenMoji and Tux Paint
stamps: every post in a moderation category plus seeded others; ``--quick``: openclipart's category posts
only); the demo's data build; the lower stages' activations cached once (``train/feature_cache.py``, timed, then
read back from the cache); then every arm of ``tagwatch.train.ablations`` for each seed on the same splits and
budget. Prints one JSON line: per arm and figure the mean over seeds with its 95 % interval over holdout posts
and seeds (two-level bootstrap; also the seeds-only t interval), the paired differences between arms on the
same resampled posts, and the decision (``ablations.choose_recipe``).

    .venv/bin/python benchmarks/hashtag_ablations.py [--quick] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from tagwatch.clients import s3_client
from tagwatch.data.build_request import BuildRequest, build_requested
from tagwatch.data.ingest import ingest_source
from tagwatch.stack import private_stack
from tagwatch.train import runtime
from tagwatch.train.ablations import Budget, choose_recipe, holdout_of, plot_ablations, run_seed, summarise
from tagwatch.train.effnet import cut_index
from tagwatch.train.feature_cache import load_or_compute
from tagwatch.train.models import create_model
from tagwatch.train.partial import DEFAULT_TRAINABLE_FROM

QUICK_BUDGET = Budget(pretrain_steps=4, finetune_steps=2, batch_size=16)


def ingest(settings, *, quick: bool, work: Path) -> dict:
    from tagwatch.data.sources import REAL_SOURCES, get_source
    from tagwatch.demo.stages import QUICK_OTHERS, QUICK_POSTS, select_quick_subset

    client = s3_client(settings.s3)
    sources = ("openclipart",) if quick else REAL_SOURCES
    counts = {}
    for name in sources:
        if quick:
            items, _ = select_quick_subset(source=name, root=None, total=0)
        elif name == "openclipart":
            items, _ = select_quick_subset(source=name, root=None, total=QUICK_POSTS)
        else:
            items, _ = select_quick_subset(source=name, root=None, others=QUICK_OTHERS)
        get_source(name).copy_items(items, work / name)
        report = ingest_source(client=client, bucket=settings.s3.buckets.posts, source=name,
                               author_key=settings.privacy.author_key, root=work / name)
        counts[name] = report.posts_total
    return counts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: few posts, a few steps")
    parser.add_argument("--seeds", type=int, default=0, help="default 3 (2 with --quick)")
    parser.add_argument("--trainable-from", default=DEFAULT_TRAINABLE_FROM)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resamples", type=int, default=0, help="holdout bootstrap resamples (default 1000; "
                        "200 with --quick)")
    parser.add_argument("--plot", help="write the bars-with-CI plot here (e.g. docs/img/hashtag_ablations.png)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = args.seeds or (2 if args.quick else 3)
    budget = QUICK_BUDGET if args.quick else Budget()
    figures: dict = {"mode": "quick" if args.quick else "full", "seeds": seeds, "budget": budget.__dict__,
                     "trainable_from": args.trainable_from, "threads": args.threads}
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tw-bench-ablations-") as tmp:
        root = Path(tmp)
        with private_stack(root / "state") as settings:
            t0 = time.monotonic()
            figures["posts"] = ingest(settings, quick=args.quick, work=root / "sources")
            request = BuildRequest(min_count=2 if args.quick else BuildRequest().min_count)
            report = build_requested(settings.s3, request)
            figures["data_s"] = round(time.monotonic() - t0, 1)
            dataset = runtime.open_dataset(f"{report.name}/{report.version}", settings=settings)
            categories = dataset.manifest.category_names
            preset = runtime.preset_for(128)
            model = create_model("efficientnet_lite0", dataset.manifest.num_labels, num_categories=len(categories),
                                 pretrained=True)
            cut = cut_index(args.trainable_from, len(model.backbone.net._blocks))
            t0 = time.monotonic()
            cached, where = load_or_compute(backbone=model.backbone, dataset=dataset, preset=preset, cut=cut,
                                            splits={"train": 2, "holdout": 1}, settings=settings)
            figures["cache_compute_s"] = round(time.monotonic() - t0, 1)
            t0 = time.monotonic()
            _, again = load_or_compute(backbone=model.backbone, dataset=dataset, preset=preset, cut=cut,
                                       splits={"train": 2, "holdout": 1}, settings=settings)
            figures["cache_reuse_s"] = round(time.monotonic() - t0, 2)
            figures["cache"] = {"first": where["sources"], "second": again["sources"], "uri": where["uri"],
                                "train_bytes": cached["train"].inputs.numel() * 2}
            figures["splits"] = {"train": len(cached["train"]), "holdout": len(cached["holdout"]),
                                 "labels": dataset.manifest.num_labels,
                                 "holdout_positives": dict(zip(categories, cached["holdout"].categories.sum(0)
                                                                .int().tolist()))}
            holdout = holdout_of(cached["holdout"], cached["train"], categories)
            per_seed = []
            t0 = time.monotonic()
            for seed in range(seeds):
                per_seed.append(run_seed(model=model, cut=cut, train=cached["train"], holdout=cached["holdout"],
                                         categories=categories, duplicates=dataset.duplicates(), seed=seed,
                                         budget=budget))
                print(f"seed {seed} done at {time.monotonic() - t0:.0f}s", file=sys.stderr)
            figures["arms_s"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    summary = summarise(per_seed, holdout, resamples=args.resamples or (200 if args.quick else 1000))
    figures["summary_s"] = round(time.monotonic() - t0, 1)
    figures.update(arms=summary["arms"], paired=summary["paired"], resamples=summary["resamples"],
                   interval=summary["interval"])
    figures["decision"] = choose_recipe(summary)
    if args.plot:
        figures["plot"] = str(plot_ablations(figures["arms"], Path(args.plot), figures["paired"]))
    figures["wall_s"] = round(time.monotonic() - t_start, 1)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
