"""One decided batch on its way out: produce, flush, write the ledger, then commit, each step done once.

Quix Streams' checkpoint is the model: the consumer hands a staged batch over and the checkpoint owns the order
"events acknowledged -> ledger records written -> offsets committed". A retry after a failed delivery delivers
the same outcomes again (same event ids; the ledger refuses a second write), never recomputes them; a retry
after a failed commit only commits again. In transactional mode the events and the offsets go in one Kafka
transaction, and an aborted one is delivered again, the same way.
"""

from __future__ import annotations

from tagwatch.errors import RetryableError
from tagwatch.moderation.batch import Staged


class CommitFailed(RetryableError):
    """The batch was delivered but its offsets were not committed: a retry only commits again."""


class Checkpoint:
    def __init__(self, consumer, tracker, delivery, *, transactional: bool) -> None:
        self.consumer, self.tracker, self.delivery = consumer, tracker, delivery
        self.transactional = transactional

    def deliver(self, staged: Staged) -> None:
        """Produce and acknowledge the batch's events, then write its ledger records (once)."""
        if not staged.delivered:
            self.delivery.deliver(staged)
            staged.delivered = True

    def complete(self, staged: Staged) -> None:
        """Deliver (unless done) and commit; RetryableError leaves ``staged`` as far as it got."""
        if self.transactional:
            offsets = self.tracker.commit_offsets(staged.records, staged.epochs)
            self.delivery.in_transaction(staged, offsets, self.consumer.group_metadata())
            staged.delivered = True
            return
        self.deliver(staged)
        self.commit(staged)

    def commit(self, staged: Staged) -> None:
        from kafka.errors import KafkaError

        offsets = self.tracker.commit_offsets(staged.records, staged.epochs)
        if offsets:
            try:
                self.consumer.commit(offsets)
            except KafkaError as error:
                # Decisions are out and in the ledger; an uncommitted batch is re-read and deduplicated downstream.
                raise CommitFailed(f"offset commit failed: {type(error).__name__}") from error
