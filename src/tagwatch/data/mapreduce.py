"""The dataset build as map/reduce: plan -> map (hash ranges) -> reduce -> map (write shards) -> finalize.

Each step is a function of the exchange files the steps before it wrote (``build_exchange``), so the same steps
run in one process (``build_dataset``: ``tagwatch data build --map-tasks N``, the demo) or as Kubeflow Pipelines
tasks fanned out with ``dsl.ParallelFor`` (``tagwatch.pipeline.definitions``): one pod per range, no scheduler
of our own.

1. ``plan_build``: read the post records once, screen consent, derive the version (a rerun of a built version
   stops here), hashtag keys, categories and split per post; cut the posts, in their global order, into ``n``
   contiguous ranges (``plan_ranges``) and write one input file per range.
2. ``hash_range`` (build_map, one task per range): fetch and check each image, PDQ hashes, the range's counts of
   train hashtag-key sets.
3. ``reduce_build``: merge the ranges in order (the order the single-process build had), fold review labels, dedup
   train against val/holdout with the exact PDQ index, add up the key-set counts (minus dropped posts) into the
   vocabulary, label, and cut every split into shards. Shard membership is a function of the samples alone
   (sorted by post_id, train shuffled by the seed), so it is the same whatever ``n`` was; writer ``i`` of ``n``
   gets shards ``i, i+n, ...``.
4. ``write_range_shards`` (build_map, one task per writer): fetch, tar and upload its shards.
5. ``finalize_build``: vocabulary.json, dedup.json, post_index.tsv, the sealed manifest and latest.json.

The manifest digest (content hash) and the shard bytes are therefore identical for any number of ranges, and
identical to the single-process build's.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict
from typing import Any

from tagwatch.data.build import (BuildConfig, BuildReport, Progress, fold_reviews, label_samples, prepare_posts,
                                 read_inputs, write_latest)
from tagwatch.data.build_exchange import (config_from_json, config_to_json, exchange_prefix, get_json, iter_lines,
                                          plan_uri_parts, prepared_from_json, prepared_to_json, put_json, put_lines,
                                          reviews_from_json, reviews_to_json, task_key)
from tagwatch.data.build_map import hash_range, shard_infos, shard_jobs, write_range_shards
from tagwatch.data.build_output import write_metadata
from tagwatch.data.categories import Categories, CategoryMatcher
from tagwatch.data.dedup import DedupReport, HashedImage, dedup_train
from tagwatch.data.manifest import SPLITS, SplitInfo, Vocabulary
from tagwatch.data.provenance import source_infos
from tagwatch.data.review_labels import review_report
from tagwatch.data.vocab import Canonicaliser, vocabulary_from_keysets
from tagwatch.errors import ConfigError
from tagwatch.privacy.consent import ConsentReport


def plan_ranges(total: int, n: int) -> list[tuple[int, int]]:
    """``n`` contiguous near-equal (start, stop) ranges over ``total`` posts (empty ones dropped, at least one)."""
    if n < 1:
        raise ConfigError(f"map_tasks must be >= 1, not {n}", hint="pass --map-tasks 1 or more")
    base, extra = divmod(total, n)
    ranges, start = [], 0
    for i in range(n):
        stop = start + base + (1 if i < extra else 0)
        ranges.append((start, stop))
        start = stop
    return [r for r in ranges if r[1] > r[0]] or [(0, 0)]


def plan_build(*, client: Any, posts_bucket: str, datasets_bucket: str, config: BuildConfig, wordnet: Any,
               map_tasks: int = 1, ledger_bucket: str = "") -> dict:
    """Step 1. Returns {plan_uri, ranges (task indices to fan out over), tasks (one ``task_item`` per range: what a
    pipeline fans out over), dataset "name/version", up_to_date}."""
    t0 = time.monotonic()
    inputs = read_inputs(client=client, posts_bucket=posts_bucket, datasets_bucket=datasets_bucket, config=config,
                         ledger_bucket=ledger_bucket)
    report = inputs.report
    folder = exchange_prefix(inputs.prefix, map_tasks)
    plan_key = f"{folder}/plan.json"
    ranges: list[tuple[int, int]] = []
    if not inputs.up_to_date:
        matcher = CategoryMatcher(inputs.categories, wordnet)
        prepared = prepare_posts(posts=inputs.posts, canonicaliser=Canonicaliser(wordnet), matcher=matcher,
                                 config=config, report=report)
        ranges = plan_ranges(len(prepared), map_tasks)
        for index, (start, stop) in enumerate(ranges):
            put_lines(client, datasets_bucket, task_key(folder, "range", index, "jsonl"),
                      (prepared_to_json(item) for item in prepared[start:stop]))
    report.seconds["plan"] = round(time.monotonic() - t0, 2)
    put_json(client, datasets_bucket, plan_key, {
        "config": config_to_json(config), "posts_bucket": posts_bucket, "datasets_bucket": datasets_bucket,
        "prefix": inputs.prefix, "ranges": [stop - start for start, stop in ranges], "report": asdict(report),
        "categories": inputs.categories.model_dump(mode="json"), "categories_text": inputs.categories_text,
        "source_versions": inputs.source_versions,
        "source_posts": dict(Counter(post.source for post in inputs.posts)),
        "consent": inputs.consent.model_dump(mode="json"), "reviews": reviews_to_json(inputs.reviews),
    })
    plan_uri = f"s3://{datasets_bucket}/{plan_key}"
    indices = list(range(len(ranges) or 1))
    return {"plan_uri": plan_uri, "ranges": indices, "tasks": [task_item(plan_uri, i) for i in indices],
            "dataset": f"{config.name}/{report.version}", "up_to_date": inputs.up_to_date}


def task_item(plan_uri: str, index: int) -> str:
    """One fan-out item, ``<plan_uri>#<index>``: a single string carries both, because a loop over one task's
    plain list output is what every runner (kfp.local included) resolves."""
    return f"{plan_uri}#{index}"


def parse_task_item(item: str) -> tuple[str, int]:
    """(plan_uri, index) of a ``task_item``."""
    plan_uri, _, index = str(item).rpartition("#")
    if not plan_uri or not index.isdigit():
        raise ConfigError(f"{item!r} is not a build task item", hint="pass an item of the plan step's list")
    return plan_uri, int(index)


def _plan(client: Any, plan_uri: str) -> tuple[str, str, dict]:
    bucket, folder = plan_uri_parts(plan_uri)
    return bucket, folder, get_json(client, bucket, f"{folder}/plan.json")


def map_range(*, client: Any, plan_uri: str, index: int, progress: Progress | None = None) -> str:
    """Step 2 for range ``index`` (a no-op for a version already built). Returns the key it wrote."""
    bucket, folder, plan = _plan(client, plan_uri)
    if plan["report"]["up_to_date"] or index >= len(plan["ranges"]):
        return ""
    return hash_range(client=client, bucket=bucket, folder=folder, index=index,
                      threads=config_from_json(plan["config"]).fetch_threads, total=plan["ranges"][index],
                      progress=progress)


def reduce_build(*, client: Any, plan_uri: str, wordnet: Any, writers: int = 0) -> str:
    """Step 3: merge the ranges' results and plan the shards for ``writers`` shard writers (0: one per range)."""
    t0 = time.monotonic()
    bucket, folder, plan = _plan(client, plan_uri)
    if plan["report"]["up_to_date"]:
        return ""
    config = config_from_json(plan["config"])
    report = BuildReport(**plan["report"])
    skipped: Counter[str] = Counter(report.skipped)
    keysets: Counter[tuple[str, ...]] = Counter()
    prepared, dedup_hashes = [], {}
    for index in range(len(plan["ranges"])):
        result = get_json(client, bucket, task_key(folder, "hashed", index))
        skipped.update(result["skipped"])
        keysets.update({tuple(keys): n for keys, n in result["train_keysets"]})
        for row in iter_lines(client, bucket, task_key(folder, "hashed", index, "jsonl")):
            prepared.append(prepared_from_json(row))
            dedup_hashes[row["post"]["post_id"]] = (row["dedup_pdq"], row["dedup_quality"])
    report.skipped = dict(skipped)
    canonicaliser = Canonicaliser(wordnet)
    reviews = reviews_from_json(plan["reviews"])
    image_uris: dict[str, str] = {}
    folded = None
    if reviews is not None:
        known = len(prepared)
        folded = fold_reviews(client=client, posts_bucket=plan["posts_bucket"], prepared=prepared, reviews=reviews,
                              canonicaliser=canonicaliser, config=config)
        for item in prepared[known:]:  # the reviewed images, as the shards will hold them
            key = f"{folder}/review/{item.post.image_sha256}.jpg"
            client.put_object(Bucket=bucket, Key=key, Body=item.jpeg, ContentType="image/jpeg")
            image_uris[item.post.post_id] = f"s3://{bucket}/{key}"
            dedup_hashes[item.post.post_id] = (item.post.pdq, item.post.pdq_quality)
            keysets[tuple(item.keys)] += 1
            item.jpeg = b""

    def hashed_of(item) -> HashedImage:
        pdq, quality = dedup_hashes[item.post.post_id]
        return HashedImage(post_id=item.post.post_id, split=item.split, sha256=item.post.image_sha256, pdq=pdq,
                           quality=quality)

    dedup = dedup_train(train=[hashed_of(p) for p in prepared if p.split == "train"],
                        evaluation=[hashed_of(p) for p in prepared if p.split != "train"],
                        threshold=config.pdq_threshold, min_quality=config.pdq_min_quality)
    dropped = {d.post_id for d in dedup.dropped}
    for item in prepared:
        if item.post.post_id in dropped:
            keysets[tuple(item.keys)] -= 1
    prepared = [p for p in prepared if p.post.post_id not in dropped]
    report.dedup_dropped = len(dropped)
    review = None if folded is None else review_report(reviews, folded, dedup_dropped=dropped)
    report.review_labels = review.model_dump() if review else {}

    vocabulary, key_map, _ = vocabulary_from_keysets(+keysets, canonicaliser=canonicaliser, config=config.vocab)
    samples = label_samples(prepared=prepared, vocabulary=vocabulary, key_map=key_map, report=report)
    categories = Categories.model_validate(plan["categories"])
    sources = source_infos(post_counts=plan["source_posts"], versions=plan["source_versions"], samples=samples,
                           categories=list(categories.categories))
    uris = {item.post.post_id: image_uris.get(item.post.post_id, item.post.image_uri) for item in prepared}
    jobs = shard_jobs({split: [(sample, uris[sample.post_id]) for sample, _ in samples[split]] for split in SPLITS},
                      config=config)
    writers = writers or len(plan["ranges"])
    for index in range(writers):
        put_lines(client, bucket, task_key(folder, "shards", index, "jsonl"), jobs[index::writers])
    report.holdout_categories = dict(Counter(c for s, _ in samples["holdout"] for c in s.categories).most_common())
    report.vocabulary_size = len(vocabulary.labels)
    report.top_tags = [(label.name, label.count) for label in vocabulary.labels[:20]]
    report.seconds["reduce"] = round(time.monotonic() - t0, 2)
    key = f"{folder}/reduce.json"
    put_json(client, bucket, key, {
        "report": asdict(report), "writers": writers, "writer_shards": [len(jobs[i::writers]) for i in range(writers)],
        "vocabulary": vocabulary.model_dump(mode="json"),
        "dedup": dedup.model_dump(mode="json"), "review_labels": review.model_dump(mode="json") if review else None,
        "sources": [info.model_dump(mode="json") for info in sources],
        "samples": {split: len(samples[split]) for split in SPLITS},
        "post_splits": {sample.post_id: split for split, items in samples.items() for sample, _ in items},
    })
    return key


