"""A produce acknowledged without an offset is sent again. The producer is a stand-in: Tansu answered that way
only around a SIGKILL restart (seen in benchmarks/chaos.py: two posts acked at offset -1, absent from the log)."""

from types import SimpleNamespace

from tagwatch.moderation.publish import Send, confirm_sends, send


class _Future:
    def __init__(self, offset):
        self.offset = offset

    def get(self, timeout=None):
        if isinstance(self.offset, Exception):
            raise self.offset
        return SimpleNamespace(partition=0, offset=self.offset)


class _Producer:
    """Answers each send with the next offset of ``script`` (per key), like a broker that sometimes says -1."""

    def __init__(self, script):
        self.script, self.sent = {k: list(v) for k, v in script.items()}, []

    def send(self, topic, key=None, value=None, headers=None):
        self.sent.append(key)
        return _Future(self.script[key].pop(0))

    def flush(self, timeout=None):
        pass


def test_an_ack_without_an_offset_is_sent_again_until_the_broker_appends_it():
    producer = _Producer({b"a": [5], b"b": [-1, -1, 9], b"c": [RuntimeError("timed out")]})
    sends = [send(producer, "t", Send(k.decode(), k, b"v", [])) for k in (b"a", b"b", b"c")]
    confirmed, failed = confirm_sends(producer, "t", sends)
    assert [(i.post_id, m.offset) for i, m in confirmed] == [("a", 5), ("b", 9)]
    assert [(i.post_id, str(e)) for i, e in failed] == [("c", "timed out")]
    assert producer.sent == [b"a", b"b", b"c", b"b", b"b"]


def test_a_send_that_never_gets_an_offset_fails_after_the_rounds():
    producer = _Producer({b"x": [-1] * 3})
    confirmed, failed = confirm_sends(producer, "t", [send(producer, "t", Send("x", b"x", b"v", []))], rounds=3)
    assert confirmed == [] and "no offset after 3 sends" in str(failed[0][1])


def test_the_consumer_does_not_count_an_event_acked_without_an_offset_as_delivered():
    import pytest

    from tagwatch.errors import RetryableError
    from tagwatch.moderation.delivery import Delivery
    from tagwatch.moderation.events import Decision, ModelRef

    decision = Decision(decision_id="d1", post_id="p1", action="allow", scores={"c": 0.1}, reasons=[],
                        model=ModelRef(name="m", version="1", sha256="0" * 64), policy_version="p",
                        decided_at="2026-01-01T00:00:00Z", latency_ms=1.0)
    topics = SimpleNamespace(decisions="d", review="r", dead_letter="dlq")
    delivery = Delivery(_Producer({b"p1": [-1]}), s3=None, topics=topics, ledger_bucket="ledger",
                        max_request_bytes=1_000_000, pool=None, metrics=None, stats=None)
    with pytest.raises(RetryableError, match="without an offset"):
        delivery.produce([], [decision], [])
