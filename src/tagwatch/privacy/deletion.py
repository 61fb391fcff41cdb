"""`tagwatch posts delete POST_ID`: erase a post so that it is never trained on again, and say so downstream.

In this order, so a run stopped part way is finished by running it again (every step is idempotent):
  1. the post id goes on the erasure list (tagwatch.privacy.erasures): from here on no build includes it and no
     ingest writes it again, whatever else still exists;
  2. the image is deleted from the posts bucket, unless another post of the same source points at the same bytes
     (images are content-addressed) - then it stays for that post and the report says so;
  3. the post record is deleted, and its line removed from the source's index (a cached copy of the record);
  4. a ``post.deleted`` CloudEvent goes to ``settings.kafka.topics.deleted`` (at least once).
The ledger keeps the post's decision: it holds the post id, scores, reasons, the model and policy versions and
timings - no image, caption or author (docs/privacy.md). Earlier dataset versions keep their copy inside their
shards: ``tagwatch data lineage POST_ID`` names them and the models trained on them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from tagwatch.data import posts as store
from tagwatch.errors import PrivacyError
from tagwatch.moderation.events import EventType, PostDeleted, encode
from tagwatch.privacy.erasures import record_erasure
from tagwatch.settings import Settings


@dataclass
class DeletionReport:
    post_id: str
    erasure_added: bool = False  # False: it was on the erasure list already (a second run)
    record_removed: bool = False
    source: str | None = None
    image_uri: str | None = None
    image_removed: bool = False
    image_note: str = ""  # deleted / not found / shared with N other posts: kept
    index_updated: bool = False
    ledger_decision: str | None = None  # the kept decision's action, None when the post was never decided
    event_partition: int | None = None
    event_offset: int | None = None

    def to_json(self) -> dict:
        return asdict(self)


def find_post(client: Any, bucket: str, post_id: str) -> store.Post | None:
    """The post record of ``post_id`` in any source (its own source prefix first), or None."""
    sources = store.list_sources(client, bucket)
    sources.sort(key=lambda source: not post_id.startswith(f"{source}-"))
    for source in sources:
        try:
            body = client.get_object(Bucket=bucket, Key=store.post_key(source, post_id))["Body"].read()
        except client.exceptions.NoSuchKey:
            continue
        return store.Post.model_validate_json(body)
    return None


def delete_post_data(*, client: Any, posts_bucket: str, ledger: Any, post_id: str, reason: str = "",
                     image_uri: str | None = None, force: bool = False) -> DeletionReport:
    """Steps 1-3 above (S3 only). ``image_uri``: the image of a post that has no record (one that only went
    through the stream). PrivacyError when nothing at all is known of ``post_id`` unless ``force``."""
    post = find_post(client, posts_bucket, post_id)
    decision = ledger.get(post_id)
    if post is None and decision is None and image_uri is None and not force:
        raise PrivacyError(f"no post {post_id!r}: no record in s3://{posts_bucket}/posts/ and no ledger decision",
                           hint="check the id; pass --image-uri for a post that only went through the stream, or "
                                "--force to put the id on the erasure list anyway")
    report = DeletionReport(post_id=post_id, ledger_decision=decision.action if decision else None)
    report.erasure_added = record_erasure(client, posts_bucket, post_id, reason=reason)
    report.image_uri = post.image_uri if post else image_uri
    if post is not None:
        report.source = post.source
        others = _posts_sharing_image(client, posts_bucket, post)
        if others:
            report.image_note = f"shared with {len(others)} other post(s): kept"
        else:
            report.image_removed, report.image_note = _delete_object(client, post.image_uri, posts_bucket)
        client.delete_object(Bucket=posts_bucket, Key=store.post_key(post.source, post_id))
        report.record_removed = True
    elif image_uri is not None:
        report.image_removed, report.image_note = _delete_object(client, image_uri, posts_bucket)
    else:
        report.image_note = "no image known"
    report.index_updated = _drop_from_indexes(client, posts_bucket, post_id, report.source)
    return report


def _posts_sharing_image(client: Any, bucket: str, post: store.Post) -> list[str]:
    records = store.load_post_records(client, bucket, post.source)
    return sorted(pid for pid, record in records.items() if pid != post.post_id and isinstance(record, dict)
                  and record.get("image_uri") == post.image_uri)


def _delete_object(client: Any, uri: str, posts_bucket: str) -> tuple[bool, str]:
    from botocore.exceptions import ClientError

    bucket, key = store.split_s3_uri(uri)
    if bucket != posts_bucket:
        raise PrivacyError(f"image {uri} is not in the posts bucket {posts_bucket!r}",
                           hint="tagwatch deletes only what it stores in the posts bucket")
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:  # absent (404): never stored, or a second run after it was deleted
        if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
            raise
        return False, "not found"
    client.delete_object(Bucket=bucket, Key=key)
    return True, "deleted"


def _drop_from_indexes(client: Any, bucket: str, post_id: str, source: str | None) -> bool:
    """Remove the post's line from its source's index (every source's when the source is not known)."""
    changed = False
    for name in [source] if source else store.list_sources(client, bucket):
        records = store.read_index(client, bucket, name)
        if records.pop(post_id, None) is not None:
            store.write_index(client, bucket, name, records.values())
            changed = True
    return changed


def publish_deletion(settings: Settings, report: DeletionReport, *, reason: str = "") -> tuple[int, int]:
    """Send ``post.deleted`` (acks=all, keyed by post id) to ``settings.kafka.topics.deleted``; (partition,
    offset) where the broker stored it."""
    from kafka import KafkaProducer

    from tagwatch.clients import kafka_config
    from tagwatch.moderation.publish import Send, confirm_sends, send

    event = PostDeleted(post_id=report.post_id, deleted_at=datetime.now(timezone.utc), reason=reason,
                        image_removed=report.image_removed, record_removed=report.record_removed)
    value, headers = encode(event, EventType.POST_DELETED, subject=report.post_id)
    topic = settings.kafka.topics.deleted
    producer = KafkaProducer(acks="all", **kafka_config(settings.kafka, client_id="tagwatch-deletion"))
    try:
        item = send(producer, topic, Send(report.post_id, report.post_id.encode(), value, headers))
        confirmed, failed = confirm_sends(producer, topic, [item])
    finally:
        producer.close(timeout=10)
    if failed:
        raise failed[0][1]
    metadata = confirmed[0][1]
    return metadata.partition, metadata.offset


def erase_post(settings: Settings, post_id: str, *, reason: str = "", image_uri: str | None = None,
               force: bool = False) -> DeletionReport:
    """The whole deletion: S3 (erasure list, image, record, index), then the post.deleted event."""
    from tagwatch.clients import s3_client
    from tagwatch.moderation.ledger import Ledger

    client = s3_client(settings.s3)
    report = delete_post_data(client=client, posts_bucket=settings.s3.buckets.posts,
                              ledger=Ledger(client, settings.s3.buckets.ledger), post_id=post_id, reason=reason,
                              image_uri=image_uri, force=force)
    report.event_partition, report.event_offset = publish_deletion(settings, report, reason=reason)
    return report
