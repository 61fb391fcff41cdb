"""Events as CloudEvents 1.0 in Kafka *binary* mode: attributes in ``ce_*`` headers, JSON data as the value,
the post_id as the key (so one post's events stay in one partition, in order).

Each type is versioned in its ``ce_type`` (``...v1``) and has a JSON Schema in tagwatch/schemas/ generated from the
models below (a test keeps them equal).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tagwatch.privacy.consent import Consent

SPEC_VERSION = "1.0"
SOURCE = "urn:tagwatch:moderation"
CONTENT_TYPE = "application/json"


class EventType(str, Enum):
    POST_CREATED = "io.tagwatch.post.created.v1"
    DECISION = "io.tagwatch.moderation.decision.v1"
    REVIEW = "io.tagwatch.moderation.review.v1"
    DEAD_LETTER = "io.tagwatch.moderation.deadletter.v1"
    POST_DELETED = "io.tagwatch.post.deleted.v1"
    REVIEW_OUTCOME = "io.tagwatch.review.outcome.v1"


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PostCreated(_Event):
    """A new post to moderate (the input). The image lives in S3; the event carries its address and hash."""

    schema_version: Literal[1] = 1
    post_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    author_id: str = Field(min_length=1, max_length=128)
    created_at: datetime
    caption: str = Field(default="", max_length=10_000)
    image_uri: str = Field(pattern=r"^s3://[^/]+/.+")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    training_consent: Consent = Field(
        default="unknown", description="may the post be trained on: granted, denied or unknown (added later, schema "
        "still v1: an event without it reads as unknown). Moderation screens every post whatever it says")


class PostDeleted(_Event):
    """A post was erased (`tagwatch posts delete`): its image and record are gone from the posts bucket and its id
    is on the erasure list. Downstream systems that keep copies drop them."""

    schema_version: Literal[1] = 1
    post_id: str = Field(min_length=1, max_length=128)
    deleted_at: datetime
    reason: str = Field(default="", description="why, free text (no personal data)")
    image_removed: bool = Field(description="the image object was deleted (false: absent, or shared with another post)")
    record_removed: bool = Field(description="a post record was found and deleted")


class ModelRef(_Event):
    name: str
    version: str
    sha256: str


class SignalScore(_Event):
    """One signal's scores for one post (moderation/signals/): the image model, a caption classifier, a hash bank."""

    name: str = Field(description="e.g. image, caption.offensive, caption.spam, bank")
    version: str = Field(description="what produced the scores: model version, package version, heuristic rev")
    scores: dict[str, float] = Field(default_factory=dict, description="per category (or feature) the signal scores")
    detail: str = Field(default="", description="evidence in words: the features that fired, the bank entry, "
                        "or why the signal did not run")


class Decision(_Event):
    """What tagwatch decided for one post (the output), also the ledger record."""

    schema_version: Literal[1] = 1
    decision_id: str = Field(description="deterministic: same post, model and policy -> same id (dedup key)")
    post_id: str
    action: Literal["allow", "review", "remove"]
    scores: dict[str, float] = Field(description="per moderation category, in [0, 1]")
    reasons: list[str] = Field(description="why: policy rules hit, bank matches, or reused decision")
    model: ModelRef
    policy_version: str
    decided_at: datetime
    latency_ms: float = Field(description="post created_at -> decision (end to end)")
    source: dict[str, str | int] = Field(default_factory=dict, description="topic, partition, offset it came from")
    signals: list[SignalScore] = Field(default_factory=list, description="every signal the policy saw, with its "
                                       "name, version and scores (added later, schema still v1: an event without "
                                       "it reads as no signals recorded)")


class ReviewRequest(_Event):
    schema_version: Literal[1] = 1
    decision_id: str
    post_id: str
    image_uri: str
    scores: dict[str, float]
    reasons: list[str]
    requested_at: datetime
    signals: list[SignalScore] = Field(default_factory=list, description="as the decision's (added later, schema "
                                       "still v1)")
    pdq: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="the image's PDQ hash as the "
                            "stream computed it: the review app finds earlier near-duplicates with it (added later, "
                            "schema still v1: absent reads as unknown)")


class ReviewOutcome(_Event):
    """What a reviewer decided for a post the stream sent to review: an event on the review-outcomes topic and an
    entry in the post's ledger history (the first decision is never rewritten). The next dataset build may fold it
    into the train split as a label (docs/review.md)."""

    schema_version: Literal[1] = 1
    outcome_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="deterministic per (decision, lease): a "
                            "re-submitted form records once")
    post_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    decision_id: str = Field(description="the stream's decision this outcome reviews")
    action: Literal["allow", "remove"]
    categories: list[str] = Field(default_factory=list, description="the moderation categories that apply "
                                  "(remove: at least one; allow: none)")
    note: str = Field(default="", max_length=2000)
    reviewer: str = Field(min_length=1, max_length=128, description="the signed-in account that acted")
    reviewed_at: datetime
    requested_at: datetime = Field(description="when the stream asked for review")
    time_to_decision_s: float = Field(ge=0, description="requested_at -> reviewed_at")
    image_uri: str = Field(pattern=r"^s3://[^/]+/.+")
    model_version: str = Field(description="the model version whose decision was reviewed")
    policy_version: str
    scores: dict[str, float] = Field(default_factory=dict, description="the stream's per-category scores")


class DeadLetter(_Event):
    """A record tagwatch could not decide. The original record is kept untouched (value base64, headers)."""

    schema_version: Literal[1] = 1
    reason: str
    error: str
    attempts: int
    first_seen: datetime
    last_seen: datetime
    topic: str
    partition: int
    offset: int
    original_key_b64: str | None
    original_value_b64: str | None = Field(
        description="the record's value, base64; null for a tombstone or when the original is stored by reference")
    original_headers: list[tuple[str, str]] = Field(description="header name, base64 value")
    tombstone: bool = Field(default=False, description="the record had no value at all (not an empty one)")
    original_size: int = Field(default=0, description="bytes of key + value + headers of the original record")
    original_ref: str | None = Field(
        default=None, description="s3:// address of the original record (key, value, headers as this envelope's "
                                  "fields) when it is too large to embed within the producer's request limit")


EVENT_MODELS: dict[EventType, type[_Event]] = {
    EventType.POST_CREATED: PostCreated,
    EventType.DECISION: Decision,
    EventType.REVIEW: ReviewRequest,
    EventType.DEAD_LETTER: DeadLetter,
    EventType.POST_DELETED: PostDeleted,
    EventType.REVIEW_OUTCOME: ReviewOutcome,
}


def encode(event: _Event, event_type: EventType, *, subject: str | None = None, event_id: str | None = None) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(value, headers) for a kafka-python ``send``; the key is the caller's (the post_id)."""
    headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", (event_id or uuid.uuid4().hex).encode()),
        ("ce_source", SOURCE.encode()),
        ("ce_type", event_type.value.encode()),
        ("ce_time", datetime.now(timezone.utc).isoformat().encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    if subject:
        headers.append(("ce_subject", subject.encode()))
    return event.model_dump_json().encode(), headers


def header_map(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    """Headers as text; undecodable header bytes are an error the caller maps to a dead letter."""
    return {name: value.decode("utf-8") if value is not None else "" for name, value in (headers or [])}


def parse_json(value: bytes | None) -> dict:
    if value is None:
        raise ValueError("record has no value (tombstone)")
    data = json.loads(value.decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"event data must be a JSON object, got {type(data).__name__}")
    return data
