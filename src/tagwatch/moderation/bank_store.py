"""Hash banks as versioned indexes in S3: immutable versions, one alias per bank that consumers follow.

Keys under ``s3://<buckets.models>/banks/<name>/`` (the rules of ``registry/store.py``, whose VersionStore this
reuses)::

    versions/<NNNNNN>/_claim           If-None-Match: *; {by, at}: a writer holds N while it writes N
    versions/<NNNNNN>/entries.jsonl    one BankEntry per line; line i is row i of the index (of N's own rows)
    versions/<NNNNNN>/index/...        PdqIndex.save: ids.npy, codes.npy, radius.txt (+ multihash.faiss)
    versions/<NNNNNN>/metadata.json    written last (BankVersionMetadata): counts, base, reason, author, digests,
                                       segments (the versions whose files make up N's rows, in order)
    versions/<NNNNNN>/_done            written once N's alias move is decided (won or lost): N is no longer busy
    aliases/current.json               AliasRecord (If-Match its ETag): the version consumers load, with history

``banks/<name>.json`` (one JSON document, before versions) reads as version 0 while the bank has no alias; the
first write on top of it is version 1 and the document stays where it was.

No lost adds: a write claims N = newest + 1 with If-None-Match (one writer per N; a writer that finds the newest
version still busy waits for it, so racing writers queue: N, N+1, ...), then reads the alias (version B, ETag E:
every version finished before the claim is in it), writes N on top of B and moves the alias with If-Match E.
N is a delta (only the new entries' files; B's segments reused by reference) or, when the chain would grow too
long or too heavy, a full snapshot of every row (compaction; bank_segments.py). Were the alias moved meanwhile (a rollback, or a writer that took over a stale claim), the move fails
and the write starts again on top of the alias's new version; N stays in the history, never named.
"""

from __future__ import annotations

import json
import logging
import random
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tagwatch.errors import ConfigError, IntegrityError, RegistryError
from tagwatch.moderation.bank import DEFAULT_THRESHOLD, BankEntry, HashBank, IndexedBank, entry_from_image
from tagwatch.moderation.bank_segments import (DELTA_FRACTION, ENTRIES_FILE, MAX_SEGMENTS, BankSegment, SegmentCache,
                                               load_part, not_held, plan_delta, segment_codes, segment_lines,
                                               segment_metadata, segments_of)
from tagwatch.moderation.pdq_index import PdqIndex, codes_from_hex
from tagwatch.registry.metadata import AliasRecord, FileDigest, digest_files, moved_alias, sha256_bytes
from tagwatch.registry.store import CLAIM_FILE, VersionStore, dump_json, who

log = logging.getLogger(__name__)

