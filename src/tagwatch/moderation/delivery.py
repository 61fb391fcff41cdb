"""Steps 6-7 of the stream: produce a decided batch's events, wait for every ack, then write its ledger records.

Every event has its own CloudEvents identity (``ce_source`` + ``ce_id`` unique per distinct event, and still
deterministic, so a re-processed post's duplicates carry the same ids): a decision's id is its decision id, the
review request it causes gets a derived id, a dead letter's id is derived from the record's address and reason.

A dead letter never stops the stream: its envelope is sized to fit the producer's request limit (an oversized
original record is stored in S3 and referenced from the envelope), and anything raised while producing is a
RetryableError for the batch, never an exception that escapes the consumer.
"""

from __future__ import annotations

import hashlib
import logging

from tagwatch.errors import RetryableError
from tagwatch.moderation.deadletter import build_dead_letter
from tagwatch.moderation.events import EventType, encode
from tagwatch.moderation.failures import classify_s3_error
from tagwatch.moderation.ledger import Ledger
from tagwatch.moderation.policy import monitor_hits

log = logging.getLogger(__name__)

ORIGINALS_PREFIX = "dead-letters/"


def derived_event_id(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


class Delivery:
    """Produces decisions, review requests and dead letters, and writes the ledger, for one consumer."""

    def __init__(self, producer, s3, topics, *, ledger_bucket: str, max_request_bytes: int, pool, metrics, stats) -> None:
        self.producer, self.s3, self.topics = producer, s3, topics
        self.ledger = Ledger(s3, ledger_bucket)
        self.ledger_bucket = ledger_bucket
        self.max_request_bytes = max_request_bytes
        self.pool, self.metrics, self.stats = pool, metrics, stats

    def deliver(self, staged) -> None:
        """Produce the batch's events and wait for every ack, then write its ledger records."""
        bodies = self.produce(staged.items, staged.decisions, staged.reviews)
        self.record(staged.decisions, bodies)

    def produce(self, items, decisions, reviews) -> dict[str, bytes]:
        """Produce and wait for every ack; returns each decision's JSON as produced (the ledger stores the same
        bytes: serialised once)."""
        from kafka.errors import KafkaError

        poisoned = [i for i in items if i.poison is not None]
        bodies: dict[str, bytes] = {}
        try:
            futures = []
            for decision in decisions:
                value, headers = encode(decision, EventType.DECISION, subject=decision.post_id,
                                        event_id=decision.decision_id)
                bodies[decision.post_id] = value
                futures.append(self._send(self.topics.decisions, decision.post_id.encode(), value, headers))
            for review in reviews:
                value, headers = encode(review, EventType.REVIEW, subject=review.post_id,
                                        event_id=derived_event_id(review.decision_id, "review"))
                futures.append(self._send(self.topics.review, review.post_id.encode(), value, headers))
            for item in poisoned:
                futures.append(self._send_dead_letter(item))
            self.producer.flush(timeout=30)
            unappended = sum(1 for future in futures if future.get(timeout=30).offset < 0)
            if unappended:
                # Tansu 0.6.0 answered some produce requests around a restart with offset -1 and no error: the
                # events were never in its log. Not acknowledged, so the batch is delivered again.
                raise RetryableError(f"{unappended} event(s) acknowledged without an offset: not appended")
        except RetryableError:
            raise
        except KafkaError as error:
            raise RetryableError(f"produce not acknowledged: {type(error).__name__}: {str(error)[:200]}") from error
        except Exception as error:  # noqa: BLE001 - nothing raised while producing may stop the consumer
            raise RetryableError(f"produce failed: {type(error).__name__}: {str(error)[:200]}") from error
        for decision in decisions:
            self.metrics.decided.labels(action=decision.action).inc()
            for category in monitor_hits(decision.reasons):
                self.metrics.monitor_hits.labels(category=category).inc()
            self.metrics.e2e_latency.observe(decision.latency_ms / 1000)
        for item in poisoned:
            self.metrics.dead_lettered.labels(reason=item.poison.reason).inc()
        self.stats.decided += len(decisions)
        self.stats.dead_lettered += len(poisoned)
        return bodies

    def _send(self, topic: str, key: bytes | None, value: bytes, headers):
        return self.producer.send(topic, key=key, value=value, headers=headers)

    def _send_dead_letter(self, item):
        from kafka.errors import MessageSizeTooLargeError

        record, poison = item.record, item.poison
        letter = build_dead_letter(record, poison.reason, poison.message, attempts=poison.attempts,
                                   first_seen=poison.first_seen, max_bytes=self.max_request_bytes,
                                   store_original=self._store_original)
        event_id = derived_event_id(record.topic, record.partition, record.offset, letter.reason)
        value, headers = encode(letter, EventType.DEAD_LETTER, event_id=event_id)
        key = record.key if record.key is None or len(record.key) <= 1024 else None
        log.info("dead letter %s[%d]@%d: %s (%s)%s", record.topic, record.partition, record.offset, letter.reason,
                 letter.error[:200], f" original at {letter.original_ref}" if letter.original_ref else "")
        try:
            return self._send(self.topics.dead_letter, key, value, headers)
        except MessageSizeTooLargeError:
            # The envelope's own estimate was off (headers, framing): send it with the original by reference.
            letter = letter.model_copy(update={"original_key_b64": None, "original_value_b64": None,
                                               "original_headers": [],
                                               "original_ref": letter.original_ref or self._store_original(letter)})
            value, headers = encode(letter, EventType.DEAD_LETTER, event_id=event_id)
            return self._send(self.topics.dead_letter, None, value, headers)

    def _store_original(self, letter) -> str:
        """Keep an original too large to embed in S3 (the envelope's own JSON); its s3:// address."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = f"{ORIGINALS_PREFIX}{letter.topic}/{letter.partition}/{letter.offset}.json"
        try:
            self.s3.put_object(Bucket=self.ledger_bucket, Key=key, Body=letter.model_dump_json().encode(),
                               ContentType="application/json")
        except (BotoCoreError, ClientError) as error:
            failure = classify_s3_error(error, f"storing the dead letter's original at s3://{self.ledger_bucket}/{key}")
            raise RetryableError(failure.message) from error
        return f"s3://{self.ledger_bucket}/{key}"

    def record(self, decisions, bodies: dict[str, bytes] | None = None) -> None:
        # one conditional PUT per post, concurrently (they are independent); any failure re-raises here
        bodies = bodies or {}
        written = list(self.pool.map(lambda d: self.ledger.record(d, body=bodies.get(d.post_id)), decisions))
        self.stats.ledger_duplicates += written.count(False)

    def in_transaction(self, staged, offsets: dict, group_metadata) -> None:
        """begin -> events -> ledger -> offsets -> commit; any failure aborts and the batch is retried."""
        from kafka.errors import KafkaError

        self.producer.begin_transaction()
        try:
            self.deliver(staged)
            if offsets:
                self.producer.send_offsets_to_transaction(offsets, group_metadata)
            self.producer.commit_transaction()
        except (KafkaError, RetryableError) as error:
            try:
                self.producer.abort_transaction()
            except KafkaError:
                log.warning("abort_transaction failed after %s", type(error).__name__)
            if isinstance(error, RetryableError):
                raise
            raise RetryableError(f"transaction failed: {type(error).__name__}") from error
