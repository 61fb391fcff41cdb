"""Publish post.created events: the load generator (`tagwatch posts publish`) and the tests' way in."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from tagwatch.clients import kafka_config, s3_client
from tagwatch.moderation.events import EventType, PostCreated, encode
from tagwatch.privacy.consent import Consent
from tagwatch.privacy.minimise import strip_metadata
from tagwatch.settings import Settings

log = logging.getLogger(__name__)


def upload_image(s3, bucket: str, data: bytes, *, prefix: str = "images/new") -> tuple[str, str]:
    """Store image bytes content-addressed, without their EXIF/GPS/XMP metadata (tagwatch.privacy.minimise; the
    pixels are not touched); returns (s3 uri, sha256 of the stored bytes)."""
    data = strip_metadata(data)
    digest = hashlib.sha256(data).hexdigest()
    key = f"{prefix}/{digest}.jpg"
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/jpeg")
    return f"s3://{bucket}/{key}", digest


def new_post(post_id: str, image_uri: str, sha256: str, *, author_id: str = "load-generator", caption: str = "",
             training_consent: Consent = "unknown") -> PostCreated:
    return PostCreated(post_id=post_id, author_id=author_id, created_at=datetime.now(timezone.utc),
                       caption=caption, image_uri=image_uri, sha256=sha256, training_consent=training_consent)


@dataclass(frozen=True)
class Published:
    """Where the broker stored one post.created event (what `posts publish --ids-out` writes, one JSON line each)."""

    post_id: str
    partition: int
    offset: int


@dataclass
class Send:
    """One record handed to the producer, kept whole so it can be sent again."""

    post_id: str | None
    key: bytes | None
    value: bytes | None
    headers: list
    future: object = None


def send(producer, topic: str, item: Send) -> Send:
    item.future = producer.send(topic, key=item.key, value=item.value, headers=item.headers)
    return item


def confirm_sends(producer, topic: str, sends: list[Send], *, rounds: int = 5, timeout_s: float = 60.0):
    """Wait for every send's acknowledgement; ([(send, metadata)], [(send, error)]).

    An acknowledgement without an offset (-1) is not one: Tansu 0.6.0 answered some produce requests that way
    around a broker restart, and those records were never in its log. Such sends are sent again (at least
    once: a duplicate post.created is decided once, by its deterministic decision id and the ledger).
    """
    confirmed, failed, pending = [], [], list(sends)
    for round_ in range(1, rounds + 1):
        producer.flush(timeout=180)
        unappended = []
        for item in pending:
            try:
                metadata = item.future.get(timeout=timeout_s)
            except Exception as error:  # noqa: BLE001 - the caller counts and reports failed sends
                failed.append((item, error))
                continue
            if metadata.offset is None or metadata.offset < 0:
                unappended.append(item)
            else:
                confirmed.append((item, metadata))
        if not unappended:
            break
        if round_ == rounds:
            failed.extend((item, RuntimeError(f"no offset after {rounds} sends")) for item in unappended)
            break
        log.warning("%d send(s) acknowledged without an offset (the broker did not append them): sending again",
                    len(unappended))
        pending = [send(producer, topic, item) for item in unappended]
    return confirmed, failed


def publish_posts(settings: Settings, posts: Iterable[PostCreated], *, rate: float | None = None,
                  on_sent: Callable[[int], None] = lambda _n: None,
                  on_acked: Callable[[Published], None] | None = None) -> int:
    """Send each post (acks=all) at up to ``rate`` posts/s; returns how many were acknowledged.

    ``on_acked`` is called with each acknowledged post's partition and offset. Raises the first send error
    (after the others were waited for)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(acks="all", linger_ms=5, **kafka_config(settings.kafka, client_id="tagwatch-publisher"))
    topic = settings.kafka.topics.posts
    sends = []
    t0 = time.monotonic()
    try:
        for n, post in enumerate(posts, start=1):
            if rate:
                delay = t0 + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            # created_at is stamped at send time so post-to-decision latency is measured from here
            post = post.model_copy(update={"created_at": datetime.now(timezone.utc)})
            value, headers = encode(post, EventType.POST_CREATED, subject=post.post_id)
            sends.append(send(producer, topic, Send(post.post_id, post.post_id.encode(), value, headers)))
            on_sent(n)
        confirmed, failed = confirm_sends(producer, topic, sends)
        for item, metadata in confirmed:
            if on_acked is not None:
                on_acked(Published(post_id=item.post_id, partition=metadata.partition, offset=metadata.offset))
        if failed:
            raise failed[0][1]
    finally:
        producer.close(timeout=10)
    return len(sends)


def s3_for(settings: Settings):
    return s3_client(settings.s3)


def holdout_posts(settings: Settings, *, dataset: str = "hashtags", version: str | None = None,
                  split: str = "holdout") -> list[tuple[PostCreated, list[str]]]:
    """The held-out posts of a dataset build as new posts, each with its true moderation categories.

    Post ids and categories come from the split's shards (their ``json`` members), the image address and hash
    from the posts index: the images the model never trained on, with the labels evaluation needs.
    """
    import io
    import json
    import tarfile

    from tagwatch.data.posts import list_sources, read_index
    from tagwatch.data.shards import dataset_prefix, read_manifest

    s3 = s3_client(settings.s3)
    manifest = read_manifest(client=s3, bucket=settings.s3.buckets.datasets, name=dataset, version=version)
    prefix = dataset_prefix(manifest.name, manifest.version)
    wanted: dict[str, list[str]] = {}
    for shard in manifest.splits[split].shards:
        body = s3.get_object(Bucket=settings.s3.buckets.datasets, Key=f"{prefix}/{shard.path}")["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    sample = json.loads(tar.extractfile(member).read())
                    wanted[sample["post_id"]] = sample.get("categories", [])
    records: dict[str, dict] = {}
    for source in list_sources(s3, settings.s3.buckets.posts):
        records.update(read_index(s3, settings.s3.buckets.posts, source))
    out = []
    for post_id in sorted(wanted):
        record = records.get(post_id)
        if record is None:
            continue
        post = PostCreated(post_id=post_id, author_id=record["author_id"], created_at=record["created_at"],
                           caption=record.get("caption", "")[:10_000], image_uri=record["image_uri"],
                           sha256=record["image_sha256"],
                           training_consent=record.get("training_consent", "unknown"))
        out.append((post, wanted[post_id]))
    return out
