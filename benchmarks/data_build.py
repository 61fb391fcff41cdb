"""Benchmark: ingest a source and build the dataset on a private embedded stack; print ONE JSON line.

    PYTHONPATH=src python benchmarks/data_build.py [--source openclipart] [--limit N] [--workers N]

Figures: ingest posts/s (all render workers, with uploads) against a baseline of one process rendering
``--baseline-items`` items with no upload (ratio = speed-up of the pipeline), build seconds, the rerun (no-op)
seconds of ingest and build, vocabulary size, dedup dropped, split sizes and holdout images per category.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default="openclipart")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--baseline-items", type=int, default=100)
    args = parser.parse_args(argv)

    from tagwatch.clients import s3_client
    from tagwatch.data.build import BuildConfig, build_dataset
    from tagwatch.data.ingest import ingest_source, render_outcome
    from tagwatch.data.sources import get_source
    from tagwatch.data.wordnet import load_wordnet
    from tagwatch.settings import load_settings
    from tagwatch.stack import Stack, with_stack_endpoints

    figures: dict = {"source": args.source, "limit": args.limit}
    baseline_items = get_source(args.source).list_items(limit=args.baseline_items)
    t = time.monotonic()
    for item in baseline_items:
        render_outcome(item)
    figures["baseline_serial_render_posts_per_s"] = round(len(baseline_items) / (time.monotonic() - t), 2)

    with tempfile.TemporaryDirectory(prefix="tagwatch-bench-") as state:
        settings = load_settings(paths={"state_dir": Path(state)}, stack={"free_ports": True})
        stack = Stack(settings)
        stack.up()
        try:
            settings = with_stack_endpoints(settings)
            client = s3_client(settings.s3)
            posts, datasets = settings.s3.buckets.posts, settings.s3.buckets.datasets
            t = time.monotonic()
            ingest = ingest_source(client=client, bucket=posts, source=args.source, limit=args.limit,
                                   workers=args.workers)
            ingest_s = time.monotonic() - t
            t = time.monotonic()
            wordnet = load_wordnet()
            report = build_dataset(client=client, posts_bucket=posts, datasets_bucket=datasets,
                                   config=BuildConfig(), wordnet=wordnet)
            build_s = time.monotonic() - t
            t = time.monotonic()
            again = ingest_source(client=client, bucket=posts, source=args.source, limit=args.limit,
                                  workers=args.workers)
            rerun_ingest_s = time.monotonic() - t
            t = time.monotonic()
            rebuild = build_dataset(client=client, posts_bucket=posts, datasets_bucket=datasets,
                                    config=BuildConfig(), wordnet=wordnet)
            rerun_build_s = time.monotonic() - t
        finally:
            stack.down()

    rate = ingest.ingested / ingest_s if ingest_s else 0.0
    figures.update(
        posts=ingest.posts_total,
        ingest_skipped=ingest.skipped,
        ingest_seconds=round(ingest_s, 1),
        ingest_posts_per_s=round(rate, 2),
        ingest_vs_baseline_ratio=round(rate / figures["baseline_serial_render_posts_per_s"], 2),
        build_seconds=round(build_s, 1),
        total_seconds=round(ingest_s + build_s, 1),
        build_stage_seconds=report.seconds,
        rerun_ingest_seconds=round(rerun_ingest_s, 1),
        rerun_ingest_new=again.ingested,
        rerun_build_seconds=round(rerun_build_s, 1),
        rerun_build_up_to_date=rebuild.up_to_date,
        vocabulary_size=report.vocabulary_size,
        top_tags=report.top_tags[:15],
        dedup_dropped=report.dedup_dropped,
        splits=report.splits,
        holdout_categories=report.holdout_categories,
        build_skipped=report.skipped,
        version=report.version,
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
