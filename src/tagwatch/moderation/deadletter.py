"""Typed dead-letter reasons and the envelope that keeps the original record untouched."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from enum import Enum

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


def build_dead_letter(record, reason: str, error: str, *, attempts: int = 1, first_seen: datetime | None = None) -> DeadLetter:
    """Wrap a kafka-python ConsumerRecord; bytes are kept as base64 so nothing is lost or re-encoded."""
    now = datetime.now(timezone.utc)
    return DeadLetter(
        reason=reason,
        error=error[:2000],
        attempts=attempts,
        first_seen=first_seen or now,
        last_seen=now,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        original_key_b64=base64.b64encode(record.key).decode() if record.key is not None else None,
        original_value_b64=base64.b64encode(record.value or b"").decode(),
        original_headers=[(name, base64.b64encode(value or b"").decode()) for name, value in (record.headers or [])],
    )
