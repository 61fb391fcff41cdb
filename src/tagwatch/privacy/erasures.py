"""The erasure list: post ids that must never be trained on again.

One object per erased post under ``erasures/`` in the posts bucket (``erasures/<post_id>.json``: when, why),
written with ``If-None-Match: *``: appending never rewrites a shared object, so concurrent deletions cannot lose
each other's entries, and erasing a post twice keeps its first entry. Every dataset build reads the whole list
and leaves those posts out; ingest does not recreate them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PREFIX = "erasures/"


class Erasure(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    post_id: str
    erased_at: datetime
    reason: str = Field(default="", description="why (e.g. 'user request'); free text, no personal data")


def erasure_key(post_id: str) -> str:
    return f"{PREFIX}{post_id}.json"


def record_erasure(client: Any, bucket: str, post_id: str, *, reason: str = "",
                   now: datetime | None = None) -> bool:
    """Put ``post_id`` on the list. True if this call added it; False if it was there already."""
    from tagwatch.clients import put_if_absent

    entry = Erasure(post_id=post_id, erased_at=now or datetime.now(timezone.utc), reason=reason)
    return put_if_absent(client, bucket, erasure_key(post_id), entry.model_dump_json().encode())


def erased_post_ids(client: Any, bucket: str) -> frozenset[str]:
    """Every post id on the list (one paginated LIST; the ids are the key names)."""
    from tagwatch.data.posts import list_keys

    return frozenset(key[len(PREFIX):-len(".json")] for key in list_keys(client, bucket, PREFIX)
                     if key.endswith(".json"))


def read_erasure(client: Any, bucket: str, post_id: str) -> Erasure | None:
    try:
        body = client.get_object(Bucket=bucket, Key=erasure_key(post_id))["Body"].read()
    except client.exceptions.NoSuchKey:
        return None
    return Erasure.model_validate_json(body)
