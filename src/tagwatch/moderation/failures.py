"""Every failure the moderation stream meets is retryable or permanent, and this module alone says which.

- **permanent** (``PoisonInputError``): the record can never be decided as it is. It goes to the dead-letter topic
  with a typed reason and its offset is committed. An S3 4xx other than throttling is permanent (404 missing,
  400 a key S3 refuses, 403 on one object while the bucket itself is readable), and so is a record whose own
  step keeps failing ``max_attempts`` times in a row (``retries_exhausted``, with the last error).
- **retryable** (``RetryableError``): the world is having trouble (S3, Triton or the broker down, throttling,
  timeouts). The consumer pauses, backs off and retries the same records, never committing past them. While
  that lasts longer than the stuck bound, /healthz says which partition is stuck.

S3 keys are checked before any request: a key S3 would normalise or refuse (``..``, empty segments) is permanent
without asking S3 at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from tagwatch.errors import PoisonInputError, RetryableError
from tagwatch.moderation.deadletter import DeadLetterReason as R

# S3 error codes that mean "slow down / try later" even though some arrive as 4xx (or as 503 SlowDown).
THROTTLING_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                              "TooManyRequests", "RequestTimeout", "RequestTimeTooSkewed", "ServiceUnavailable",
                              "InternalError", "OperationAborted"})
MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
# Codes that may be the whole store's fault (credentials, clock): permanent only if the bucket itself answers.
ACCESS_CODES = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "401",
                          "ExpiredToken", "InvalidToken"})


TagwatchErrorLike = PoisonInputError | RetryableError


def validate_s3_key(key: str) -> None:
    """Refuse keys that S3 (or a proxy before it) would normalise, reject or resolve elsewhere."""
    if not key:
        raise PoisonInputError(R.BAD_IMAGE_URI, "image_uri has no object key")
    if len(key.encode()) > 1024:
        raise PoisonInputError(R.BAD_IMAGE_URI, f"object key of {len(key.encode())} bytes (S3's limit is 1024)")
    segments = key.split("/")
    if any(s in (".", "..") for s in segments):
        raise PoisonInputError(R.BAD_IMAGE_URI, "object key has a '.' or '..' segment")
    if any(s == "" for s in segments):
        raise PoisonInputError(R.BAD_IMAGE_URI, "object key has an empty segment ('//', or a leading/trailing '/')")
    if any(ord(c) < 0x20 or c == "\x7f" for c in key):
        raise PoisonInputError(R.BAD_IMAGE_URI, "object key has a control character")


def classify_s3_error(error: Exception, what: str, *, bucket_readable=None) -> TagwatchErrorLike:
    """The one place an S3 failure becomes permanent or retryable. ``bucket_readable``: a callable asked only
    for access errors (is the store fine and only this object refused?)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        code = str(info.get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        label = f"HTTP {status} {code}".strip() if status else code or type(error).__name__
        if code in MISSING_CODES or status == 404:
            return PoisonInputError(R.IMAGE_MISSING, f"{what}: does not exist ({label})")
        if code in THROTTLING_CODES or status in (408, 429) or status >= 500 or not status:
            return RetryableError(f"{what} failed: {label} (S3 trouble; retrying)")
        if code in ACCESS_CODES or status in (401, 403):
            if bucket_readable is not None and bucket_readable():
                return PoisonInputError(R.S3_REJECTED, f"{what}: refused by S3 ({label}) while the bucket is readable")
            return RetryableError(f"{what} failed: {label} (check the S3 credentials; retrying)")
        return PoisonInputError(R.S3_REJECTED, f"{what}: refused by S3 ({label})")
    if isinstance(error, BotoCoreError):
        return RetryableError(f"{what}: S3 unavailable ({type(error).__name__})")
    return RetryableError(f"{what}: {type(error).__name__}")


@dataclass
class _Attempts:
    count: int = 0
    first_seen: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    last_error: str = ""


class RecordAttempts:
    """How often each record's own step failed in a row; past ``max_attempts`` it becomes poison.

    Only failures that belong to one record count (its image fetch, its decode); a model server or broker
    outage fails every record alike and is waited out instead (it would otherwise dead-letter the stream).
    """

    def __init__(self, max_attempts: int) -> None:
        self.max_attempts = max_attempts
        self._by_record: dict[tuple[str, int, int], _Attempts] = {}

    @staticmethod
    def key(record) -> tuple[str, int, int]:
        return record.topic, record.partition, record.offset

    def failed(self, record, error: RetryableError) -> PoisonInputError | None:
        """Count one failure; the poison to dead-letter once the record has used up its attempts."""
        entry = self._by_record.setdefault(self.key(record), _Attempts())
        entry.count += 1
        entry.last_error = error.message
        if entry.count < self.max_attempts:
            return None
        return PoisonInputError(R.RETRIES_EXHAUSTED, f"failed {entry.count} times in a row; last: {entry.last_error}",
                                attempts=entry.count, first_seen=entry.first_seen)

    def settled(self, records) -> None:
        """Forget records that were decided or dead-lettered (or are no longer ours)."""
        for record in records:
            self._by_record.pop(self.key(record), None)

    def __len__(self) -> int:
        return len(self._by_record)
