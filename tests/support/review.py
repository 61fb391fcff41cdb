"""Helpers for the review app's tests: a private review world on the session stack (its own ledger and posts
buckets, review and review-outcomes topics, feeder group), and posts sent to review the way the stream sends them
(a real PNG in the posts bucket, the first decision in the ledger, a ReviewRequest event on the review topic)."""

from __future__ import annotations

import hashlib
import io
import secrets
from datetime import datetime, timedelta, timezone

from tagwatch.clients import kafka_config, s3_client
from tagwatch.moderation.events import Decision, EventType, ModelRef, ReviewRequest, encode
from tagwatch.moderation.ledger import Ledger
from tagwatch.settings import Settings

CATEGORIES = ("alcohol", "violence", "weapons")


def review_world(settings: Settings) -> Settings:
    """A copy of ``settings`` with private buckets, topics and feeder group, all created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    tag = secrets.token_hex(4)
    buckets = settings.s3.buckets.model_copy(update={"posts": f"rv-posts-{tag}", "ledger": f"rv-ledger-{tag}"})
    client = s3_client(settings.s3)
    for bucket in (buckets.posts, buckets.ledger):
        client.create_bucket(Bucket=bucket)
    topics = settings.kafka.topics.model_copy(update={"review": f"t{tag}.review",
                                                      "review_outcomes": f"t{tag}.review-outcomes"})
    kafka = settings.kafka.model_copy(update={"topics": topics})
    admin = KafkaAdminClient(**kafka_config(kafka, client_id="test-admin"))
    try:
        admin.create_topics([NewTopic(topics.review, 1, 1), NewTopic(topics.review_outcomes, 1, 1)])
    finally:
        admin.close()
    review = settings.review.model_copy(update={"consumer_group": f"review-{tag}"})
    return settings.model_copy(update={"s3": settings.s3.model_copy(update={"buckets": buckets}), "kafka": kafka,
                                       "review": review})


def review_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Env for a `tagwatch review ...` subprocess in ``settings``' review world."""
    from tests.conftest import stack_env

    return {**stack_env(settings),
            "TAGWATCH_S3__BUCKETS__POSTS": settings.s3.buckets.posts,
            "TAGWATCH_S3__BUCKETS__LEDGER": settings.s3.buckets.ledger,
            "TAGWATCH_KAFKA__TOPICS__REVIEW": settings.kafka.topics.review,
            "TAGWATCH_KAFKA__TOPICS__REVIEW_OUTCOMES": settings.kafka.topics.review_outcomes,
            "TAGWATCH_REVIEW__CONSUMER_GROUP": settings.review.consumer_group, **extra}


def png(colour: tuple[int, int, int], size: int = 96) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, format="PNG")
    return out.getvalue()


def post_for_review(settings: Settings, post_id: str, *, image: bytes, scores: dict[str, float] | None = None,
                    reasons: list[str] | None = None, at: datetime | None = None) -> ReviewRequest:
    """Upload the image, write the stream's first decision (review) to the ledger; the request to send."""
    client = s3_client(settings.s3)
    digest = hashlib.sha256(image).hexdigest()
    key = f"images/test/{digest}.png"
    client.put_object(Bucket=settings.s3.buckets.posts, Key=key, Body=image, ContentType="image/png")
    at = at or datetime.now(timezone.utc) - timedelta(seconds=60)  # decided (and sent to review) a minute ago
    scores = scores or {c: round(0.2 + 0.25 * i, 2) for i, c in enumerate(CATEGORIES)}
    reasons = reasons or ["weapons 0.70 in review band [0.40, 0.90)"]
    decision = Decision(decision_id=secrets.token_hex(16), post_id=post_id, action="review", scores=scores,
                        reasons=reasons, model=ModelRef(name="tagwatch-moderation", version="7", sha256="ab" * 32),
                        policy_version="p3", decided_at=at, latency_ms=12.0)
    Ledger(client, settings.s3.buckets.ledger).record(decision)
    return ReviewRequest(decision_id=decision.decision_id, post_id=post_id,
                         image_uri=f"s3://{settings.s3.buckets.posts}/{key}", scores=scores, reasons=reasons,
                         requested_at=at)


def send_requests(settings: Settings, requests: list[ReviewRequest]) -> None:
    """Produce the requests on the review topic as the moderation consumer does (CloudEvents binary mode)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(acks="all", **kafka_config(settings.kafka, client_id="test-review-requests"))
    try:
        for request in requests:
            value, headers = encode(request, EventType.REVIEW, subject=request.post_id)
            producer.send(settings.kafka.topics.review, key=request.post_id.encode(), value=value, headers=headers)
        producer.flush(timeout=30)
    finally:
        producer.close()
