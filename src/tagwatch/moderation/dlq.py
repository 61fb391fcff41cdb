"""The dead-letter topic read back: its envelopes with their DLQ address, selection by reason and time.

The topic is read from offset 0 by ``readback.TopicFollower`` (assign + seek; Tansu's end offsets are unreliable,
so it is read until quiet). An envelope whose original record was stored by reference (``original_ref``) is
completed from S3 only when its original is needed (``load_original``).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from tagwatch.errors import ConfigError, TagwatchError
from tagwatch.moderation.deadletter import DeadLetterReason
from tagwatch.moderation.events import DeadLetter

log = logging.getLogger(__name__)

REDRIVE_COUNT_HEADER = "tagwatch-redrive-count"


@dataclass(frozen=True)
class Original:
    """The record as it was first consumed: key, value and headers, bytes untouched."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class DlqEntry:
    """One envelope and where it sits on the dead-letter topic."""

    topic: str
    partition: int
    offset: int
    letter: DeadLetter
    record_key: bytes | None = None  # the DLQ record's own key (the original's, when it is small)

    @property
    def address(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def post_id(self) -> str | None:
        """The original record's key as text (a post.created key is its post_id)."""
        key = _unb64(self.letter.original_key_b64) if self.letter.original_key_b64 is not None else self.record_key
        if key is None:
            return None
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            return None

    @property
    def by_reference(self) -> bool:
        return self.letter.original_ref is not None

    def embedded_original(self) -> Original:
        letter = self.letter
        return Original(
            key=_unb64(letter.original_key_b64) if letter.original_key_b64 is not None else None,
            value=_unb64(letter.original_value_b64) if letter.original_value_b64 is not None else None,
            headers=[(name, _unb64(value)) for name, value in letter.original_headers],
        )


def redrive_count(headers: list[tuple[str, bytes]]) -> int:
    """How often this record was re-driven already (its own ``tagwatch-redrive-count`` header; 0 without one).

    Raises ValueError for a header that is not a non-negative integer.
    """
    values = [value for name, value in headers if name == REDRIVE_COUNT_HEADER]
    if not values:
        return 0
    count = int(values[-1].decode("ascii"))
    if count < 0:
        raise ValueError(f"negative {REDRIVE_COUNT_HEADER} {count}")
    return count


def parse_entries(records, topic: str) -> list[DlqEntry]:
    """kafka-python records of the DLQ topic as entries, in (partition, offset) order; unreadable ones are logged
    and left out (a DLQ record tagwatch did not write)."""
    entries = []
    for record in records:
        try:
            letter = DeadLetter.model_validate_json(record.value)
        except (ValueError, TypeError) as error:
            log.warning("%s[%d]@%d is not a dead-letter envelope: %s", topic, record.partition, record.offset,
                        str(error)[:200])
            continue
        entries.append(DlqEntry(topic, record.partition, record.offset, letter, record.key))
    return sorted(entries, key=lambda e: (e.partition, e.offset))


def read_dead_letters(kafka, *, quiet_s: float = 2.0, timeout_s: float = 300.0) -> list[DlqEntry]:
    """Every envelope on ``kafka.topics.dead_letter``, read from offset 0 until quiet."""
    from tagwatch.moderation.readback import read_all

    topic = kafka.topics.dead_letter
    return parse_entries(read_all(kafka, topic, quiet_s=quiet_s, timeout_s=timeout_s), topic)


def valid_reason(reason: str) -> str:
    """``reason`` if it is a DeadLetterReason value; else a ConfigError listing the valid ones."""
    values = [r.value for r in DeadLetterReason]
    if reason not in values:
        raise ConfigError(f"unknown dead-letter reason {reason!r}", hint=f"pick one of: {', '.join(values)}")
    return reason


_RELATIVE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, *, now: datetime | None = None, option: str = "--since") -> datetime:
    """``30m``, ``2h``, ``7d`` (before now) or an ISO 8601 time (UTC when it has no offset)."""
    now = now or datetime.now(timezone.utc)
    match = _RELATIVE.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as error:
        raise ConfigError(f"{option} {text!r} is neither a duration nor a time",
                          hint=f"e.g. {option} 2h, {option} 7d or {option} 2026-12-01T04:00:00Z") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def select(entries: list[DlqEntry], *, reason: str | None = None, since: datetime | None = None) -> list[DlqEntry]:
    """Entries of ``reason`` dead-lettered (last seen) at or after ``since``."""
    return [e for e in entries
            if (reason is None or e.letter.reason == reason) and (since is None or e.letter.last_seen >= since)]


def count_by_reason(entries: list[DlqEntry]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.letter.reason] = counts.get(entry.letter.reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def find(entries: list[DlqEntry], wanted: str) -> list[DlqEntry]:
    """Entries at ``PARTITION:OFFSET``, at ``OFFSET`` (any partition) or of post ``wanted``."""
    match = re.fullmatch(r"(?:(\d+):)?(\d+)", wanted.strip())
    if match:
        partition = int(match.group(1)) if match.group(1) is not None else None
        offset = int(match.group(2))
        found = [e for e in entries if e.offset == offset and partition in (None, e.partition)]
        if found:
            return found
    return [e for e in entries if e.post_id == wanted]


def load_original(s3, entry: DlqEntry) -> Original:
    """The original record: embedded in the envelope, or the full envelope stored at ``original_ref``."""
    if not entry.by_reference:
        return entry.embedded_original()
    from botocore.exceptions import BotoCoreError, ClientError

    ref = entry.letter.original_ref
    bucket, _, key = ref.removeprefix("s3://").partition("/")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        stored = DeadLetter.model_validate_json(body)
    except (BotoCoreError, ClientError, ValueError) as error:
        raise TagwatchError(f"the original of dead letter {entry.address} at {ref} is unreadable: "
                            f"{type(error).__name__}", hint="check the ledger bucket; the envelope alone cannot be "
                                                            "re-driven") from error
    return DlqEntry(entry.topic, entry.partition, entry.offset, stored, entry.record_key).embedded_original()


def describe(entry: DlqEntry, original: Original | None = None) -> dict:
    """One envelope as JSON-ready data, the original decoded: headers as text, a JSON value parsed."""
    letter = entry.letter
    data = {"dlq": {"topic": entry.topic, "partition": entry.partition, "offset": entry.offset},
            "post_id": entry.post_id, **json.loads(letter.model_dump_json(exclude={
                "original_key_b64", "original_value_b64", "original_headers"}))}
    if original is not None:
        data["original_key"] = _text(original.key)
        data["original_headers"] = {name: _text(value) for name, value in original.headers}
        data["original_value"] = _json_or_text(original.value)
    return data


def _json_or_text(value: bytes | None):
    if value is None:
        return None
    try:
        return json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _text(value)


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)
