"""Benchmark: ingest a source and build the dataset on a private embedded stack; print ONE JSON line.

    PYTHONPATH=src python benchmarks/data_build.py [--source openclipart] [--limit N] [--workers N] [--scale-posts N]

Map/reduce figures (``mapreduce``): ``--scale-posts`` synthetic posts built with 1 and with 2 map tasks (each step
in a child process of its own, as a pipeline pod would be: seconds, peak RSS (VmHWM) and the peak above the RSS the
step started with, per task), the manifest digests (identical), and the same build on 2x the posts (a map task's
added memory should stay flat: it streams; the reduce's grows with the posts, it holds their hashes and labels).
``--skip-ingest-figures`` leaves out the ingest/build figures of ``--source``.
Per-core rates (``rates``, one thread): JPEG decode, PDQ, shard tar write, PDQ index build and query.

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
    parser.add_argument("--scale-posts", type=int, default=2000, help="synthetic posts of the map/reduce figures")
    parser.add_argument("--skip-ingest-figures", action="store_true")
    args = parser.parse_args(argv)

    from tagwatch.clients import s3_client
    from tagwatch.stack import private_stack

    figures: dict = {"source": args.source, "limit": args.limit}
    with tempfile.TemporaryDirectory(prefix="tagwatch-bench-") as state, private_stack(Path(state)) as settings:
        client = s3_client(settings.s3)
        if not args.skip_ingest_figures:
            figures.update(ingest_figures(settings, client, args))
        figures["mapreduce"] = mapreduce_figures(settings, client, args.scale_posts)
    figures["rates"] = per_core_rates()
    print(json.dumps(figures))
    return 0


def ingest_figures(settings, client, args) -> dict:
    """Ingest ``--source`` and build it in one process: rates, seconds, reruns (no-ops), what the build found."""
    from tagwatch.data.build import BuildConfig
    from tagwatch.data.ingest import ingest_source, render_outcome
    from tagwatch.data.mapreduce import build_dataset
    from tagwatch.data.sources import get_source
    from tagwatch.data.wordnet import load_wordnet

    figures: dict = {}
    baseline_items = get_source(args.source).list_items(limit=args.baseline_items)
    t = time.monotonic()
    for item in baseline_items:
        render_outcome(item)
    figures["baseline_serial_render_posts_per_s"] = round(len(baseline_items) / (time.monotonic() - t), 2)
    posts, datasets = settings.s3.buckets.posts, settings.s3.buckets.datasets
    t = time.monotonic()
    ingest = ingest_source(client=client, bucket=posts, source=args.source, limit=args.limit,
                           author_key=settings.privacy.author_key, workers=args.workers)
    ingest_s = time.monotonic() - t
    t = time.monotonic()
    wordnet = load_wordnet()
    report = build_dataset(client=client, posts_bucket=posts, datasets_bucket=datasets, config=BuildConfig(),
                           wordnet=wordnet)
    build_s = time.monotonic() - t
    t = time.monotonic()
    again = ingest_source(client=client, bucket=posts, source=args.source, limit=args.limit,
                          author_key=settings.privacy.author_key, workers=args.workers)
    rerun_ingest_s = time.monotonic() - t
    t = time.monotonic()
    rebuild = build_dataset(client=client, posts_bucket=posts, datasets_bucket=datasets, config=BuildConfig(),
                            wordnet=wordnet)
    rerun_build_s = time.monotonic() - t
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
    return figures


def _memory_mib(field: str) -> float:
    """VmRSS / VmHWM of this process (per address space: unlike ru_maxrss, not carried over from the parent)."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _step(kind: str, s3, plan_uri: str, index: int, out) -> None:
    """One build step in a child process; sends back its seconds, peak RSS and the peak above its RSS at start
    (after imports, client and WordNet: what the step itself added)."""
    from tagwatch.clients import s3_client
    from tagwatch.data import mapreduce
    from tagwatch.data.wordnet import load_wordnet

    client = s3_client(s3)
    wordnet = load_wordnet() if kind == "reduce" else None
    start_rss = _memory_mib("VmRSS")
    t = time.monotonic()
    if kind == "map":
        mapreduce.map_range(client=client, plan_uri=plan_uri, index=index)
    elif kind == "reduce":
        mapreduce.reduce_build(client=client, plan_uri=plan_uri, wordnet=wordnet)
    elif kind == "write":
        mapreduce.write_shards_of(client=client, plan_uri=plan_uri, index=index)
    peak = _memory_mib("VmHWM")
    out.put({"seconds": round(time.monotonic() - t, 2), "peak_rss_mib": peak,
             "step_added_mib": round(peak - start_rss, 1)})


