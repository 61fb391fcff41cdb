"""Re-drive claims: one S3 object per dead letter, written once (If-None-Match: *), in the ledger bucket.

A claim is keyed by the dead letter's address on the DLQ topic (``redrives/<topic>/<partition>/<offset>.json``).
Whoever writes it first re-drives that dead letter; every other run is refused by the store (412/409) and skips
it, so two concurrent re-drives never publish the same dead letter twice. After publishing, the claim is
rewritten with the new record's address. A claim never marked published that is older than the stale limit (its
run died between claiming and publishing) may be taken over by one later run: a PUT conditional on the stale
claim's ETag (``take_over``), so of two runs that both find it stale exactly one wins. A small marker under ``redrives/by-post/<post_id>/`` lets the claims of
one post be found without reading every claim.
"""

from __future__ import annotations

import getpass
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from tagwatch.errors import RetryableError

PREFIX = "redrives/"
BY_POST = f"{PREFIX}by-post/"


class RecordAddress(BaseModel):
    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    offset: int


class RedriveClaim(BaseModel):
    """Who re-drove which dead letter, when, and where the re-published record went."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    dead_letter: RecordAddress
    original: RecordAddress  # the record that dead-lettered
    post_id: str | None
    reason: str
    redrive_count: int  # the value of the re-published record's tagwatch-redrive-count header
    claimed_by: str
    claimed_at: datetime
    run_id: str
    published: RecordAddress | None = None
    published_at: datetime | None = None
    took_over: str | None = None  # "<claimed_by> at <claimed_at>" of the stale claim this one replaced

    def is_stale(self, *, at: datetime, after_s: float) -> bool:
        """Claimed, never marked published, and older than ``after_s``: its run died before publishing."""
        return self.published is None and (at - self.claimed_at).total_seconds() > after_s


def who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}:{os.getpid()}"


def now() -> datetime:
    return datetime.now(timezone.utc)


class ClaimStore:
    def __init__(self, s3, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    @staticmethod
    def key(dead_letter: RecordAddress) -> str:
        return f"{PREFIX}{quote(dead_letter.topic, safe='.-_')}/{dead_letter.partition}/{dead_letter.offset}.json"

    @staticmethod
    def marker_key(post_id: str, dead_letter: RecordAddress) -> str:
        return f"{BY_POST}{quote(post_id, safe='.-_')}/{ClaimStore.key(dead_letter)[len(PREFIX):]}"

    def claim(self, claim: RedriveClaim) -> bool:
        """Write the claim unless the dead letter already has one. True if this call won it.

        The post's marker goes first: a marker whose claim is missing is ignored by ``for_post``, a claim without
        its marker would be invisible there. Every run writes the same marker for the same dead letter."""
        from botocore.exceptions import BotoCoreError, ClientError

        if claim.post_id is not None:
            key = self.marker_key(claim.post_id, claim.dead_letter)
            try:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"")
            except (BotoCoreError, ClientError) as error:
                raise RetryableError(f"re-drive marker s3://{self.bucket}/{key} not written: "
                                     f"{type(error).__name__}") from error
        return self._put(self.key(claim.dead_letter), claim, if_none_match=True)

    def take_over(self, stale: RedriveClaim, claim: RedriveClaim) -> bool:
        """Replace ``stale`` (as read before) by ``claim`` if the stored object is still exactly ``stale``: a PUT
        with If-Match of its ETag. True if this call won; False if another run took it over (or finished it)."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key(stale.dead_letter)
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
        except self.s3.exceptions.NoSuchKey:
            return self.claim(claim)  # released meanwhile: an ordinary claim
        except (BotoCoreError, ClientError) as error:
            raise RetryableError(f"re-drive claim s3://{self.bucket}/{key} unreadable: {type(error).__name__}") \
                from error
        if RedriveClaim.model_validate_json(response["Body"].read()) != stale:
            return False
        return self._put(key, claim, if_match=response["ETag"])

    def mark_published(self, claim: RedriveClaim, published: RecordAddress) -> RedriveClaim:
        done = claim.model_copy(update={"published": published, "published_at": now()})
        self._put(self.key(claim.dead_letter), done)
        return done

    def release(self, claim: RedriveClaim) -> None:
        """Drop a claim whose publish failed, so a later run may re-drive the dead letter."""
        self.s3.delete_object(Bucket=self.bucket, Key=self.key(claim.dead_letter))
        if claim.post_id is not None:
            self.s3.delete_object(Bucket=self.bucket, Key=self.marker_key(claim.post_id, claim.dead_letter))

    def for_topic(self, topic: str, *, workers: int = 16) -> dict[tuple[int, int], RedriveClaim]:
        """(partition, offset) -> claim, for every dead letter of ``topic`` that was claimed."""
        claims = self._read_all(self._keys(f"{PREFIX}{quote(topic, safe='.-_')}/"), workers)
        return {(c.dead_letter.partition, c.dead_letter.offset): c for c in claims}

    def for_post(self, post_id: str, *, workers: int = 16) -> list[RedriveClaim]:
        """Every claim of ``post_id``'s dead letters, oldest first."""
        prefix = f"{BY_POST}{quote(post_id, safe='.-_')}/"
        keys = [PREFIX + key[len(prefix):] for key in self._keys(prefix)]
        return sorted(self._read_all(keys, workers), key=lambda c: c.claimed_at)

    def _keys(self, prefix: str) -> list[str]:
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def _read_all(self, keys: list[str], workers: int) -> list[RedriveClaim]:
        def get(key: str) -> RedriveClaim | None:
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except self.s3.exceptions.NoSuchKey:
                return None  # released between the listing and the read
            return RedriveClaim.model_validate_json(body)

        with ThreadPoolExecutor(max(1, min(workers, len(keys)))) as pool:
            return [c for c in pool.map(get, keys) if c is not None]

    def _put(self, key: str, claim: RedriveClaim, *, if_none_match: bool = False, if_match: str | None = None) -> bool:
        """PUT; False if an If-None-Match / If-Match condition did not hold (412 / 409, as SeaweedFS answers)."""
        from botocore.exceptions import BotoCoreError, ClientError

        from tagwatch.clients import condition_failed

        conditions = {"IfNoneMatch": "*"} if if_none_match else {"IfMatch": if_match} if if_match else {}
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=claim.model_dump_json().encode(),
                               ContentType="application/json", **conditions)
        except ClientError as error:
            if conditions and condition_failed(error):
                return False
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise RetryableError(f"re-drive claim s3://{self.bucket}/{key} not written: {code or status}") from error
        except BotoCoreError as error:
            raise RetryableError(f"re-drive claims unavailable: {type(error).__name__}") from error
        return True
