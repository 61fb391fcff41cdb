"""Retryable or permanent, decided in one place; dead letters sized to the producer's limit; distinct event ids."""

import base64
from collections import namedtuple

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from tagwatch.errors import PoisonInputError, RetryableError
from tagwatch.moderation.deadletter import ENVELOPE_OVERHEAD, build_dead_letter
from tagwatch.moderation.delivery import Delivery, derived_event_id
from tagwatch.moderation.failures import RecordAttempts, classify_s3_error, validate_s3_key
from tagwatch.schemas import load_schema

Record = namedtuple("Record", "topic partition offset key value headers")


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "GetObject")


@pytest.mark.parametrize("status, code, reason", [
    (404, "NoSuchKey", "image_missing"),
    (400, "InvalidRequest", "s3_rejected"),
    (400, "InvalidArgument", "s3_rejected"),
    (416, "InvalidRange", "s3_rejected"),
])
def test_s3_4xx_other_than_throttling_is_permanent(status, code, reason):
    failure = classify_s3_error(client_error(status, code), "GET x")
    assert isinstance(failure, PoisonInputError) and failure.reason == reason and code in failure.message


@pytest.mark.parametrize("status, code", [(503, "SlowDown"), (429, "TooManyRequests"), (500, "InternalError"),
                                          (400, "RequestTimeout"), (408, "RequestTimeout"), (502, "BadGateway")])
def test_throttling_and_server_errors_are_retryable(status, code):
    assert isinstance(classify_s3_error(client_error(status, code), "GET x"), RetryableError)


def test_access_denied_is_permanent_only_while_the_bucket_itself_is_readable():
    denied = client_error(403, "AccessDenied")
    assert isinstance(classify_s3_error(denied, "GET x", bucket_readable=lambda: True), PoisonInputError)
    # the whole store refuses us (credentials): an outage of ours, never the record's fault
    assert isinstance(classify_s3_error(denied, "GET x", bucket_readable=lambda: False), RetryableError)


def test_connection_trouble_is_retryable():
    assert isinstance(classify_s3_error(EndpointConnectionError(endpoint_url="http://x"), "GET x"), RetryableError)


@pytest.mark.parametrize("key", ["images/../secret.jpg", "../x", "a//b.jpg", "/lead.jpg", "trail/", "", "a/./b",
                                 "bad\x00key", "k" * 1100])
def test_keys_s3_would_refuse_or_resolve_elsewhere_are_poison_before_any_request(key):
    with pytest.raises(PoisonInputError) as info:
        validate_s3_key(key)
    assert info.value.reason == "bad_image_uri"


def test_good_keys_pass():
    validate_s3_key("images/ab/abcdef.jpg")
    validate_s3_key("a..b/c.d.jpg")  # dots inside a segment are fine


def test_a_record_that_keeps_failing_becomes_poison_with_its_last_error():
    attempts = RecordAttempts(max_attempts=3)
    record = Record("posts", 1, 41, b"k", b"v", [])
    assert attempts.failed(record, RetryableError("first")) is None
    assert attempts.failed(record, RetryableError("second")) is None
    poison = attempts.failed(record, RetryableError("S3 GET: HTTP 500 InternalError"))
    assert poison.reason == "retries_exhausted" and poison.attempts == 3 and "HTTP 500" in poison.message
    attempts.settled([record])
    assert len(attempts) == 0 and attempts.failed(record, RetryableError("again")) is None


def test_an_oversized_dead_letter_moves_its_original_to_storage_and_fits_the_limit():
    record = Record("posts", 0, 7, b"post-1", b"x" * 900_000, [("ce_id", b"abc")])
    stored = {}

    def store(letter):
        stored["letter"] = letter
        return "s3://ledger/dead-letters/posts/0/7.json"

    letter = build_dead_letter(record, "invalid_post", "caption too long", max_bytes=1_000_000, store_original=store)
    assert letter.original_ref == "s3://ledger/dead-letters/posts/0/7.json"
    assert letter.original_value_b64 is None and letter.original_size == 900_000 + 6 + 5 + 3
    assert len(letter.model_dump_json()) + ENVELOPE_OVERHEAD <= 1_000_000
    assert base64.b64decode(stored["letter"].original_value_b64) == record.value  # the original, whole, in S3

    small = build_dead_letter(Record("posts", 0, 8, b"k", b"{}", []), "bad_json", "e", max_bytes=1_000_000)
    assert small.original_ref is None and base64.b64decode(small.original_value_b64) == b"{}"


def test_a_tombstone_is_not_an_empty_value():
    tomb = build_dead_letter(Record("posts", 0, 1, b"k", None, []), "bad_json", "no value")
    empty = build_dead_letter(Record("posts", 0, 2, b"k", b"", []), "bad_json", "empty")
    assert tomb.tombstone and tomb.original_value_b64 is None
    assert not empty.tombstone and empty.original_value_b64 == ""


def test_decision_and_review_request_have_distinct_deterministic_event_ids():
    assert derived_event_id("d1", "review") == derived_event_id("d1", "review") != "d1"
    assert derived_event_id("posts", 0, 5, "bad_json") != derived_event_id("posts", 0, 6, "bad_json")


class _ExplodingProducer:
    """A producer whose send raises what kafka-python raises synchronously (a stand-in: the real oversize case
    runs against the broker in test_moderation_stream.py)."""

    def __init__(self, error):
        self.error = error

    def send(self, *args, **kwargs):
        raise self.error

    def flush(self, timeout=None):
        pass


