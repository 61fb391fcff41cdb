"""The feeder: the review app's own consumer group on the review topic. Each request is written to the queue in S3
before its offset is committed, so a crash re-reads it (enqueue is idempotent) and a restart loses nothing. A record
that is not a valid review request is counted and skipped (it cannot be reviewed; it never stops the group)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from pydantic import ValidationError

from tagwatch.clients import kafka_config
from tagwatch.moderation.events import ReviewRequest
from tagwatch.moderation.group import close_member
from tagwatch.review.queue import ReviewQueue
from tagwatch.settings import Settings

log = logging.getLogger(__name__)


class Feeder:
    def __init__(self, settings: Settings, queue: ReviewQueue, *, on_invalid=lambda reason: None) -> None:
        self.settings, self.queue, self.on_invalid = settings, queue, on_invalid
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.consumer: Any = None
        self.enqueued = 0

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer

        kafka = self.settings.kafka
        consumer = KafkaConsumer(group_id=self.settings.review.consumer_group, enable_auto_commit=False,
                                 auto_offset_reset="earliest", session_timeout_ms=kafka.session_timeout_ms,
                                 heartbeat_interval_ms=max(500, kafka.session_timeout_ms // 3),
                                 **kafka_config(kafka, client_id="tagwatch-review"))
        consumer.subscribe([kafka.topics.review])
        return consumer

    def poll_once(self, timeout_ms: int = 500) -> int:
        """Enqueue what one poll returns, then commit; the number of items added."""
        added = 0
        batches = self.consumer.poll(timeout_ms=timeout_ms, max_records=200)
        try:
            for tp, records in batches.items():
                for record in records:
                    added += self._enqueue(tp, record)
        except Exception:
            # the consumer's position is already past these records: rewind, or the next poll's commit would
            # skip the ones not enqueued (enqueue is idempotent, so the ones that were are merely written again)
            for tp, records in batches.items():
                if records:
                    self.consumer.seek(tp, records[0].offset)
            raise
        if batches:
            self.consumer.commit()
        self.enqueued += added
        return added

    def _enqueue(self, tp: Any, record: Any) -> int:
        try:
            request = ReviewRequest.model_validate_json(record.value or b"")
        except (ValidationError, ValueError) as error:
            log.warning("skipped a record at %s[%d]@%d that is not a review request (%s)", tp.topic,
                        tp.partition, record.offset, type(error).__name__)
            self.on_invalid("invalid_request")
            return 0
        source = {"topic": tp.topic, "partition": tp.partition, "offset": record.offset}
        return int(self.queue.enqueue(request, source))

    def start(self) -> None:
        self.consumer = self._consumer()
        self._thread = threading.Thread(target=self._run, name="review-feeder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - S3 or broker trouble: nothing committed, the next poll retries
                log.exception("review feeder: poll failed; retrying (nothing was committed)")
                self._stop.wait(2.0)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():  # still inside a poll: closing its consumer under it is not safe
                log.warning("review feeder did not stop within 10 s; leaving its consumer to the session timeout")
                return
        if self.consumer is not None:
            # no LeaveGroup mid-rebalance: on Tansu that wedges the group (moderation/group.py)
            close_member(self.consumer)
