"""PartitionTracker's rules on a recording stand-in for kafka-python's consumer (seek/committed/assignment only).
The same rules run against the real broker in tests/integration/test_moderation_rebalance.py."""

from collections import namedtuple

from kafka import TopicPartition

from tagwatch.moderation.offsets import PartitionTracker, describe

Record = namedtuple("Record", "topic partition offset key value headers")
P0, P1 = TopicPartition("posts", 0), TopicPartition("posts", 1)


class FakeConsumer:
    def __init__(self, committed):
        self.owned, self.committed_offsets, self.seeks = set(), dict(committed), []

    def assignment(self):
        return set(self.owned)

    def committed(self, tp, timeout_ms=None):
        return self.committed_offsets.get(tp)

    def seek(self, tp, offset):
        self.seeks.append((tp.partition, offset))

    def seek_to_beginning(self, tp):
        self.seeks.append((tp.partition, "beginning"))


def recs(partition, first, last):
    return [Record("posts", partition, o, b"k", b"v", []) for o in range(first, last + 1)]


def tracker_with(owned, committed=None):
    consumer = FakeConsumer(committed or {})
    tracker = PartitionTracker(consumer)
    consumer.owned = set(owned)
    tracker.assigned(owned)
    return tracker, consumer


def test_a_newly_assigned_partition_starts_at_its_commit_and_stale_fetches_are_dropped():
    tracker, consumer = tracker_with({P0, P1}, {P0: 10})
    # this poll's records were fetched from a position kept across the rebalance (stale): never admitted
    assert tracker.admit({P0: recs(0, 40, 45), P1: recs(1, 3, 4)}) == []
    assert sorted(consumer.seeks, key=str) == [(0, 10), (1, "beginning")]
    assert [r.offset for r in tracker.admit({P0: recs(0, 10, 12)})] == [10, 11, 12]


def test_a_gap_is_read_again_once_before_it_is_believed():
    tracker, consumer = tracker_with({P0}, {P0: 0})
    tracker.admit({})
    assert len(tracker.admit({P0: recs(0, 0, 4)})) == 5
    consumer.seeks.clear()
    assert tracker.admit({P0: recs(0, 9, 12)}) == []  # 5..8 missing: re-read from 5
    assert consumer.seeks == [(0, 5)]
    assert [r.offset for r in tracker.admit({P0: recs(0, 5, 6)})] == [5, 6]  # it was a skip, not a gap
    assert [r.offset for r in tracker.admit({P0: recs(0, 9, 9)})] == []  # 7..8: re-read first
    assert [r.offset for r in tracker.admit({P0: recs(0, 9, 9)})] == [9]  # twice the same: a real gap


def test_records_polled_during_a_back_off_are_rewound_not_dropped():
    tracker, consumer = tracker_with({P0}, {P0: 0})
    tracker.admit({P0: recs(0, 0, 3)})
    consumer.seeks.clear()
    tracker.rewind({P0: recs(0, 4, 7)})
    assert consumer.seeks == [(0, 4)] and tracker.expected[P0] == 4
    assert [r.offset for r in tracker.admit({P0: recs(0, 4, 5)})] == [4, 5]


def test_a_batch_commits_only_partitions_still_held_in_the_epoch_it_was_fetched_in():
    tracker, consumer = tracker_with({P0, P1}, {P0: 0, P1: 0})
    tracker.admit({})
    batch = tracker.admit({P0: recs(0, 0, 3), P1: recs(1, 0, 1)})
    epochs = tracker.epochs_of(batch)
    # P1 revoked and given back during the batch: its records are the group's again
    tracker.revoked({P0, P1})
    tracker.assigned({P0, P1})
    assert tracker.commit_offsets(batch, epochs) == {}
    batch = tracker.admit({}) or tracker.admit({P0: recs(0, 0, 3), P1: recs(1, 0, 1)})
    epochs = tracker.epochs_of(batch)
    tracker.revoked({P1})
    consumer.owned = {P0}
    offsets = tracker.commit_offsets(batch, epochs)
    assert {tp: m.offset for tp, m in offsets.items()} == {P0: 4}
    assert [r.partition for r in tracker.current(batch, epochs)] == [0, 0, 0, 0]


def test_log_lines_name_topic_partition_and_offsets():
    assert describe(recs(0, 461, 510) + recs(1, 412, 412)) == "posts[0]@461-510, posts[1]@412"
