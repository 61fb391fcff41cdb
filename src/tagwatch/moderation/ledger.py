"""The decision ledger: one S3 object per post_id, written once (If-None-Match: *), the audit record; and each
post's history after it (review outcomes, later appeals and re-decisions), one object per entry, also written once.

A re-processed post (after a crash between produce and commit) gets the same deterministic decision id; its
second write is refused by S3 and the first record stands. "Exactly one ledger record per post" is therefore a
property of the store, not of luck.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

from tagwatch.clients import put_if_absent
from tagwatch.errors import RetryableError
from tagwatch.moderation.events import Decision, ReviewOutcome

HISTORY_PREFIX = "history/"
HISTORY_KINDS = ("review", "appeal", "redecision")


class Ledger:
    def __init__(self, s3, bucket: str, prefix: str = "decisions/") -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, prefix

    def key(self, post_id: str) -> str:
        return f"{self.prefix}{post_id}.json"

    def record(self, decision: Decision, *, body: bytes | None = None) -> bool:
        """Write the decision unless the post already has one. True if this call wrote it. ``body``: the
        decision's JSON when the caller already has it (the event's payload)."""
        from botocore.exceptions import BotoCoreError, ClientError

        body = body if body is not None else decision.model_dump_json().encode()
        try:
            return put_if_absent(self.s3, self.bucket, self.key(decision.post_id), body)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            raise RetryableError(f"ledger write for {decision.post_id} failed: {code}") from error
        except BotoCoreError as error:
            raise RetryableError(f"ledger unavailable: {type(error).__name__}") from error

    def get(self, post_id: str) -> Decision | None:
        from botocore.exceptions import ClientError

        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.key(post_id))["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return Decision.model_validate_json(body)

    def post_ids(self) -> list[str]:
        return [post_id for post_id, _ in self.listing()]

    def listing(self):
        """(post_id, when its record was written: the object's LastModified) for every record."""
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix) : -len(".json")], obj["LastModified"]


class LedgerHistory:
    """What happened to a post after its first decision: ``history/<post_id>/<kind>-<entry_id>.json``, each entry
    written once (a retried write of the same entry is a no-op), never rewritten, never deleted by tagwatch. The
    first decision stays where the stream wrote it (``Ledger``)."""

    def __init__(self, s3, bucket: str, prefix: str = HISTORY_PREFIX) -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, prefix

    def key(self, post_id: str, kind: str, entry_id: str) -> str:
        if kind not in HISTORY_KINDS:
            raise ValueError(f"unknown history kind {kind!r}; one of {', '.join(HISTORY_KINDS)}")
        return f"{self.prefix}{post_id}/{kind}-{entry_id}.json"

    def append_review(self, outcome: ReviewOutcome) -> bool:
        """Append a review outcome to its post's history; True if this call wrote it (False: already there)."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key(outcome.post_id, "review", outcome.outcome_id)
        try:
            return put_if_absent(self.s3, self.bucket, key, outcome.model_dump_json().encode())
        except (ClientError, BotoCoreError) as error:
            raise RetryableError(f"ledger history write for {outcome.post_id} failed: {type(error).__name__}") from error

    def entries(self, post_id: str) -> list[tuple[str, dict]]:
        """(kind, entry as JSON) for one post, oldest first (by the entry's own time)."""
        found = []
        for key in self._keys(f"{self.prefix}{post_id}/"):
            kind = key.rsplit("/", 1)[1].split("-", 1)[0]
            found.append((kind, json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())))
        return sorted(found, key=lambda entry: _entry_time(entry[1]))

    def review_outcomes(self) -> Iterator[ReviewOutcome]:
        """Every review outcome in the ledger (all posts), in key order."""
        for key in self._keys(self.prefix):
            if key.rsplit("/", 1)[1].startswith("review-"):
                yield ReviewOutcome.model_validate_json(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def _keys(self, prefix: str) -> Iterator[str]:
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"]


def latest_outcomes(outcomes) -> dict[str, ReviewOutcome]:
    """post_id -> the latest review outcome of that post (a post reviewed twice, e.g. on appeal, counts once)."""
    latest: dict[str, ReviewOutcome] = {}
    for outcome in outcomes:
        if outcome.post_id not in latest or outcome.reviewed_at > latest[outcome.post_id].reviewed_at:
            latest[outcome.post_id] = outcome
    return latest


def _entry_time(entry: dict) -> str:
    for field in ("reviewed_at", "decided_at", "at"):
        if field in entry:
            return str(datetime.fromisoformat(str(entry[field]).replace("Z", "+00:00")).timestamp()).zfill(20)
    return ""
