"""Post records and where they live in the posts bucket.

Layout under ``s3://<buckets.posts>/``::

    posts/<source>/<post_id>.json     one Post (tagwatch/schemas/post.v1.json): the truth, written per post
    images/<source>/<sha256>.jpg      the post's image: RGB JPEG, 256 px square, rendered on white
    index/<source>.jsonl              every post of the source, one JSON line each (a cache for fast reads:
                                      rewritten at the end of each ingest; readers reconcile it with a listing)
    reports/<source>/ingest.json      the last ingest's report (counts, skipped items with reasons)
    erasures/<post_id>.json           the erasure list: posts deleted for good (tagwatch.privacy.erasures)

``post_id`` is ``<source>-<16 hex of sha256(source item ref)>``: stable, so re-ingesting finds what exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tagwatch.privacy.consent import Consent

log = logging.getLogger(__name__)

POST_SCHEMA_VERSION = 1
POST_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{2,80}$"  # also what a shard member name and a webdataset key can hold


class Post(BaseModel):
    """One public post: an image and the caption its author wrote (with hashtags)."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="Post")

    schema_version: int = POST_SCHEMA_VERSION
    post_id: str = Field(pattern=POST_ID_PATTERN)
    author_id: str = Field(description="pseudonym of the author (HMAC-SHA256 under settings.privacy.author_key)")
    created_at: datetime
    caption: str
    image_uri: str = Field(pattern=r"^s3://", description="s3://<bucket>/images/<source>/<sha256>.jpg")
    image_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    source: str = Field(description="where the post came from: openclipart, synthetic, ...")
    source_ref: str = Field(default="", description="the item inside the source, e.g. a file path")
    keywords: list[str] = Field(
        default_factory=list, description="the source's original keywords (ground truth for moderation categories)"
    )
    pdq: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="PDQ hash of the image")
    pdq_quality: int | None = Field(default=None, ge=0, le=100)
    training_consent: Consent = Field(
        default="unknown", description="may the post be trained on: granted, denied or unknown (added later, schema "
        "still v1: a record without it reads as unknown); dataset builds honour it (docs/privacy.md)")


def make_post_id(source: str, ref: str) -> str:
    return f"{source}-{hashlib.sha256(ref.encode()).hexdigest()[:16]}"


def post_key(source: str, post_id: str) -> str:
    return f"posts/{source}/{post_id}.json"


def image_key(source: str, sha256: str) -> str:
    return f"images/{source}/{sha256}.jpg"


def index_key(source: str) -> str:
    return f"index/{source}.jsonl"


def report_key(source: str) -> str:
    return f"reports/{source}/ingest.json"


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    """Every key under ``prefix`` (one paginated LIST, no per-object HEAD)."""
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


def list_post_ids(client: Any, bucket: str, source: str) -> set[str]:
    prefix = f"posts/{source}/"
    return {k[len(prefix) : -len(".json")] for k in list_keys(client, bucket, prefix) if k.endswith(".json")}


def list_sources(client: Any, bucket: str) -> list[str]:
    """Sources with posts in the bucket (from the ``posts/<source>/`` prefixes)."""
    found: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="posts/", Delimiter="/"):
        found.update(p["Prefix"].split("/")[1] for p in page.get("CommonPrefixes", []))
    return sorted(found)


def read_index(client: Any, bucket: str, source: str) -> dict[str, dict]:
    try:
        body = client.get_object(Bucket=bucket, Key=index_key(source))["Body"].read()
    except client.exceptions.NoSuchKey:
        return {}
    records: dict[str, dict] = {}
    for line in body.decode("utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["post_id"]] = record
    return records


def write_index(client: Any, bucket: str, source: str, records: Iterable[dict]) -> None:
    lines = [json.dumps(r, sort_keys=True, ensure_ascii=False) for r in sorted(records, key=lambda r: r["post_id"])]
    body = ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
    client.put_object(Bucket=bucket, Key=index_key(source), Body=body, ContentType="application/x-ndjson")


def load_post_records(
    client: Any, bucket: str, source: str, *, known: dict[str, dict] | None = None, threads: int = 8
) -> dict[str, Any]:
    """Every post record of a source: the index, reconciled with one listing (records not in it are fetched).

    ``known`` are records the caller has just written (not fetched again). Returns ``post_id -> dict`` for
    readable records and ``post_id -> Exception`` for unreadable ones.
    """
    listed = list_post_ids(client, bucket, source)
    indexed = {**read_index(client, bucket, source), **(known or {})}
    records: dict[str, Any] = {pid: rec for pid, rec in indexed.items() if pid in listed}
    missing = sorted(listed - set(records))

    def fetch(post_id: str) -> tuple[str, Any]:
        try:
            body = client.get_object(Bucket=bucket, Key=post_key(source, post_id))["Body"].read()
            return post_id, json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            return post_id, error

    if missing:
        with ThreadPoolExecutor(threads) as pool:
            records.update(pool.map(fetch, missing))
    return records


def parse_post(record: Any) -> Post:
    """A validated Post, or ValueError with a one-line reason."""
    if isinstance(record, Exception):
        raise ValueError(f"unreadable JSON: {record}")
    try:
        return Post.model_validate(record)
    except ValidationError as error:
        first = error.errors()[0]
        raise ValueError(f"invalid post: {'.'.join(map(str, first['loc']))}: {first['msg']}") from error