def _in_child(kind: str, s3, plan_uri: str, index: int = 0) -> dict:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_step, args=(kind, s3, plan_uri, index, queue))
    process.start()
    figures = queue.get()
    process.join()
    return figures


def build_in_tasks(settings, client, posts: str, map_tasks: int) -> dict:
    """Plan here; each map, the reduce and each shard writer in a child process; finalize here."""
    from tagwatch.data import mapreduce
    from tagwatch.data.build import BuildConfig
    from tagwatch.data.wordnet import load_wordnet

    datasets = f"bench-datasets-{posts}-{map_tasks}"
    client.create_bucket(Bucket=datasets)
    t = time.monotonic()
    plan = mapreduce.plan_build(client=client, posts_bucket=posts, datasets_bucket=datasets, config=BuildConfig(),
                                wordnet=load_wordnet(), map_tasks=map_tasks)
    plan_s = round(time.monotonic() - t, 2)
    maps = [_in_child("map", settings.s3, plan["plan_uri"], i) for i in plan["ranges"]]
    reduce = _in_child("reduce", settings.s3, plan["plan_uri"])
    writes = [_in_child("write", settings.s3, plan["plan_uri"], i) for i in plan["ranges"]]
    report = mapreduce.finalize_build(client=client, plan_uri=plan["plan_uri"])
    from tagwatch.data.shards import read_manifest

    manifest = read_manifest(client=client, bucket=datasets, name=report.name, version=report.version)
    return {"map_tasks": map_tasks, "digest": manifest.content_hash, "plan_seconds": plan_s, "map": maps,
            "reduce": reduce, "write_shards": writes, "samples": sum(report.splits.values()),
            "wall_seconds": round(time.monotonic() - t, 2)}


def mapreduce_figures(settings, client, posts_n: int) -> dict:
    from tagwatch.data.ingest import ingest_source

    figures: dict = {}
    for scale in (1, 2):
        posts = f"bench-posts-x{scale}"
        client.create_bucket(Bucket=posts)
        ingest_source(client=client, bucket=posts, source="synthetic", limit=posts_n * scale,
                      author_key=settings.privacy.author_key)
        runs = [build_in_tasks(settings, client, posts, n) for n in (1, 2)]
        figures[f"x{scale}"] = {"posts": posts_n * scale, "runs": runs,
                                "identical_digest": len({run["digest"] for run in runs}) == 1}
    return figures


def per_core_rates(n: int = 200) -> dict:
    """Items per second on one thread: JPEG decode, PDQ hash, shard tar write (MB/s too), PDQ index build/query."""
    import io

    import numpy as np
    from PIL import Image

    from tagwatch.data.ingest import compute_pdq
    from tagwatch.data.manifest import ShardSample
    from tagwatch.data.shards import write_tar
    from tagwatch.data.sources import SourceItem, synthetic
    from tagwatch.moderation.pdq_index import PdqIndex

    jpegs = []
    for i in range(50):
        image = synthetic.render_item(SourceItem("synthetic", f"seed1/{i}", {"seed": 1, "index": i})).image
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    t = time.monotonic()
    images = [Image.open(io.BytesIO(jpegs[i % 50])).convert("RGB") for i in range(n)]
    decode = n / (time.monotonic() - t)
    t = time.monotonic()
    for image in images:
        compute_pdq(image)
    pdq = n / (time.monotonic() - t)
    sample = ShardSample(post_id="p", labels=[1], categories=["other"], weight=1.0, sha256="0" * 64, source="s")
    t = time.monotonic()
    tar = write_tar((sample.model_copy(update={"post_id": f"p{i}"}), jpegs[i % 50]) for i in range(n * 5))
    write_s = time.monotonic() - t
    rng = np.random.default_rng(0)
    try:
        import faiss

        faiss.omp_set_num_threads(1)  # per core
    except ImportError:
        pass
    rates = {"jpeg_decode_per_s": round(decode), "pdq_per_s": round(pdq), "shard_write_samples_per_s":
             round(n * 5 / write_s), "shard_write_mb_per_s": round(len(tar) / write_s / 1e6, 1),
             "mean_jpeg_kb": round(sum(map(len, jpegs)) / len(jpegs) / 1024, 1)}
    for size in (100_000, 1_000_000):
        codes = rng.integers(0, 256, size=(size, 32), dtype=np.uint8)
        t = time.monotonic()
        index = PdqIndex(np.arange(size), codes, radius=31)
        rates[f"index_build_codes_per_s_{size}"] = round(size / (time.monotonic() - t))
        queries = codes[:2000] ^ rng.integers(0, 2, size=(2000, 32), dtype=np.uint8)
        t = time.monotonic()
        index.search_codes(queries)
        rates[f"index_queries_per_s_{size}"] = round(2000 / (time.monotonic() - t))
    return rates


if __name__ == "__main__":
    sys.exit(main())