@pytest.mark.parametrize("error", [ValueError("boom"), TypeError("bad headers")])
def test_anything_raised_while_producing_is_a_retryable_batch_failure_never_fatal(error):
    from types import SimpleNamespace

    from tagwatch.moderation.core import Outcome

    item = Outcome(record=Record("posts", 0, 3, b"k", b"v", []), poison=PoisonInputError("bad_json", "x"))
    topics = SimpleNamespace(decisions="d", review="r", dead_letter="dlq")
    delivery = Delivery(_ExplodingProducer(error), s3=None, topics=topics, ledger_bucket="ledger",
                        max_request_bytes=1_000_000, pool=None, metrics=None, stats=None)
    with pytest.raises(RetryableError) as info:
        delivery.produce([item], [], [])
    assert type(error).__name__ in info.value.message


def test_the_dead_letter_schema_documents_tombstones_and_references():

    schema = load_schema("dead-letter.v1.json")
    assert {"tombstone", "original_ref", "original_size"} <= set(schema["properties"])


def test_an_unforeseen_error_on_one_image_dead_letters_that_record_only():
    """A decoder or preprocessing crash on one image (here a preset that raises) poisons that record alone.
    The S3 object is served by a stand-in (the real fetch path is in the stream tests)."""
    import io
    import hashlib
    from types import SimpleNamespace

    from PIL import Image

    from tagwatch.moderation.core import ImageSource, moderate_batch
    from tagwatch.moderation.publish import new_post

    out = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(out, format="PNG")
    data = out.getvalue()

    class Body:
        def read(self, _n):
            return data

        def close(self):
            pass

    s3 = SimpleNamespace(get_object=lambda **_: {"ContentLength": len(data), "Body": Body()})

    def exploding_preset(_image):
        raise RuntimeError("unforeseen")

    # the core alone: no Kafka, no pools, no bank
    scorer = SimpleNamespace(categories=["c"], model=None)
    (item,) = moderate_batch([new_post("p1", "s3://posts/images/a.png", hashlib.sha256(data).hexdigest())],
                             images=ImageSource(s3, "posts"), scorer=scorer, banks=None, policy=None,
                             preset=exploding_preset)
    assert item.poison.reason == "unprocessable_image" and "RuntimeError: unforeseen" in item.poison.message


def test_a_decision_and_its_review_request_go_out_with_distinct_deterministic_ce_ids():
    """What the producer is handed (a recording stand-in; the events' path to the broker is in the stream tests)."""
    from types import SimpleNamespace

    from tagwatch.moderation.events import Decision, ModelRef, ReviewRequest

    class Recording:
        def __init__(self):
            self.sent = []

        def send(self, topic, key=None, value=None, headers=None):
            self.sent.append((topic, dict(headers)))
            return SimpleNamespace(get=lambda timeout=None: SimpleNamespace(offset=1))

        def flush(self, timeout=None):
            pass

    common = {"post_id": "p1", "scores": {"c": 0.85}, "reasons": ["policy:c"]}
    decision = Decision(decision_id="d1", action="review", model=ModelRef(name="m", version="1", sha256="0" * 64),
                        policy_version="p", decided_at="2026-01-01T00:00:00Z", latency_ms=1.0, **common)
    review = ReviewRequest(decision_id="d1", image_uri="s3://posts/a.jpg", requested_at="2026-01-01T00:00:00Z",
                           **common)
    ids = []
    for _ in range(2):
        producer = Recording()
        stats = SimpleNamespace(decided=0, dead_lettered=0)
        metrics = SimpleNamespace(decided=SimpleNamespace(labels=lambda **_: SimpleNamespace(inc=lambda: None)),
                                  e2e_latency=SimpleNamespace(observe=lambda _v: None))
        Delivery(producer, s3=None, topics=SimpleNamespace(decisions="d", review="r", dead_letter="dlq"),
                 ledger_bucket="ledger", max_request_bytes=1_000_000, pool=None, metrics=metrics,
                 stats=stats).produce([], [decision], [review])
        ids.append([(topic, h["ce_source"], h["ce_id"]) for topic, h in producer.sent])
    (d_topic, d_source, d_id), (r_topic, r_source, r_id) = ids[0]
    assert (d_topic, r_topic) == ("d", "r") and d_id == b"d1"
    assert (d_source, d_id) != (r_source, r_id)  # CloudEvents: source + id unique per distinct event
    assert ids[0] == ids[1]  # and deterministic: a re-delivery carries the same ids


def test_an_unforeseen_error_reading_one_event_dead_letters_that_record_only():
    from types import SimpleNamespace

    from tagwatch.moderation.bank import BankMatcher
    from tagwatch.moderation.batch import BatchModerator
    from tagwatch.moderation.consumer import ConsumerOptions

    moderator = BatchModerator(None, SimpleNamespace(categories=["c"], model=None), posts_bucket="posts",
                               models_bucket="models", options=ConsumerOptions(), metrics=None,
                               policy=SimpleNamespace(version="p"))
    moderator.banks = SimpleNamespace(matcher=lambda: BankMatcher([]))  # no bank refresh: nothing here talks to S3
    try:
        staged = moderator.prepare([Record("posts", 0, 4, b"k", b"{}", 12345)])  # headers of an impossible type
    finally:
        moderator.close()
    (item,) = staged.items
    assert item.poison.reason == "unprocessable_record" and "TypeError" in item.poison.message
    assert staged.decisions == []