def write_shards_of(*, client: Any, plan_uri: str, index: int, progress: Progress | None = None) -> str:
    """Step 4 for shard writer ``index``. Returns the key it wrote ('' for a version already built)."""
    bucket, folder, plan = _plan(client, plan_uri)
    if plan["report"]["up_to_date"]:
        return ""
    reduced = get_json(client, bucket, f"{folder}/reduce.json")
    if index >= reduced["writers"]:
        return ""
    return write_range_shards(client=client, bucket=bucket, datasets_prefix=plan["prefix"], folder=folder,
                              index=index, threads=config_from_json(plan["config"]).fetch_threads,
                              total=reduced["writer_shards"][index], progress=progress)


def finalize_build(*, client: Any, plan_uri: str) -> BuildReport:
    """Step 5: the dataset's files and its sealed manifest (last), then latest.json. Returns the build report."""
    from tagwatch.data.manifest import SourceInfo
    from tagwatch.data.review_labels import ReviewLabelsReport

    t0 = time.monotonic()
    bucket, folder, plan = _plan(client, plan_uri)
    config = config_from_json(plan["config"])
    if plan["report"]["up_to_date"]:
        return BuildReport(**plan["report"])
    reduced = get_json(client, bucket, f"{folder}/reduce.json")
    report = BuildReport(**reduced["report"])
    written = [row for index in range(reduced["writers"])
               for row in get_json(client, bucket, task_key(folder, "written", index))]
    infos = shard_infos(written)
    split_infos = {split: SplitInfo(samples=reduced["samples"][split], shards=infos.get(split, []))
                   for split in SPLITS}
    categories = Categories.model_validate(plan["categories"])
    review = reduced["review_labels"]
    manifest = write_metadata(
        client=client, bucket=bucket, prefix=plan["prefix"], config=config, version=report.version,
        vocabulary=Vocabulary.model_validate(reduced["vocabulary"]), categories_text=plan["categories_text"],
        category_names=categories.names, dedup=DedupReport.model_validate(reduced["dedup"]),
        split_infos=split_infos, sources=[SourceInfo.model_validate(s) for s in reduced["sources"]],
        consent=ConsentReport.model_validate(plan["consent"]), post_splits=reduced["post_splits"],
        review_labels=ReviewLabelsReport.model_validate(review) if review else None,
    )
    write_latest(client, bucket, config.name, report.version)
    report.splits = {split: info.samples for split, info in manifest.splits.items()}
    report.top_tags = [tuple(pair) for pair in report.top_tags]
    report.seconds["finalize"] = round(time.monotonic() - t0, 2)
    return report


