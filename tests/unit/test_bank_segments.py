"""The pure parts of delta bank versions (bank_segments.py, IndexedBank segments): when a write is a delta or a
compaction, old metadata read as one segment, hashes held across segments, nearest-then-earlier-row matching."""

from datetime import datetime, timezone

import numpy as np

from tagwatch.moderation.bank import BankEntry, BankMatcher, BankPart, IndexedBank
from tagwatch.moderation.bank_segments import BankSegment, not_held, plan_delta, segments_of
from tagwatch.moderation.bank_store import BankVersionMetadata
from tagwatch.moderation.pdq_index import PdqIndex, codes_from_hex
from tagwatch.moderation.pdq_synthetic import random_codes

WHEN = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _entries(hexes, prefix):
    return [BankEntry(entry_id=f"{prefix}{i}", pdq=h, reason="t", added_at=WHEN) for i, h in enumerate(hexes)]


def _metadata(number, entries, segments=()):
    return BankVersionMetadata(bank="b", number=number, created_at=WHEN, created_by="t", base_version=0,
                               entries=entries, added=1, radius=31, files={}, segments=list(segments))


def test_plan_delta_until_the_chain_is_too_long_or_too_heavy():
    base = [BankSegment(version=1, rows=100)]
    assert not plan_delta([], 1)  # nothing to build on (empty or legacy bank): a snapshot
    assert plan_delta(base, 10) and not plan_delta(base, 11)  # deltas up to 10 % of the snapshot
    chain = base + [BankSegment(version=v, rows=1) for v in range(2, 8)]  # 7 segments
    assert plan_delta(chain, 1) and not plan_delta(chain + [BankSegment(version=8, rows=1)], 1)
    assert not plan_delta(chain, 1, max_segments=7) and plan_delta(base, 50, delta_fraction=0.5)


def test_segments_of_old_metadata_is_one_full_segment_and_own_segment_gets_the_digest():
    assert segments_of(_metadata(3, 5), "d3") == [BankSegment(version=3, rows=5, metadata_sha256="d3")]
    chain = [BankSegment(version=1, rows=5), BankSegment(version=2, rows=1, metadata_sha256="d2"),
             BankSegment(version=4, rows=2)]
    chain[0] = chain[0].model_copy(update={"metadata_sha256": "d1"})
    got = segments_of(_metadata(4, 8, chain), "d4")
    assert [(s.version, s.rows, s.metadata_sha256) for s in got] == [(1, 5, "d1"), (2, 1, "d2"), (4, 2, "d4")]
    dumped = BankVersionMetadata.model_validate_json(_metadata(4, 8, chain).model_dump_json())
    assert dumped.segments == chain


def test_not_held_looks_in_every_segment_code_few_and_many_alike():
    rng = np.random.default_rng(3)
    hexes = [c.tobytes().hex() for c in random_codes(200, rng)]
    codes = np.concatenate([codes_from_hex(hexes[:50]), codes_from_hex(hexes[50:60])])  # base + a delta
    few = _entries([hexes[55], hexes[100], hexes[100], hexes[3]], "f")
    assert [e.entry_id for e in not_held(codes, few)] == ["f1"]
    many = _entries(hexes, "m") + _entries(hexes[150:], "x")
    assert [e.entry_id for e in not_held(codes, many)] == [f"m{i}" for i in range(60, 200)]
    assert [e.entry_id for e in not_held(codes_from_hex([]), few)] == ["f0", "f1", "f3"]


def test_a_bank_of_segments_matches_nearest_then_the_earlier_row():
    rng = np.random.default_rng(4)
    hexes = [c.tobytes().hex() for c in random_codes(30, rng)]
    base, delta = _entries(hexes[:20], "b"), _entries(hexes[20:] + [hexes[5]], "d")  # d10 repeats b5
    bank = IndexedBank("s", [BankPart(PdqIndex.from_hex(range(20), hexes[:20]), base, 1),
                             BankPart(PdqIndex.from_hex(range(11), [e.pdq for e in delta]), delta, 2)], 2)
    assert len(bank.entries) == 31 and bank.entries[20].entry_id == "d0" and bank.entries[-1].entry_id == "d10"
    assert [e.entry_id for e in bank.entries[18:22]] == ["b18", "b19", "d0", "d1"]
    assert bank.nearest(hexes[5], 31) == (5, 0)  # the tie goes to the base row
    assert bank.nearest(hexes[23], 31) == (23, 0)
    matcher = BankMatcher([bank])
    assert matcher.match(hexes[25])[1].entry_id == "d5" and matcher.match(hexes[5])[1].entry_id == "b5"
    near = bytearray(bytes.fromhex(hexes[7]))
    near[0] ^= 0b111  # 3 bits from b7; d-copy of it exact: the delta wins by distance
    delta2 = _entries([bytes(near).hex()], "n")
    bank.parts.append(BankPart(PdqIndex.from_hex([0], [delta2[0].pdq]), delta2, 3))
    assert bank.nearest(bytes(near).hex(), 31) == (31, 0) and bank.nearest(hexes[7], 31) == (7, 0)
