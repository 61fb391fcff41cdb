"""Hash banks: PDQ hashes of known-bad images, matched before the model (Meta's Hasher-Matcher-Actioner idea).

A bank is a series of versions in S3 (bank_store.py: ``banks/<name>/versions/<N>/``, an alias names the current
one; a bank from before versions, ``banks/<name>.json``, reads as version 0); entries carry the PDQ hash
(64 hex), why it is banned, when, its harm ``category`` (``terrorism`` for GIFCT-style TVEC hashes; see
BANK_CATEGORIES) and the ``action`` a match takes (remove or review). A post whose image lies within
``threshold`` bits (PDQ's recommended 31) of an entry takes the entry's action (a remove skips the model), unless
the policy puts its category in monitor mode; the decision's reason names bank, entry and category.
Banks are filled one image at a time (``tagwatch bank add``) or from an exchange file (bank_import.py). A post
image whose own PDQ quality is under MIN_QUALITY is not matched at all (``post_quality_ok``): flat images are
near each other whatever they show, as on the bank side, where such entries are refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class BankPart:
    """One segment of a bank version ready to match: its PdqIndex (row i = entries[i]) and entries."""

    index: PdqIndex
    entries: Sequence[BankEntry]
    version: int | None = None  # the bank version that wrote the segment (bank_store.py)


@dataclass
class IndexedBank:
    """One bank version ready to match: its segments in order (a full snapshot, then the deltas appended on top of
    it; bank_store.py), entries parsed on first use. Row r of the bank is row r - offset of the segment holding it."""

    name: str
    parts: list[BankPart]
    version: int | None = None  # the bank version (bank_store.py); None for a bank built in memory

    @classmethod
    def of(cls, bank: HashBank, radius: int = DEFAULT_THRESHOLD, version: int | None = None) -> IndexedBank:
        return cls.single(bank.name, PdqIndex.from_hex(range(len(bank.entries)), [e.pdq for e in bank.entries],
                                                       radius), bank.entries, version)

    @classmethod
    def single(cls, name: str, index: PdqIndex, entries: Sequence[BankEntry], version: int | None = None):
        return cls(name, [BankPart(index, entries, version)], version)

    @property
    def entries(self) -> Sequence[BankEntry]:
        return ChainedEntries([part.entries for part in self.parts])

    def nearest(self, pdq: str, threshold: int) -> tuple[int, int] | None:
        """(bank row, distance) of the nearest entry within ``threshold``; ties to the earlier row (base rows
        before delta rows), as one index over every row would answer."""
        best, offset = None, 0
        for part in self.parts:
            found = part.index.within(pdq, threshold)
            if found and (best is None or found[0][1] < best[1]):  # a later segment wins only when nearer
                best = (offset + found[0][0], found[0][1])
            offset += len(part.entries)
        return best


class ChainedEntries(Sequence):
    """Several segments' entries read as one sequence (no copy)."""

    def __init__(self, chunks: list[Sequence[BankEntry]]) -> None:
        self.chunks = chunks
        self.starts = np.cumsum([0] + [len(c) for c in chunks])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        if row < 0:
            row += len(self)
        if not 0 <= row < len(self):
            raise IndexError(row)
        chunk = int(np.searchsorted(self.starts, row, side="right")) - 1
        return self.chunks[chunk][row - int(self.starts[chunk])]


class LazyEntries(Sequence):
    """Bank entries kept as their JSON lines; a line is parsed only when a post matches it (a 1M-entry bank
    would take seconds to parse whole, and a consumer reads a handful of them)."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines, self._parsed = lines, {}

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        if row not in self._parsed:
            self._parsed[row] = BankEntry.model_validate_json(self.lines[row])
        return self._parsed[row]


class BankMatcher:
    """Every bank's PdqIndex (exact multi-index hashing, pdq_index.py): the nearest entry within threshold."""

    def __init__(self, banks: Sequence[HashBank | IndexedBank], threshold: int = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self.banks = [b if isinstance(b, IndexedBank) else IndexedBank.of(b, threshold) for b in banks]

    @property
    def version(self) -> str:
        """How banks were matched, for the decision's bank signal: ``pdq<=31`` and each bank's version."""
        held = ",".join(f"{b.name}@{b.version}" for b in self.banks if b.version is not None)
        return f"pdq<={self.threshold}" + (f" {held}" if held else "")

    def match(self, pdq: str) -> tuple[str, BankEntry, int] | None:
        # nearest first, ties to the earlier bank, then the earlier entry (what the linear argmin did)
        best = None
        for order, bank in enumerate(self.banks):
            found = bank.nearest(pdq, self.threshold)
            if found and (best is None or (found[1], order) < (best[2], best[3])):
                best = (bank, found[0], found[1], order)
        if best is None:
            return None
        bank, row, distance, _ = best
        return bank.name, bank.entries[row], distance


def entry_from_image(image: Image.Image, reason: str, *, category: str = "other", action: str = "remove",
                     source: str = "") -> BankEntry:
    """A new entry for ``image``; ConfigError if its PDQ quality is under MIN_QUALITY (too flat to match)."""
    pdq, quality = pdq_hex(image)
    if quality < MIN_QUALITY:
        raise ConfigError(f"image PDQ quality {quality} < {MIN_QUALITY}: too flat to match reliably",
                          hint="ban a more detailed version of the image")
    return BankEntry(entry_id=new_entry_id(), pdq=pdq, reason=reason, added_at=datetime.now(timezone.utc),
                     category=category, action=action, source=source, quality=quality)


def post_quality_ok(quality: int | None) -> bool:
    """May a post image of this PDQ quality be matched against banks? (None: not measured, as before quality
    was checked on posts.)"""
    return quality is None or quality >= MIN_QUALITY


def new_entry_id() -> str:
    return uuid.uuid4().hex[:12]
