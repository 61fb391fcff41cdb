"""The retry half of the moderation consumer: back off, stay in the group, never skip a record.

A retryable failure pauses every partition the member holds, backs off (doubling up to ``backoff_max_s``) and
tries again. What is retried depends on how far the batch got: a batch that was decided is delivered again
with the same outcomes (moderation/checkpoint.py), never re-fetched and re-scored; a delivered one is only
committed again; one whose deciding failed (the model server down, some images unreadable) is decided again.
Records polled meanwhile are rewound, never dropped, and partitions assigned meanwhile start at their committed
offset. A record whose own step fails ``max_record_attempts`` times in a row is dead-lettered with its last
error; a partition undecided for longer than ``stuck_after_s`` makes /healthz answer 503 and name it.
"""

from __future__ import annotations

import logging
import time
from threading import Event

from tagwatch.errors import RetryableError
from tagwatch.moderation.batch import RecordsFailed, Staged
from tagwatch.moderation.offsets import describe, tp_of

log = logging.getLogger(__name__)


class Retrying:
    """Mixed into ModerationConsumer: uses its consumer, tracker, checkpoint, moderator, attempts, metrics."""

    def _handle_with_retry(self, records: list, epochs: dict, stop: Event, *, failed: RetryableError | None = None,
                           staged: Staged | None = None) -> bool:
        """Handle the batch, retrying with back-off while every held partition is paused. ``failed``: a first
        attempt (the pipelined one) already failed with this error; ``staged``: the batch as decided then.
        False: given up at a stop, nothing committed."""
        backoff = self.options.backoff_initial_s
        try:
            while True:
                try:
                    if failed is not None:
                        error, failed = failed, None
                        raise error
                    if staged is None:
                        staged = self._prepare(records)
                        staged.epochs = epochs
                    self.checkpoint.complete(staged)
                    self._settled(staged.records)
                    self._done(staged.records)
                    return True
                except RetryableError as error:
                    if isinstance(error, RecordsFailed):
                        self._charge(error)
                    self._note_retry(records, error, backoff)
                    self._wait_alive(backoff)
                backoff = min(backoff * 2, self.options.backoff_max_s)
                # A rebalance during the wait may have taken partitions away or given them back: their records
                # are the group's again (re-read from the commit). Keep only what is still ours, as fetched.
                records = self.tracker.current(records, epochs)
                if staged is not None:
                    staged = staged.only(records)
                if not records:
                    return True
                if stop.is_set() and backoff >= self.options.backoff_max_s:
                    log.warning("stopping with %s undecided and uncommitted; the group will re-read them", describe(records))
                    return False
        finally:
            paused = self.consumer.paused()
            if paused:
                self.consumer.resume(*paused)

    def _note_retry(self, records: list, error: RetryableError, backoff: float) -> None:
        self.stats.retries += 1
        self.metrics.retries.labels(cause=type(error.__cause__ or error).__name__).inc()
        self.metrics.healthy = False
        now = time.monotonic()
        for record in records:
            tp = tp_of(record)
            since, first = self._undecided_since.get(tp, (now, record.offset))
            self._undecided_since[tp] = (since, min(first, record.offset))
        self._publish_stuck()
        log.warning("batch %s not decided (%s); retrying in %.1fs", describe(records), error, backoff)

    def _publish_stuck(self) -> None:
        self.metrics.stuck = {f"{tp.topic}[{tp.partition}]@{first}": since
                              for tp, (since, first) in self._undecided_since.items()}

    def _charge(self, error: RecordsFailed) -> None:
        """Count a failure against each record whose own step failed, unless the whole store is down."""
        if not self.moderator.store_reachable():
            log.warning("the posts bucket is unreachable: waiting the outage out (no record is charged)")
            return
        for item in error.items:
            poison = self.attempts.failed(item.record, item.failed)
            if poison is not None:
                record = item.record
                self.moderator.poisoned[self.attempts.key(record)] = poison
                log.error("%s[%d]@%d failed %d times in a row: dead-lettering it (%s)", record.topic,
                          record.partition, record.offset, poison.attempts, item.failed.message)

    def _wait_alive(self, seconds: float) -> None:
        """Sleep while polling to stay in the group. Every held partition is paused (also those assigned during
        the wait); anything a poll still returns is rewound, and new partitions start at their commit."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assigned = self.consumer.assignment()
            if assigned:
                self.consumer.pause(*assigned)
            polled = self.consumer.poll(timeout_ms=int(min(200, max(1, (deadline - time.monotonic()) * 1000))))
            self.tracker.rewind(polled)
            self.tracker.settle()  # after the rewind: a newly assigned partition starts at its commit

    def _settled(self, records: list) -> None:
        """Decided or dead-lettered, and committed (or no longer ours): forget attempts and stuck clocks."""
        self.attempts.settled(records)
        for record in records:
            self.moderator.poisoned.pop(self.attempts.key(record), None)
            self._undecided_since.pop(tp_of(record), None)
        self._publish_stuck()
