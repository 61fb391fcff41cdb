"""Turn one Kafka record into a valid PostCreated, or a PoisonInputError with a typed reason."""

from __future__ import annotations

import json

from pydantic import ValidationError

from tagwatch.errors import PoisonInputError
from tagwatch.moderation.deadletter import DeadLetterReason as R
from tagwatch.moderation.events import SPEC_VERSION, EventType, PostCreated, header_map, parse_json

REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type")
POST_TYPE_PREFIX = "io.tagwatch.post.created.v"


def parse_post(record) -> PostCreated:
    try:
        headers = header_map(record.headers)
    except UnicodeDecodeError as error:
        raise PoisonInputError(R.NOT_A_CLOUDEVENT, "a header value is not UTF-8") from error
    missing = [name for name in REQUIRED_HEADERS if not headers.get(name)]
    if missing:
        raise PoisonInputError(R.NOT_A_CLOUDEVENT, f"missing CloudEvents headers: {', '.join(missing)}")
    if headers["ce_specversion"] != SPEC_VERSION:
        raise PoisonInputError(R.UNSUPPORTED_SPECVERSION, f"ce_specversion {headers['ce_specversion']!r} (want 1.0)")
    event_type = headers["ce_type"]
    if event_type != EventType.POST_CREATED.value:
        reason = R.UNKNOWN_SCHEMA_VERSION if event_type.startswith(POST_TYPE_PREFIX) else R.UNKNOWN_EVENT_TYPE
        raise PoisonInputError(reason, f"ce_type {event_type[:100]!r} is not {EventType.POST_CREATED.value}")
    try:
        data = parse_json(record.value)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as error:
        raise PoisonInputError(R.BAD_JSON, f"{type(error).__name__}: {str(error)[:200]}") from error
    if data.get("schema_version", 1) != 1:
        raise PoisonInputError(R.UNKNOWN_SCHEMA_VERSION, f"schema_version {str(data.get('schema_version'))[:20]!r} (want 1)")
    try:
        post = PostCreated.model_validate(data)
    except ValidationError as error:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors(include_input=False, include_url=False)
        )
        raise PoisonInputError(R.INVALID_POST, fields[:500]) from error
    if record.key is not None and record.key != post.post_id.encode():
        raise PoisonInputError(R.KEY_MISMATCH, "record key is not the post_id")
    return post
