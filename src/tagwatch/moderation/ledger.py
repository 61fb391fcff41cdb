"""The decision ledger: one S3 object per post_id, written once (If-None-Match: *), the audit record.

A re-processed post (after a crash between produce and commit) gets the same deterministic decision id; its
second write is refused by S3 and the first record stands. "Exactly one ledger record per post" is therefore a
property of the store, not of luck.
"""

from __future__ import annotations

from tagwatch.clients import put_if_absent
from tagwatch.errors import RetryableError
from tagwatch.moderation.events import Decision


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
