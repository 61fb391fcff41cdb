import io
from collections import namedtuple

import numpy as np
import pytest
from PIL import Image

from tagwatch.errors import PoisonInputError
from tagwatch.moderation.bank import BankEntry, BankMatcher, HashBank, pdq_hex
from tagwatch.moderation.events import EventType, PostCreated, encode
from tagwatch.moderation.intake import parse_post
from tagwatch.moderation.policy import Policy, decide

Record = namedtuple("Record", "topic partition offset key value headers")


def textured(seed, size=256):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    return Image.fromarray(small).resize((size, size), Image.BILINEAR)


def reencode(image, quality=60, size=200):
    out = io.BytesIO()
    image.resize((size, size)).save(out, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue()))


def test_pdq_bank_matches_near_duplicates_only():
    banned = textured(1)
    pdq, quality = pdq_hex(banned)
    assert quality >= 50 and len(pdq) == 64
    entry = BankEntry(entry_id="e1", pdq=pdq, reason="known bad", added_at="2026-01-01T00:00:00Z")
    matcher = BankMatcher([HashBank(name="csam-test", entries=[entry])])
    hit = matcher.match(pdq_hex(reencode(banned))[0])
    assert hit and hit[0] == "csam-test" and hit[1].entry_id == "e1" and hit[2] <= 31
    assert matcher.match(pdq_hex(textured(2))[0]) is None
    assert BankMatcher([]).match(pdq) is None


def test_policy_takes_the_strictest_action_and_says_why():
    policy = Policy.model_validate({"version": "p1", "categories": {
        "weapons": {"remove_threshold": 0.9, "review_threshold": 0.5},
        "alcohol": {"review_threshold": 0.7},
    }})
    assert decide({"weapons": 0.1, "alcohol": 0.2}, policy) == ("allow", [])
    action, reasons = decide({"weapons": 0.6, "alcohol": 0.2}, policy)
    assert action == "review" and reasons[0].startswith("policy:weapons>=0.500")
    action, reasons = decide({"weapons": 0.95, "alcohol": 0.8}, policy)
    assert action == "remove" and len(reasons) == 2


def _record(post: PostCreated, **change):
    value, headers = encode(post, EventType.POST_CREATED)
    fields = {"topic": "t", "partition": 0, "offset": 7, "key": post.post_id.encode(), "value": value, "headers": headers}
    fields.update(change)
    return Record(**fields)


def _post():
    return PostCreated(post_id="p1", author_id="a", created_at="2026-11-29T00:00:00Z", caption="#dog",
                       image_uri="s3://posts/images/x.jpg", sha256="a" * 64)


def test_intake_round_trips_a_cloudevent_and_types_what_is_wrong():
    assert parse_post(_record(_post())) == _post()
    with pytest.raises(PoisonInputError) as info:
        parse_post(_record(_post(), headers=[]))
    assert info.value.reason == "not_a_cloudevent"
    with pytest.raises(PoisonInputError) as info:
        parse_post(_record(_post(), value=b'{"post_id": "p1", "schema_version": 1, "sha256": "SECRET-ish"}'))
    assert info.value.reason == "invalid_post" and "SECRET-ish" not in info.value.message  # inputs not echoed


def test_our_binary_mode_is_what_the_cloudevents_sdk_reads():
    from cloudevents.kafka import KafkaMessage, from_binary

    post = _post()
    value, headers = encode(post, EventType.POST_CREATED, subject="p1")
    event = from_binary(KafkaMessage(headers=dict(headers), key=b"p1", value=value))
    assert event["type"] == EventType.POST_CREATED.value and event["specversion"] == "1.0"
    assert event["subject"] == "p1" and event.data["post_id"] == "p1"


def test_a_null_header_value_is_a_typed_dead_letter_not_a_crash():
    """Kafka allows null header values (Java, librdkafka clients send them; kafka-python's producer cannot)."""
    post = PostCreated(post_id="p1", author_id="a", created_at="2026-01-01T00:00:00Z",
                       image_uri="s3://posts/a.jpg", sha256="0" * 64)
    value, headers = encode(post, EventType.POST_CREATED)
    nulled = [(k, None if k == "ce_id" else v) for k, v in headers]
    with pytest.raises(PoisonInputError) as info:
        parse_post(Record("posts", 0, 1, b"p1", value, nulled))
    assert info.value.reason == "not_a_cloudevent" and "ce_id" in info.value.message