def build_dataset(
    *, client: Any, posts_bucket: str, datasets_bucket: str, config: BuildConfig, wordnet: Any,
    progress: Progress | None = None, ledger_bucket: str = "", map_tasks: int = 1,
) -> BuildReport:
    """Build (or find already built) the dataset version of the posts now in ``posts_bucket`` (with
    ``config.review_labels``: and the review outcomes in ``ledger_bucket``'s post history), running the
    map/reduce steps in this process, ``map_tasks`` ranges one after another (same result for any number)."""
    t0 = time.monotonic()
    plan = plan_build(client=client, posts_bucket=posts_bucket, datasets_bucket=datasets_bucket, config=config,
                      wordnet=wordnet, map_tasks=map_tasks, ledger_bucket=ledger_bucket)
    if plan["up_to_date"]:
        return finalize_build(client=client, plan_uri=plan["plan_uri"])
    for index in plan["ranges"]:
        map_range(client=client, plan_uri=plan["plan_uri"], index=index, progress=progress)
    reduce_build(client=client, plan_uri=plan["plan_uri"], wordnet=wordnet)
    for index in plan["ranges"]:
        write_shards_of(client=client, plan_uri=plan["plan_uri"], index=index, progress=progress)
    report = finalize_build(client=client, plan_uri=plan["plan_uri"])
    report.seconds["total"] = round(time.monotonic() - t0, 2)
    return report
