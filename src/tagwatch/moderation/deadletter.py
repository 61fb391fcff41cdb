"""Typed dead-letter reasons and the envelope that keeps the original record untouched."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from enum import Enum
from typing import Callable

from tagwatch.moderation.events import DeadLetter


class DeadLetterReason(str, Enum):
    NOT_A_CLOUDEVENT = "not_a_cloudevent"  # missing/undecodable ce_* headers
    UNSUPPORTED_SPECVERSION = "unsupported_specversion"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    BAD_JSON = "bad_json"  # not UTF-8, not JSON, not an object, or no value
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    INVALID_POST = "invalid_post"  # fields missing or malformed
    KEY_MISMATCH = "key_mismatch"  # record key is not the post_id
    BUCKET_NOT_ALLOWED = "bucket_not_allowed"  # image_uri outside the posts bucket
    IMAGE_MISSING = "image_missing"
    IMAGE_EMPTY = "image_empty"
    IMAGE_TOO_LARGE = "image_too_large"  # bytes
    SHA256_MISMATCH = "sha256_mismatch"
    UNSUPPORTED_IMAGE_FORMAT = "unsupported_image_format"
    UNDECODABLE_IMAGE = "undecodable_image"
    IMAGE_TOO_MANY_PIXELS = "image_too_many_pixels"
    IMAGE_TOO_SMALL = "image_too_small"
    DECOMPRESSION_BOMB = "decompression_bomb"
    BAD_IMAGE_URI = "bad_image_uri"  # an object key S3 would refuse or resolve elsewhere ('..', empty segments)
    S3_REJECTED = "s3_rejected"  # S3 answered 4xx (not throttling) for this object while the store is fine
    UNPROCESSABLE_RECORD = "unprocessable_record"  # reading the event raised something unforeseen (logged)
    UNPROCESSABLE_IMAGE = "unprocessable_image"  # decoding/preprocessing raised something unforeseen (logged)
    RETRIES_EXHAUSTED = "retries_exhausted"  # this record's own step failed max_attempts times in a row


def build_dead_letter(record, reason: str, error: str, *, attempts: int = 1, first_seen: datetime | None = None,
                      max_bytes: int | None = None, store_original: Callable[[DeadLetter], str] | None = None) -> DeadLetter:
    """Wrap a kafka-python ConsumerRecord; bytes are kept as base64 so nothing is lost or re-encoded.

    ``max_bytes``: the largest envelope the producer may send. An envelope that would be larger keeps its
    metadata and moves the original record to ``store_original`` (which returns its ``s3://`` address).
    """
    now = datetime.now(timezone.utc)
    key, value, headers = record.key, record.value, list(record.headers or [])
    letter = DeadLetter(
        reason=getattr(reason, "value", reason),
        error=error[:2000],
        attempts=attempts,
        first_seen=first_seen or now,
        last_seen=now,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        original_key_b64=_b64(key) if key is not None else None,
        original_value_b64=_b64(value) if value is not None else None,
        original_headers=[(name, _b64(v or b"")) for name, v in headers],
        tombstone=value is None,
        original_size=len(key or b"") + len(value or b"") + sum(len(n) + len(v or b"") for n, v in headers),
    )
    if max_bytes is None or len(letter.model_dump_json()) + ENVELOPE_OVERHEAD <= max_bytes:
        return letter
    if store_original is None:
        raise ValueError(f"dead letter of {letter.original_size} bytes exceeds {max_bytes} and nowhere to store it")
    ref = store_original(letter)
    return letter.model_copy(update={"original_key_b64": None, "original_value_b64": None, "original_headers": [],
                                     "original_ref": ref})


# CloudEvents headers, the key and Kafka's record framing, kept clear of the producer's request limit.
ENVELOPE_OVERHEAD = 4096


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