PREFIX = "banks"
ALIAS = "current"
DONE_FILE = "_done"
STALE_CLAIM_S = 300.0  # a claim this old without _done is a writer that died: the next writer goes past it
BANK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class BankVersionMetadata(BaseModel):
    """metadata.json of one bank version."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = 1
    bank: str
    number: int
    created_at: datetime
    created_by: str
    reason: str = ""
    base_version: int | None = Field(description="the version it was built on (0: the legacy JSON document)")
    entries: int
    added: int
    radius: int
    files: dict[str, FileDigest] = Field(description="this version's own files (of its own segment)")
    segments: list[BankSegment] = Field(
        default_factory=list, description="the rows in order: a full snapshot, then deltas (bank_segments.py); "
                                          "empty (versions from before segments): one full segment, its own files")


@dataclass(frozen=True)
class BankWrite:
    """What an add/import did: the version written (or the current one when nothing was new), entries, added."""

    bank: str
    version: int | None
    entries: int
    added: int


class BankVersions(VersionStore):
    """The versions and the alias of one bank."""

    metadata_model = BankVersionMetadata
    noun = "bank version"
    cli = "bank"

    def __init__(self, s3, bucket: str, name: str) -> None:
        if not BANK_NAME.match(name):
            raise ConfigError(f"invalid bank name {name!r}", hint="letters, digits, '.', '_' and '-' (e.g. tvec)")
        super().__init__(s3, bucket=bucket, model_name=name, root=f"{PREFIX}/{name}")

    def read_file(self, metadata: BankVersionMetadata, path: str) -> bytes:
        """A file of a version, checked against its metadata.json digest."""
        body = self._get(f"{self.version_prefix(metadata.number)}/{path}")
        if body is None or sha256_bytes(body) != metadata.files[path].sha256:
            raise IntegrityError(f"bank {self.model_name} version {metadata.number}: {path} is "
                                 f"{'missing' if body is None else 'not what metadata.json says'}",
                                 hint=f"the version is damaged; `tagwatch bank rollback {self.model_name} --to N`")
        return body

    def current(self) -> tuple[AliasRecord | None, str | None, BankVersionMetadata | None]:
        """(alias record, its ETag, the metadata it names; integrity checked)."""
        record, etag = self._read_alias_with_etag(ALIAS)
        if record is None:
            return None, None, None
        metadata, digest = self.metadata(record.version)
        if digest != record.metadata_sha256:
            raise IntegrityError(f"bank {self.model_name} version {record.version}: metadata.json changed after "
                                 "the alias named it", hint="roll back to another version")
        return record, etag, metadata

    def busy(self, number: int) -> bool:
        """Is a writer still writing version ``number``? (claimed, not done, claim younger than STALE_CLAIM_S)"""
        prefix = self.version_prefix(number)
        if self._get(f"{prefix}/{DONE_FILE}") is not None:
            return False
        claim = self._get(f"{prefix}/{CLAIM_FILE}")
        try:
            at = datetime.fromisoformat(json.loads(claim)["at"])
        except (TypeError, ValueError, KeyError):
            return False  # no claim, or one from before this protocol
        return (datetime.now(timezone.utc) - at).total_seconds() < STALE_CLAIM_S

    def claim(self, number: int) -> bool:
        body = json.dumps({"by": who(), "at": datetime.now(timezone.utc).isoformat()}).encode()
        return self._put(f"{self.version_prefix(number)}/{CLAIM_FILE}", body, if_none_match=True)


class BankStore:
    """Every bank under ``banks/`` of the models bucket: read, extend, roll back."""

    def __init__(self, s3, bucket: str, *, wait_s: float = 600.0, max_segments: int = MAX_SEGMENTS,
                 delta_fraction: float = DELTA_FRACTION) -> None:
        self.s3, self.bucket, self.wait_s = s3, bucket, wait_s
        self.max_segments, self.delta_fraction = max_segments, delta_fraction

    def versions(self, name: str) -> BankVersions:
        return BankVersions(self.s3, self.bucket, name)

    def names(self) -> list[str]:
        """Versioned banks (``banks/<name>/``) and legacy ones (``banks/<name>.json``)."""
        names = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{PREFIX}/",
                                                                      Delimiter="/"):
            names.update(p["Prefix"][len(PREFIX) + 1:].rstrip("/") for p in page.get("CommonPrefixes", []))
            names.update(o["Key"][len(PREFIX) + 1:-len(".json")] for o in page.get("Contents", [])
                         if o["Key"].endswith(".json"))
        odd = sorted(n for n in names if not BANK_NAME.match(n))
        if odd:
            log.warning("ignoring %d object(s) under %s/ that name no bank: %s", len(odd), PREFIX, odd[:3])
        return sorted(n for n in names if BANK_NAME.match(n))

    def legacy(self, name: str) -> HashBank | None:
        body = self.versions(name)._get(f"{PREFIX}/{name}.json")
        return HashBank.model_validate_json(body) if body is not None else None

    # -- read ---------------------------------------------------------------------------------------
    def load_indexed(self, name: str, version: int | None = None, cache: SegmentCache | None = None) -> IndexedBank:
        """Bank ``name`` ready to match: the alias's version (or ``version``), the legacy JSON, or empty. Its
        segments come from ``cache`` when it holds them (a consumer's: only new segments are read)."""
        bank = self.versions(name)
        if version is None:
            record, _, metadata = bank.current()
            digest = record.metadata_sha256 if record else None
        else:
            metadata, digest = bank.metadata(version)
        if metadata is None:
            legacy = self.legacy(name) or HashBank(name=name)
            return IndexedBank.of(legacy, version=0 if legacy.entries else None)
        segments = segments_of(metadata, digest)
        parts = [cache.part(bank, s) if cache is not None else load_part(bank, s) for s in segments]
        return IndexedBank(name, parts, metadata.number)

    def load(self, name: str, version: int | None = None) -> HashBank:
        """Every entry of bank ``name`` parsed (the alias's version, or ``version``)."""
        indexed = self.load_indexed(name, version)
        return HashBank(name=name, entries=list(indexed.entries[:]))

    # -- write --------------------------------------------------------------------------------------
    def add(self, name: str, image, reason: str, *, category: str = "other", action: str = "remove",
            source: str = "") -> BankEntry:
        entry = entry_from_image(image, reason, category=category, action=action, source=source)
        self.extend(name, [entry], reason=f"add {entry.entry_id}: {reason}")
        return entry

    def extend(self, name: str, entries: list[BankEntry], *, reason: str = "") -> BankWrite:
        """Append ``entries`` (hashes the bank already holds skipped) as the next version and move the alias to
        it; retried on top of whatever another writer promoted meanwhile, so no add is lost."""
        bank = self.versions(name)
        deadline = time.monotonic() + self.wait_s
        read = self._read_base(bank, entries)
        while read[-1]:  # something new to add
            newest = max(bank._version_numbers(), default=0)
            if not bank.busy(newest) and bank.claim(newest + 1):
                # N is ours: whatever was promoted before the claim is in the alias now; build on that
                if bank._read_alias_with_etag(ALIAS)[1] != read[1]:
                    read = self._read_base(bank, entries)
                (record, etag, base, segments, codes, fresh) = read
                if self._write(bank, newest + 1, segments, codes, fresh, (record, etag, base), reason):
                    return BankWrite(name, newest + 1, len(codes) + len(fresh), len(fresh))
                log.info("bank %s: the alias moved while version %d was written; again on top of it", name,
                         newest + 1)
                read = self._read_base(bank, entries)
            elif time.monotonic() > deadline:
                raise RegistryError(f"bank {name}: version {newest} has been busy for {self.wait_s:.0f} s",
                                    hint=f"another writer is adding to it; try again (a claim older than "
                                         f"{STALE_CLAIM_S:.0f} s is passed over)")
            else:
                time.sleep(0.1 + random.random() * 0.2)
        record, codes = read[0], read[4]
        return BankWrite(name, record.version if record else None, len(codes), 0)

    def _read_base(self, bank: BankVersions, entries: list[BankEntry]) -> tuple:
        """(alias record, its ETag, its metadata, its segments, every segment's codes, the entries it does not
        hold yet: hashes are looked up in the codes of all segments, no entry parsed)."""
        record, etag, base = bank.current()
        if base is None:
            legacy = self.legacy(bank.model_name)
            segments, codes = [], codes_from_hex([e.pdq for e in (legacy.entries if legacy else [])])
        else:
            segments = segments_of(base, record.metadata_sha256)
            codes = np.concatenate([segment_codes(bank, s) for s in segments])
        return record, etag, base, segments, codes, not_held(codes, entries)

    def _all_lines(self, bank: BankVersions, segments: list[BankSegment]) -> list[bytes]:
        """Every entry line of the base, in row order (unparsed: a 1M bank parses in seconds)."""
        if not segments:
            legacy = self.legacy(bank.model_name)
            return [e.model_dump_json().encode() for e in (legacy.entries if legacy else [])]
        return [line for s in segments for line in segment_lines(bank, s)]

    def _write(self, bank: BankVersions, number: int, segments: list[BankSegment], codes: np.ndarray,
               fresh: list[BankEntry], read: tuple[AliasRecord | None, str | None, BankVersionMetadata | None],
               reason: str) -> bool:
        """Write version ``number`` (claimed) on top of ``segments`` (a delta of ``fresh``, or a full snapshot
        when plan_delta says so) and move the alias to it if it still is what was ``read``."""
        record, etag, base = read
        fresh_lines = [e.model_dump_json().encode() for e in fresh]
        fresh_codes = codes_from_hex([e.pdq for e in fresh])
        try:
            if plan_delta(segments, len(fresh), max_segments=self.max_segments, delta_fraction=self.delta_fraction):
                rows, rows_codes = fresh_lines, fresh_codes
                chain = [*segments, BankSegment(version=number, rows=len(rows))]
            else:
                rows = self._all_lines(bank, segments) + fresh_lines
                rows_codes = np.concatenate([codes, fresh_codes])
                chain = [BankSegment(version=number, rows=len(rows))]
            index = PdqIndex(range(len(rows)), rows_codes, radius=DEFAULT_THRESHOLD)
            files = {ENTRIES_FILE: b"\n".join(rows) + b"\n"}
            with tempfile.TemporaryDirectory(prefix="bank-") as tmp:
                index.save(Path(tmp))
                files.update({f"index/{p.name}": p.read_bytes() for p in sorted(Path(tmp).iterdir())})
            prefix = bank.version_prefix(number)
            for path, body in files.items():
                self.s3.put_object(Bucket=self.bucket, Key=f"{prefix}/{path}", Body=body)
            entries = sum(s.rows for s in chain)
            metadata = BankVersionMetadata(
                bank=bank.model_name, number=number, created_at=datetime.now(timezone.utc), created_by=who(),
                reason=reason, base_version=base.number if base else 0, entries=entries, added=len(fresh),
                radius=DEFAULT_THRESHOLD, files=digest_files(files), segments=chain)
            body = dump_json(metadata)
            bank._put(bank.metadata_key(number), body, if_none_match=True)
            moved = moved_alias(record, alias=ALIAS, model_name=bank.model_name, version=number,
                                metadata_sha256=sha256_bytes(body), by=who(), reason=reason)
            won = bank._put(bank.alias_key(ALIAS), dump_json(moved), if_none_match=etag is None, if_match=etag)
        finally:
            self.s3.put_object(Bucket=self.bucket, Key=f"{bank.version_prefix(number)}/{DONE_FILE}", Body=b"")
        if won:
            log.info("bank %s: version %d (%d entries, %d added, %s)", bank.model_name, number, entries, len(fresh),
                     f"delta: segment {len(chain)}" if len(chain) > 1 else "full snapshot")
        return won

    # -- alias --------------------------------------------------------------------------------------
    def rollback(self, name: str, to: int | None = None) -> AliasRecord:
        """Point bank ``name``'s alias at version ``to`` (default: the one it named before); history kept."""
        bank = self.versions(name)
        if to is None:
            return bank._roll_back_alias(ALIAS, lambda number: self._check_version(bank, number))
        self._check_version(bank, to)
        return bank._move_alias(to, alias=ALIAS, reason=f"rollback to {to}")

    def _check_version(self, bank: BankVersions, number: int) -> None:
        """Every file of every segment of version ``number`` is there and what its writer's metadata says."""
        metadata, digest = bank.metadata(number)
        for segment in segments_of(metadata, digest):
            writer = segment_metadata(bank, segment)
            for path in writer.files:
                bank.read_file(writer, path)
