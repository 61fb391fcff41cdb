"""The review queue, kept in S3 so that nothing is lost when the app restarts or runs as several replicas.

Under ``review/`` in the ledger bucket:
  ``queue/<post_id>.json``  a review request, written once by the feeder before it commits the topic offset;
  ``leases/<post_id>.json`` who is reviewing it until when: created with If-None-Match, and an expired lease is
                            taken over with If-Match on its ETag, so of two reviewers exactly one gets the item;
  ``done/<post_id>.json``   written once when an outcome is recorded: the item leaves the queue;
  ``images/<image_id>/<post_id>`` an empty index entry per queued post, so that the review page can find the other
                            posts with the same image (``image_id``: the sha256 the image key carries);
  ``pdq/<pdq>/<post_id>``   an empty index entry per queued post whose request carries the stream's PDQ hash: one
                            listing gives every queued hash, so the page finds near-duplicates without reading items.

An item is *pending* while it has no done marker, *available* while it also has no live lease. A lease that
expires (the reviewer walked away, the app restarted mid-review) makes the item available again.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Collection, Literal

from pydantic import BaseModel, ConfigDict, Field

from tagwatch.clients import put_if_absent, put_if_match
from tagwatch.moderation.events import ReviewRequest

PREFIX = "review/"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def image_id(image_uri: str) -> str:
    """The identity of a post's image: the sha256 its key is named after (``images/<source>/<sha256>.jpg``, as
    tagwatch writes every post image), else the sha256 of the URI itself (same object, not same bytes)."""
    stem = image_uri.rsplit("/", 1)[-1].split(".", 1)[0]
    return stem if _SHA256.match(stem) else hashlib.sha256(image_uri.encode()).hexdigest()


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class QueueItem(_Record):
    schema_version: Literal[1] = 1
    request: ReviewRequest
    source: dict[str, str | int] = Field(default_factory=dict, description="topic, partition, offset")
    enqueued_at: datetime


class Lease(_Record):
    schema_version: Literal[1] = 1
    post_id: str
    reviewer: str
    token: str
    leased_at: datetime
    expires_at: datetime
    released_at: datetime | None = Field(default=None, description="given back before it ran out (skipped)")

    def live(self, at: datetime) -> bool:
        return at < self.expires_at


class DoneMarker(_Record):
    schema_version: Literal[1] = 1
    post_id: str
    outcome_id: str
    reviewer: str
    done_at: datetime


class LeaseLost(Exception):
    """The lease expired and another reviewer holds the item now, or the item was already reviewed."""


@dataclass(frozen=True)
class QueueStats:
    pending: int
    leased: int

    @property
    def available(self) -> int:
        return self.pending - self.leased


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ReviewQueue:
    def __init__(self, s3: Any, bucket: str, *, lease_s: float, clock: Callable[[], datetime] = utcnow,
                 on_lease_expired: Callable[[Lease], None] | None = None) -> None:
        self.s3, self.bucket, self.lease_s, self.clock = s3, bucket, lease_s, clock
        self.on_lease_expired = on_lease_expired or (lambda lease: None)

    # ---- keys and raw reads
    @staticmethod
    def key(kind: str, post_id: str) -> str:
        return f"{PREFIX}{kind}/{post_id}.json"

    def _ids(self, kind: str) -> set[str]:
        prefix = f"{PREFIX}{kind}/"
        ids = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            ids.update(obj["Key"][len(prefix):-len(".json")] for obj in page.get("Contents", []))
        return ids

    def _read(self, kind: str, post_id: str) -> tuple[bytes | None, str | None]:
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=self.key(kind, post_id))
        except self.s3.exceptions.NoSuchKey:
            return None, None
        return response["Body"].read(), response["ETag"]

    # ---- the feeder's side
    def enqueue(self, request: ReviewRequest, source: dict[str, str | int] | None = None) -> bool:
        """Add a request (once per post: a re-delivered request is a no-op). True if this call added it."""
        item = QueueItem(request=request, source=source or {}, enqueued_at=self.clock())
        # the index entry first: a crash between the two writes re-delivers the request and writes both again
        self.s3.put_object(Bucket=self.bucket, Key=self._image_key(image_id(request.image_uri), request.post_id),
                           Body=b"")
        if request.pdq:
            self.s3.put_object(Bucket=self.bucket, Key=f"{PREFIX}pdq/{request.pdq}/{request.post_id}", Body=b"")
        return put_if_absent(self.s3, self.bucket, self.key("queue", request.post_id), item.model_dump_json().encode())

    @staticmethod
    def _image_key(image: str, post_id: str) -> str:
        return f"{PREFIX}images/{image}/{post_id}"

    def same_image(self, image_uri: str) -> list[str]:
        """Post ids queued for review (now or ever) whose image has the same identity as ``image_uri``."""
        prefix = self._image_key(image_id(image_uri), "")
        ids = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            ids.extend(obj["Key"][len(prefix):] for obj in page.get("Contents", []))
        return sorted(ids)

    def near_images(self, pdq: str, *, max_distance: int) -> list[tuple[str, int]]:
        """(post_id, Hamming distance) of every post queued for review (now or ever) whose PDQ hash is within
        ``max_distance`` bits of ``pdq``, nearest first. A linear scan of the index listing (see the limitations)."""
        import numpy as np

        from tagwatch.moderation.pdq_index import hamming

        prefix = f"{PREFIX}pdq/"
        hashes, posts = [], []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                other, _, post_id = obj["Key"][len(prefix):].partition("/")
                hashes.append(bytes.fromhex(other))
                posts.append(post_id)
        if not posts:
            return []
        codes = np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(len(posts), 32)
        distances = hamming(codes, np.frombuffer(bytes.fromhex(pdq), dtype=np.uint8))  # the exact packed scan
        near = [(posts[i], int(distances[i])) for i in np.flatnonzero(distances <= max_distance)]
        return sorted(near, key=lambda pair: (pair[1], pair[0]))

    # ---- the reviewers' side
    def item(self, post_id: str) -> QueueItem | None:
        body, _ = self._read("queue", post_id)
        return QueueItem.model_validate_json(body) if body else None

    def lease_of(self, post_id: str) -> tuple[Lease | None, str | None]:
        body, etag = self._read("leases", post_id)
        return (Lease.model_validate_json(body), etag) if body else (None, None)

    def done(self, post_id: str) -> DoneMarker | None:
        body, _ = self._read("done", post_id)
        return DoneMarker.model_validate_json(body) if body else None

    def pending(self) -> list[QueueItem]:
        """Items not yet reviewed, oldest request first."""
        ids = sorted(self._ids("queue") - self._ids("done"))
        items = [item for item in (self.item(post_id) for post_id in ids) if item is not None]
        return sorted(items, key=lambda item: (item.request.requested_at, item.request.post_id))

    def stats(self) -> QueueStats:
        pending = self._ids("queue") - self._ids("done")
        at = self.clock()
        leased = 0
        for post_id in pending & self._ids("leases"):
            lease, _ = self.lease_of(post_id)
            leased += bool(lease and lease.live(at))
        return QueueStats(pending=len(pending), leased=leased)

    def claim(self, post_id: str, reviewer: str) -> Lease | None:
        """Lease one item to ``reviewer``: their own live lease is renewed, an expired one is taken over; None when
        another reviewer holds it or it was reviewed already."""
        if self.done(post_id) is not None or self.item(post_id) is None:
            return None
        at = self.clock()
        fresh = Lease(post_id=post_id, reviewer=reviewer, token=secrets.token_hex(16), leased_at=at,
                      expires_at=at + timedelta(seconds=self.lease_s))
        current, etag = self.lease_of(post_id)
        if current is None:
            return fresh if put_if_absent(self.s3, self.bucket, self.key("leases", post_id),
                                          fresh.model_dump_json().encode()) else None
        if current.live(at) and current.reviewer != reviewer:
            return None
        if current.reviewer == reviewer and current.released_at is None:
            # the same reviewer again (a reload, a second tab, back after the lease ran out with nobody taking it):
            # keep the token, so the form already on their screen still records, and extend the time
            fresh = current.model_copy(update={"expires_at": at + timedelta(seconds=self.lease_s)})
        if not put_if_match(self.s3, self.bucket, self.key("leases", post_id), fresh.model_dump_json().encode(), etag):
            return None
        if not current.live(at) and current.released_at is None:
            self.on_lease_expired(current)
        return fresh

    def next_for(self, reviewer: str, *, skip: Collection[str] = ()) -> tuple[QueueItem, Lease] | None:
        """The oldest item ``reviewer`` may review now (available, or already leased to them), leased to them;
        ``skip``: post ids not to hand out (the one they just skipped)."""
        at = self.clock()
        for item in self.pending():
            if item.request.post_id in skip:
                continue
            lease, _ = self.lease_of(item.request.post_id)
            if lease is not None and lease.live(at) and lease.reviewer != reviewer:
                continue
            granted = self.claim(item.request.post_id, reviewer)
            if granted is not None:
                return item, granted
        return None

    def check(self, post_id: str, token: str) -> Lease:
        """The lease ``token`` names, if it still holds the item (an expired lease nobody took over still holds)."""
        if self.done(post_id) is not None:
            raise LeaseLost(f"post {post_id} was reviewed already")
        lease, _ = self.lease_of(post_id)
        if lease is None or not secrets.compare_digest(lease.token, token):
            raise LeaseLost(f"the lease on post {post_id} expired and another reviewer took it")
        return lease

    def renew(self, post_id: str, token: str, reviewer: str) -> Lease:
        """Extend the lease ``token`` names by a full ``lease_s`` with If-Match on the lease read, so nobody can take
        the item over while an outcome is being recorded (an expired lease is taken over only with If-Match too:
        of the two writes, exactly one succeeds). Raises LeaseLost when the item is not this reviewer's."""
        if self.done(post_id) is not None:
            raise LeaseLost(f"post {post_id} was reviewed already")
        lease, etag = self.lease_of(post_id)  # one read: the token checked is the version the write is based on
        if lease is None or etag is None or not secrets.compare_digest(lease.token, token):
            raise LeaseLost(f"the lease on post {post_id} expired and another reviewer took it")
        if lease.reviewer != reviewer:
            raise LeaseLost(f"post {post_id} is leased to another reviewer")
        renewed = lease.model_copy(update={"expires_at": self.clock() + timedelta(seconds=self.lease_s)})
        if not put_if_match(self.s3, self.bucket, self.key("leases", post_id), renewed.model_dump_json().encode(),
                            etag):
            raise LeaseLost(f"the lease on post {post_id} changed hands while it was being renewed")
        return renewed

    def release(self, post_id: str, token: str) -> bool:
        """Give an item back before the lease runs out (the reviewer skipped it). False if the lease was not
        ``token``'s any more (nothing changed)."""
        lease, etag = self.lease_of(post_id)
        if lease is None or not secrets.compare_digest(lease.token, token):
            return False
        # expire it in place (If-Match) rather than delete: a delete cannot be conditional on S3
        at = self.clock()
        expired = lease.model_copy(update={"expires_at": at, "released_at": at})
        return put_if_match(self.s3, self.bucket, self.key("leases", post_id), expired.model_dump_json().encode(),
                            etag)

    def complete(self, post_id: str, *, outcome_id: str, reviewer: str) -> bool:
        """Mark the item reviewed (once) and drop its lease. False if it was marked by another outcome first."""
        marker = DoneMarker(post_id=post_id, outcome_id=outcome_id, reviewer=reviewer, done_at=self.clock())
        wrote = put_if_absent(self.s3, self.bucket, self.key("done", post_id), marker.model_dump_json().encode())
        self.s3.delete_object(Bucket=self.bucket, Key=self.key("leases", post_id))
        if not wrote:
            existing = self.done(post_id)
            return existing is not None and existing.outcome_id == outcome_id
        return True
