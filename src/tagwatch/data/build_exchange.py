"""The files the map/reduce dataset build passes between its tasks, under the version's own prefix.

Layout under ``s3://<buckets.datasets>/<name>/<version>/_build/<n>/`` (``n`` = map tasks; the version is a hash of
the inputs and the config, so the folder is content-addressed: a rerun of the same build finds the same folder)::

    plan.json               the config, the version's inputs read once (consent, source versions, review outcomes),
                            the report so far and the number of posts in each range
    range-NNNNN.jsonl       one prepared post per line (record, hashtag keys, categories, split): a map task's input
    hashed-NNNNN.jsonl      what map task NNNNN kept: one post per line with its hashes
    hashed-NNNNN.json       and its summary: the range's skips by reason and its counts of train hashtag-key sets
    review/<sha256>.jpg     reviewed images the reduce added to train (re-encoded JPEG), for the shard writers
    reduce.json             the reduce's result: vocabulary, dedup report, review counts, sources, the shard count
    shards-NNNNN.jsonl      the shards (samples and image addresses) shard writer NNNNN writes, one per line
    written-NNNNN.json      the ShardInfo of each shard it wrote

Nothing here is read by the trainer: ``manifest.json`` and the files it names are the dataset.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

from tagwatch.data.build import BuildConfig, PreparedPost
from tagwatch.data.posts import Post, split_s3_uri
from tagwatch.data.review_labels import ReviewLabel, ScreenedOutcomes
from tagwatch.data.vocab import VocabConfig
from tagwatch.errors import ManifestError

EXCHANGE_DIR = "_build"


def exchange_prefix(prefix: str, map_tasks: int) -> str:
    return f"{prefix}/{EXCHANGE_DIR}/{map_tasks}"


def task_key(folder: str, kind: str, index: int, suffix: str = "json") -> str:
    return f"{folder}/{kind}-{index:05d}.{suffix}"


def plan_uri_parts(plan_uri: str) -> tuple[str, str]:
    """(bucket, exchange folder) of a ``s3://bucket/<prefix>/_build/<n>/plan.json`` address."""
    bucket, key = split_s3_uri(plan_uri)
    if not key.endswith("/plan.json") or f"/{EXCHANGE_DIR}/" not in key:
        raise ManifestError(f"{plan_uri} is not a build plan", hint="pass the plan_uri the build's plan step returned")
    return bucket, key.rsplit("/", 1)[0]


def put_json(client: Any, bucket: str, key: str, obj: Any) -> None:
    client.put_object(Bucket=bucket, Key=key, Body=json.dumps(obj, default=str).encode(),
                      ContentType="application/json")


def get_json(client: Any, bucket: str, key: str) -> Any:
    try:
        return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except client.exceptions.NoSuchKey as error:
        raise ManifestError(f"build exchange file s3://{bucket}/{key} is missing",
                            hint="the step that writes it has not run (or failed): run the build's steps in "
                            "order, plan -> map -> reduce -> write shards -> finalize") from error


def put_lines(client: Any, bucket: str, key: str, rows: Iterable[Any]) -> None:
    """JSON lines, spooled to a local temporary file as ``rows`` are produced and then uploaded (multipart when
    large): the writer never holds the file in memory."""
    with tempfile.TemporaryFile() as spool:
        for row in rows:
            spool.write(json.dumps(row, default=str).encode() + b"\n")
        spool.seek(0)
        client.upload_fileobj(spool, bucket, key, ExtraArgs={"ContentType": "application/x-ndjson"})


def iter_lines(client: Any, bucket: str, key: str) -> Iterator[Any]:
    """Rows of a JSON-lines file, read as a stream (a range's input is never held whole)."""
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    for line in body.iter_lines():
        if line.strip():
            yield json.loads(line)


def config_to_json(config: BuildConfig) -> dict:
    data = asdict(config)
    data["vocab"]["stop_tags"] = sorted(config.vocab.stop_tags)
    data["categories_path"] = None  # read once, by the plan: the text travels in plan.json
    return data


def config_from_json(data: dict) -> BuildConfig:
    names = {f.name for f in fields(BuildConfig)}
    values = {k: v for k, v in data.items() if k in names}
    vocab = dict(values.pop("vocab"))
    vocab["stop_tags"] = frozenset(vocab["stop_tags"])
    values["sources"] = tuple(values["sources"])
    values["categories_path"] = Path(values["categories_path"]) if values.get("categories_path") else None
    return BuildConfig(**values, vocab=VocabConfig(**vocab))


def prepared_to_json(item: PreparedPost) -> dict:
    return {"post": item.post.model_dump(mode="json"), "keys": item.keys, "categories": item.categories,
            "split": item.split, "reviewed": item.reviewed}


def prepared_from_json(row: dict) -> PreparedPost:
    return PreparedPost(post=Post.model_validate(row["post"]), keys=list(row["keys"]),
                        categories=list(row["categories"]), split=row["split"], reviewed=bool(row["reviewed"]))


def reviews_to_json(reviews: ScreenedOutcomes | None) -> dict | None:
    if reviews is None:
        return None
    labels = [{**asdict(label), "record": label.record.model_dump(mode="json") if label.record else None}
              for label in reviews.labels]
    return {"outcomes_read": reviews.outcomes_read, "posts_reviewed": reviews.posts_reviewed, "labels": labels,
            "excluded": dict(reviews.excluded), "skipped": dict(reviews.skipped)}


def reviews_from_json(data: dict | None) -> ScreenedOutcomes | None:
    if data is None:
        return None
    from datetime import datetime

    labels = [ReviewLabel(post_id=row["post_id"], outcome_id=row["outcome_id"], categories=tuple(row["categories"]),
                          image_uri=row["image_uri"],
                          reviewed_at=datetime.fromisoformat(row["reviewed_at"]) if row["reviewed_at"] else None,
                          record=Post.model_validate(row["record"]) if row["record"] else None)
              for row in data["labels"]]
    return ScreenedOutcomes(outcomes_read=data["outcomes_read"], posts_reviewed=data["posts_reviewed"],
                            labels=labels, excluded=Counter(data["excluded"]), skipped=Counter(data["skipped"]))
