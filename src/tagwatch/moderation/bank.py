"""Hash banks: PDQ hashes of known-bad images, matched before the model (Meta's Hasher-Matcher-Actioner idea).

A bank is one JSON object in S3 (``s3://<buckets.models>/banks/<name>.json``); entries carry the PDQ hash
(64 hex), why it is banned, when, its harm ``category`` (``terrorism`` for GIFCT-style TVEC hashes; see
BANK_CATEGORIES) and the ``action`` a match takes (remove or review). A post whose image lies within
``threshold`` bits (PDQ's recommended 31) of an entry takes the entry's action (a remove skips the model), unless
the policy puts its category in monitor mode; the decision's reason names bank, entry and category.
Banks are filled one image at a time (``tagwatch bank add``) or from an exchange file (bank_import.py).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from tagwatch.errors import ConfigError
from tagwatch.moderation.pdq_index import PdqIndex

DEFAULT_THRESHOLD = 31
MIN_QUALITY = 50
# The categories docs/policy.md documents (GIFCT's hash-sharing labels collapse to terrorism here); any other
# lower-case slug is accepted as free text, so a bank for a new harm needs no code change.
BANK_CATEGORIES = ("terrorism", "violent_extremism", "graphic_violence", "nudity", "hate", "spam", "other")
CATEGORY_PATTERN = r"^[a-z][a-z0-9_]{1,39}$"


class BankEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    entry_id: str
    pdq: str = Field(pattern=r"^[0-9a-f]{64}$")
    reason: str
    added_at: datetime
    # added later (schema still v1): an entry without them reads as the remove-on-match it always was
    category: str = Field(default="other", pattern=CATEGORY_PATTERN)
    action: Literal["remove", "review"] = "remove"
    source: str = Field(default="", description="where the hash came from (a hash-sharing programme, a case id)")
    quality: int | None = Field(default=None, ge=0, le=100, description="PDQ quality of the hashed image")


class HashBank(BaseModel):
    name: str
    entries: list[BankEntry] = Field(default_factory=list)


# PDQ hashes a 64x64 downsample of the image; hashing a box-reduced copy of at most ~2x that side costs a
# fraction of a full-size hash (3 ms vs 13-26 ms at 256 px here) and moved hashes by 6 bits on average (12 at
# most) on the stream benchmark's images, well inside the 31-bit match threshold. Bank entries and posts are
# hashed the same way.
PDQ_MAX_SIDE = 128


def pdq_hex(image: Image.Image) -> tuple[str, int]:
    """(64-hex PDQ hash, quality 0-100) of an image (box-reduced to about PDQ_MAX_SIDE px first)."""
    import pdqhash

    rgb = image if image.mode == "RGB" else image.convert("RGB")
    factor = max(rgb.size) // PDQ_MAX_SIDE
    if factor >= 2:
        rgb = rgb.reduce(factor)
    bits, quality = pdqhash.compute(np.asarray(rgb))
    packed = np.packbits(bits.astype(np.uint8))
    return packed.tobytes().hex(), int(quality)


class BankMatcher:
    """All entries in one PdqIndex (exact multi-index hashing, pdq_index.py): the nearest entry within threshold."""

    def __init__(self, banks: list[HashBank], threshold: int = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self.labels = [(bank.name, entry) for bank in banks for entry in bank.entries]
        self.index = PdqIndex.from_hex(range(len(self.labels)), [e.pdq for _, e in self.labels], radius=threshold)

    def match(self, pdq: str) -> tuple[str, BankEntry, int] | None:
        # nearest first, ties to the earlier entry (what the linear argmin did)
        found = self.index.within(pdq, self.threshold)
        if not found:
            return None
        position, distance = found[0]
        name, entry = self.labels[position]
        return name, entry, distance


class BankStore:
    def __init__(self, s3, bucket: str, prefix: str = "banks/") -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, prefix

    def load(self, name: str) -> HashBank:
        from botocore.exceptions import ClientError

        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=f"{self.prefix}{name}.json")["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return HashBank(name=name)
            raise
        return HashBank.model_validate_json(body)

    def names(self) -> list[str]:
        response = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix)
        return sorted(o["Key"][len(self.prefix) : -len(".json")] for o in response.get("Contents", []))

    def load_all(self) -> list[HashBank]:
        return [self.load(name) for name in self.names()]

    def add(self, name: str, image: Image.Image, reason: str, *, category: str = "other",
            action: str = "remove", source: str = "") -> BankEntry:
        pdq, quality = pdq_hex(image)
        if quality < MIN_QUALITY:
            raise ConfigError(f"image PDQ quality {quality} < {MIN_QUALITY}: too flat to match reliably",
                              hint="ban a more detailed version of the image")
        entry = BankEntry(entry_id=new_entry_id(), pdq=pdq, reason=reason, added_at=datetime.now(timezone.utc),
                          category=category, action=action, source=source, quality=quality)
        self.extend(name, [entry])
        return entry

    def extend(self, name: str, entries: list[BankEntry]) -> HashBank:
        """Append ``entries`` to bank ``name`` (created if absent), skipping hashes it already holds."""
        bank = self.load(name)
        held = {e.pdq for e in bank.entries}
        bank.entries.extend(e for e in entries if e.pdq not in held)
        self.s3.put_object(Bucket=self.bucket, Key=f"{self.prefix}{name}.json",
                           Body=json.dumps(bank.model_dump(mode="json")).encode(), ContentType="application/json")
        return bank


def new_entry_id() -> str:
    return uuid.uuid4().hex[:12]
