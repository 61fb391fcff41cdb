"""Bank versions as segments: a full snapshot plus the deltas appended on top of it, compacted now and then.

A version's metadata.json lists its ``segments`` in order: the full snapshot it builds on, then each delta (the
entries one later add brought, with their own entries.jsonl and PdqIndex files, written under the delta's own
version). An add of k entries writes only a k-row delta and reuses the segments before it by reference: they are
immutable, and each is pinned by the sha256 of the metadata.json of the version that wrote it, whose digests check
its files. ``plan_delta`` says when a write is a full snapshot instead (compaction): no snapshot to build on, a
chain longer than ``max_segments``, or deltas holding more than ``delta_fraction`` of the snapshot's rows.
A version without ``segments`` (written before them) reads as one full segment: its own files.

Consumers keep loaded segments in a SegmentCache keyed by (bank, segment version), so an alias move that only
appended a delta loads the delta alone.
"""

from __future__ import annotations

import io
import tempfile
import threading
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tagwatch.errors import IntegrityError
from tagwatch.moderation.bank import BankPart, LazyEntries
from tagwatch.moderation.pdq_index import PdqIndex

ENTRIES_FILE = "entries.jsonl"
CODES_FILE = "index/codes.npy"
MAX_SEGMENTS = 8
DELTA_FRACTION = 0.1


class BankSegment(BaseModel):
    """One segment of a bank version: the rows version ``version`` wrote (its own files)."""

    model_config = ConfigDict(frozen=True)

    version: int
    rows: int
    metadata_sha256: str | None = Field(
        default=None, description="sha256 of the metadata.json of the version that wrote the segment (None: the "
                                  "version itself, which the alias pins)")


def segments_of(metadata, metadata_sha256: str | None = None) -> list[BankSegment]:
    """A version's segments, each pinned by its writer's metadata digest (``metadata_sha256``: this version's,
    for its own segment). A version from before segments is one full segment."""
    own = list(metadata.segments) or [BankSegment(version=metadata.number, rows=metadata.entries)]
    return [s if s.metadata_sha256 is not None or s.version != metadata.number
            else s.model_copy(update={"metadata_sha256": metadata_sha256}) for s in own]


def plan_delta(segments: list[BankSegment], added: int, *, max_segments: int = MAX_SEGMENTS,
               delta_fraction: float = DELTA_FRACTION) -> bool:
    """Is adding ``added`` rows on top of ``segments`` a delta (True) or a full snapshot (compaction, False)?"""
    if not segments or not segments[0].rows:
        return False
    delta_rows = sum(s.rows for s in segments[1:]) + added
    return len(segments) + 1 <= max_segments and delta_rows <= delta_fraction * segments[0].rows


def segment_metadata(bank, segment: BankSegment):
    """The metadata of the version that wrote ``segment``, checked against the digest the segment pins."""
    metadata, digest = bank.metadata(segment.version)
    if segment.metadata_sha256 is not None and digest != segment.metadata_sha256:
        raise IntegrityError(f"bank {bank.model_name} version {segment.version}: metadata.json changed after a "
                             "later version built on it", hint="roll back to a version that does not use it")
    return metadata


def segment_codes(bank, segment: BankSegment) -> np.ndarray:
    """The packed PDQ codes of a segment's rows (digest-checked)."""
    body = bank.read_file(segment_metadata(bank, segment), CODES_FILE)
    return np.load(io.BytesIO(body), allow_pickle=False)


def segment_lines(bank, segment: BankSegment) -> list[bytes]:
    """The entry lines of a segment (unparsed; digest-checked)."""
    return bank.read_file(segment_metadata(bank, segment), ENTRIES_FILE).splitlines()


def load_part(bank, segment: BankSegment) -> BankPart:
    """One segment ready to match: every file of its writer's version read and checked, the index loaded."""
    metadata = segment_metadata(bank, segment)
    files = {path: bank.read_file(metadata, path) for path in metadata.files}
    with tempfile.TemporaryDirectory(prefix="bank-") as tmp:
        for path, body in files.items():
            if path.startswith("index/"):
                (Path(tmp) / path.removeprefix("index/")).write_bytes(body)
        index = PdqIndex.load(Path(tmp))
    lines = files[ENTRIES_FILE].splitlines()
    if len(lines) != segment.rows or len(index) != segment.rows:
        raise IntegrityError(f"bank {bank.model_name} version {segment.version}: {len(lines)} entries, "
                             f"{segment.rows} expected", hint="the version is damaged; roll back to another one")
    return BankPart(index, LazyEntries(lines), segment.version)


class SegmentCache:
    """Loaded segments by (bank, segment version); ``loaded`` lists the (bank, segment version) read from S3."""

    def __init__(self) -> None:
        self._parts: dict[tuple[str, int], BankPart] = {}
        self._lock = threading.Lock()
        self.loaded: list[tuple[str, int]] = []

    def part(self, bank, segment: BankSegment) -> BankPart:
        key = (bank.model_name, segment.version)
        with self._lock:
            held = self._parts.get(key)
        if held is not None:
            return held
        part = load_part(bank, segment)
        with self._lock:
            self._parts[key] = part
            self.loaded.append(key)
        return part

    def keep(self, used: set[tuple[str, int]]) -> None:
        """Forget the segments no loaded bank uses any more."""
        with self._lock:
            self._parts = {key: part for key, part in self._parts.items() if key in used}


def not_held(codes: np.ndarray, entries: list) -> list:
    """The entries whose PDQ hash is neither in ``codes`` (every segment's, packed) nor earlier in ``entries``."""
    if len(entries) <= 64:  # a few adds: compare against the codes (no 1M-string set to build)
        fresh, seen = [], set()
        for entry in entries:
            code = np.frombuffer(bytes.fromhex(entry.pdq), dtype=np.uint8)
            if entry.pdq not in seen and not (len(codes) and (codes == code).all(axis=1).any()):
                seen.add(entry.pdq)
                fresh.append(entry)
        return fresh
    flat = codes.tobytes().hex()
    held = {flat[i:i + 64] for i in range(0, len(flat), 64)}
    fresh = []
    for entry in entries:
        if entry.pdq not in held:
            held.add(entry.pdq)
            fresh.append(entry)
    return fresh
