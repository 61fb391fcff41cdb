"""The map tasks of the dataset build: hash one range of posts, and write one share of the shards.

Both stream: ``fetch_in_order`` keeps at most ``window`` images in flight or waiting (a thread pool over a sliding
window), so a task's memory is bounded by the window (phase 1) or by one shard (phase 2), never by its range.
Phase 1 keeps no image: per post it keeps the hashes the dedup needs. Phase 2 fetches the images of one shard again
(a second GET per post: cheaper than moving the bytes through the exchange) and checks each against its sha256.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, TypeVar

from tagwatch.data import posts as store
from tagwatch.data.build import Progress, hashed
from tagwatch.data.build_exchange import iter_lines, prepared_from_json, prepared_to_json, put_json, put_lines, task_key
from tagwatch.data.manifest import ShardInfo, ShardSample
from tagwatch.data.shards import upload_shard, write_tar
from tagwatch.errors import ManifestError

T = TypeVar("T")
R = TypeVar("R")


def fetch_in_order(items: Iterable[T], fetch: Callable[[T], R], *, threads: int, window: int = 0) -> Iterator[R]:
    """``fetch(item)`` for each item on ``threads`` threads, results in input order, at most ``window`` (default
    4 x threads) submitted and not yet consumed."""
    window = max(window or 4 * threads, 1)
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max(threads, 1)) as pool:
        for item in items:
            pending.append(pool.submit(fetch, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def read_image(client: Any, uri: str, sha256: str) -> tuple[bytes | None, str | None]:
    """(bytes, None), or (None, 'image_missing' / 'image_sha256_mismatch')."""
    bucket, key = store.split_s3_uri(uri)
    try:
        data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None, "image_missing"
    if hashlib.sha256(data).hexdigest() != sha256:
        return None, "image_sha256_mismatch"
    return data, None


def hash_range(*, client: Any, bucket: str, folder: str, index: int, threads: int, total: int = 0,
               progress: Progress | None = None) -> str:
    """Map phase 1 over range ``index``: fetch each post's image, check its sha256, PDQ-hash it when the post has
    no hash; write ``hashed-NNNNN.jsonl`` (the kept posts with their hashes, streamed out as they come) and
    ``hashed-NNNNN.json`` (the skips by reason and the range's counts of train hashtag-key sets, which the reduce
    merges into the vocabulary). Returns the summary's key."""

    def fetch(row: dict) -> tuple[dict, str | None]:
        item = prepared_from_json(row)
        item.jpeg, problem = read_image(client, item.post.image_uri, item.post.image_sha256)
        if problem:
            return row, problem
        image = hashed(item)  # the post's own PDQ, or one computed here from the bytes
        return {**prepared_to_json(item), "dedup_pdq": image.pdq, "dedup_quality": image.quality}, None

    skipped: Counter[str] = Counter()
    keysets: Counter[tuple[str, ...]] = Counter()

    def kept() -> Iterator[dict]:
        rows = iter_lines(client, bucket, task_key(folder, "range", index, "jsonl"))
        for done, (row, problem) in enumerate(fetch_in_order(rows, fetch, threads=threads), 1):
            if progress and (done % 100 == 0 or done == total):
                progress(f"hash range {index}", done, total)
            if problem:
                skipped[problem] += 1
                continue
            if row["split"] == "train":
                keysets[tuple(row["keys"])] += 1
            yield row

    put_lines(client, bucket, task_key(folder, "hashed", index, "jsonl"), kept())
    key = task_key(folder, "hashed", index)
    put_json(client, bucket, key, {"index": index, "skipped": dict(skipped),
                                   "train_keysets": [[list(k), n] for k, n in sorted(keysets.items())]})
    return key


def shard_jobs(samples: dict[str, list[tuple[ShardSample, str]]], *, config: Any) -> list[dict]:
    """Every shard of the build as a job: its path and its samples (ShardSample + image address), in the order the
    single-process build always used: per split sorted by post_id (train shuffled by the seed), cut into near-equal
    shards. The jobs depend on the samples alone, never on how the posts were split into ranges."""
    import random

    from tagwatch.data.manifest import SPLITS
    from tagwatch.data.shards import shard_sizes

    jobs = []
    for split in SPLITS:
        items = sorted(samples[split], key=lambda s: s[0].post_id)
        if split == "train":  # mix sources and labels across shards
            random.Random(f"shuffle:{config.seed}").shuffle(items)
        start = 0
        for number, size in enumerate(shard_sizes(len(items), max_samples=config.shard_samples,
                                                  min_shards=config.min_shards)):
            chunk = items[start:start + size]
            start += size
            jobs.append({"split": split, "number": number, "path": f"shards/{split}-{number:06d}.tar",
                         "samples": [[sample.model_dump(mode="json"), uri] for sample, uri in chunk]})
    return jobs


def write_range_shards(*, client: Any, bucket: str, datasets_prefix: str, folder: str, index: int, threads: int,
                       total: int = 0, progress: Progress | None = None) -> str:
    """Map phase 2: write the ``total`` shards the reduce gave writer ``index`` (``shards-NNNNN.jsonl``, read as a
    stream), one at a time; record their ShardInfo in ``written-NNNNN.json``. Returns its key."""
    written = []
    for job in iter_lines(client, bucket, task_key(folder, "shards", index, "jsonl")):
        samples = [(ShardSample.model_validate(sample), uri) for sample, uri in job["samples"]]

        def fetch(pair: tuple[ShardSample, str]) -> tuple[ShardSample, bytes]:
            sample, uri = pair
            data, problem = read_image(client, uri, sample.sha256)
            if problem:
                raise ManifestError(f"{problem} for post {sample.post_id} ({uri}) while writing {job['path']}",
                                    hint="an image changed or vanished since the map phase: rerun the build")
            return sample, data

        data = write_tar(fetch_in_order(samples, fetch, threads=threads))
        info = upload_shard(client=client, bucket=bucket, prefix=datasets_prefix, path=job["path"], data=data,
                            samples=len(samples))
        written.append({"split": job["split"], "number": job["number"], "info": info.model_dump(mode="json")})
        if progress:
            progress(f"write shards {index}", len(written), total)
    key = task_key(folder, "written", index)
    put_json(client, bucket, key, written)
    return key


def shard_infos(written: list[dict]) -> dict[str, list[ShardInfo]]:
    """The writers' ShardInfos per split, in shard order."""
    by_split: dict[str, list[tuple[int, ShardInfo]]] = {}
    for row in written:
        by_split.setdefault(row["split"], []).append((row["number"], ShardInfo.model_validate(row["info"])))
    return {split: [info for _, info in sorted(rows, key=lambda r: r[0])] for split, rows in by_split.items()}

