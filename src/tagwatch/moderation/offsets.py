"""Where each owned partition stands, so that a commit never passes an undecided record.

The invariant: an offset is committed only when every record before it on that partition has a decision (ledger)
or a dead letter. This member keeps it with five rules, all enforced here:

1. Every record a poll returns is handed to a batch, or its partition is rewound to it (``rewind``): nothing
   fetched is ever silently dropped (a dropped record moves the fetch position past itself).
2. A partition (re)assigned to this member starts at its committed offset (``settle``), never at a fetch
   position left over from before a revoke: kafka-python keeps that position when a partition comes back.
3. A batch remembers the assignment epoch of each partition it holds records of; when the partition was
   revoked or reassigned since, those records are the group's again (re-read from the commit), not ours.
4. A batch commits only the partitions whose epoch it holds is still the current one (``commit_offsets``).
5. A poll that starts a partition beyond where the last one ended is re-read once before the gap is believed
   (Kafka may legitimately skip offsets: transaction markers, compaction).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def tp_of(record):
    from kafka import TopicPartition

    return TopicPartition(record.topic, record.partition)


def describe(records) -> str:
    """``topic[partition]@first-last`` per partition, for log lines about a batch."""
    spans: dict = {}
    for record in records:
        key = (record.topic, record.partition)
        low, high = spans.get(key, (record.offset, record.offset))
        spans[key] = (min(low, record.offset), max(high, record.offset))
    parts = [f"{t}[{p}]@{lo}" + (f"-{hi}" if hi != lo else "") for (t, p), (lo, hi) in sorted(spans.items())]
    return ", ".join(parts) or "nothing"


class PartitionTracker:
    """Assignment epochs, pending seeks and expected next offsets of one consumer's partitions."""

    def __init__(self, consumer, *, timeout_ms: int = 5000) -> None:
        self.consumer = consumer
        self.timeout_ms = timeout_ms  # a broker that is away must not block the loop (and its heartbeats)
        self.epoch: dict = {}
        self.expected: dict = {}
        self._to_seek: set = set()
        self._gap_checked: dict = {}

    # -- called by the rebalance listener (inside poll) ----------------------------------------------
    def revoked(self, tps) -> None:
        for tp in tps:
            self.epoch[tp] = self.epoch.get(tp, 0) + 1
            self.expected.pop(tp, None)
            self._to_seek.discard(tp)

    def assigned(self, tps) -> None:
        for tp in tps:
            self.epoch[tp] = self.epoch.get(tp, 0) + 1
            self.expected.pop(tp, None)
            self._to_seek.add(tp)

    # -- called by the consumer loop -----------------------------------------------------------------
    def settle(self) -> set:
        """Seek every newly assigned partition to its committed offset (rule 2). A partition whose committed
        offset cannot be read now stays pending; records polled for it meanwhile are dropped (rule 1 holds:
        the seek that follows moves the position back)."""
        from kafka.errors import KafkaError

        if not self._to_seek:
            return set()
        owned, settled = self.consumer.assignment(), set()
        for tp in list(self._to_seek):
            if tp not in owned:
                self._to_seek.discard(tp)
                continue
            try:
                committed = self.consumer.committed(tp, timeout_ms=self.timeout_ms)
                if committed is None:
                    self.consumer.seek_to_beginning(tp)
                else:
                    self.consumer.seek(tp, committed)
            except (KafkaError, AssertionError, ValueError) as error:
                log.warning("%s[%d]: committed offset unreadable (%s); will seek before reading it",
                            tp.topic, tp.partition, type(error).__name__)
                continue
            self._to_seek.discard(tp)
            settled.add(tp)
            self.expected[tp] = committed
            log.info("%s[%d]: reading from the committed offset %s", tp.topic, tp.partition,
                     committed if committed is not None else "(none: the beginning)")
        return settled

    def admit(self, polled: dict) -> list:
        """The records of one poll that this member may process, in order (rules 1, 2, 5)."""
        settled = self.settle()
        owned = self.consumer.assignment()
        admitted = []
        for tp, records in polled.items():
            if not records or tp not in owned or tp in self._to_seek or tp in settled:
                continue  # not ours, or fetched before the seek to the commit (due or just done): re-read
            expected = self.expected.get(tp)
            if expected is not None:
                records = [r for r in records if r.offset >= expected]  # already handed out (a re-fetch)
                if not records:
                    continue
                if records[0].offset > expected and self._gap_checked.get(tp) != expected:
                    log.warning("%s[%d]: poll starts at %d, expected %d; re-reading once before believing the gap",
                                tp.topic, tp.partition, records[0].offset, expected)
                    self._gap_checked[tp] = expected
                    self.consumer.seek(tp, expected)
                    continue
            self._gap_checked.pop(tp, None)
            self.expected[tp] = records[-1].offset + 1
            admitted.extend(records)
        return admitted

    def rewind(self, polled: dict) -> None:
        """Records polled while this member cannot take them (a back-off): seek back so they are read again."""
        owned = self.consumer.assignment()
        for tp, records in polled.items():
            if records and tp in owned and tp not in self._to_seek:
                first = min(r.offset for r in records)
                self.consumer.seek(tp, first)
                self.expected[tp] = first

    def epochs_of(self, records) -> dict:
        return {tp: self.epoch.get(tp, 0) for tp in {tp_of(r) for r in records}}

    def current(self, records, epochs: dict) -> list:
        """The records whose partition is still held under the epoch they were fetched in (rule 3)."""
        owned = self.consumer.assignment()
        keep = {tp for tp, e in epochs.items() if tp in owned and self.epoch.get(tp, 0) == e}
        return [r for r in records if tp_of(r) in keep]

    def commit_offsets(self, records, epochs: dict) -> dict:
        """Next offset per partition, only for partitions still held in the same epoch (rule 4)."""
        from kafka import OffsetAndMetadata

        offsets: dict = {}
        for record in self.current(records, epochs):
            tp = tp_of(record)
            offsets[tp] = max(offsets.get(tp, -1), record.offset + 1)
        return {tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()}
