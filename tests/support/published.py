"""Check a `posts publish --ids-out` file against the broker: each row's record is where the file says."""

from __future__ import annotations

from tagwatch.clients import kafka_config
from tagwatch.moderation.events import PostCreated


def read_back(settings, rows: list[dict]) -> dict[str, PostCreated]:
    """The record at each row's (partition, offset) of the posts topic, checked to be that row's post."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(enable_auto_commit=False, **kafka_config(settings.kafka, client_id="test-ids-reader"))
    found = {}
    try:
        for row in rows:
            tp = TopicPartition(settings.kafka.topics.posts, row["partition"])
            consumer.assign([tp])
            consumer.seek(tp, row["offset"])
            records = []
            for _ in range(20):
                records = consumer.poll(timeout_ms=500, max_records=1).get(tp, [])
                if records:
                    break
            assert records and records[0].offset == row["offset"], row
            assert records[0].key.decode() == row["post_id"], row
            found[row["post_id"]] = PostCreated.model_validate_json(records[0].value)
    finally:
        consumer.close()
    return found
