"""PdqIndex is exact at the PDQ threshold: same matches as a brute-force scan, planted hard cases included."""

from datetime import datetime, timezone

import numpy as np
import pytest

from tagwatch.moderation.bank import BankEntry, BankMatcher, HashBank, IndexedBank, LazyEntries
from tagwatch.moderation.pdq_index import INDEX_FROM, NFLIP, PdqIndex, multihash_layout
from tagwatch.moderation.pdq_synthetic import check_exactness, planted_queries, random_codes

faiss = pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def bank():
    rng = np.random.default_rng(19)
    codes = random_codes(20_000, rng)
    return PdqIndex(range(len(codes)), codes), rng


def test_layout_guarantees_recall_by_pigeonhole():
    for radius in range(0, 80):
        chunks, bits = multihash_layout(radius)
        assert chunks * (NFLIP + 1) > radius and chunks * bits <= 256 and bits <= 64


def test_index_agrees_with_brute_force_at_30_31_32(bank):
    index, rng = bank
    assert index.index is not None  # the faiss multi-hash, not the small-bank scan
    queries, sources, planted = planted_queries(index.codes, [30, 31, 32], 60, rng)
    report = check_exactness(index, np.concatenate([queries, random_codes(100, rng)]))
    assert report["recall"] == 1.0 and report["false_matches"] == 0 and report["wrong_or_beyond_radius"] == 0
    assert report["expected_matches"] == 120  # the 30s and 31s; the 32s must not match
    found = index.search_codes(queries)
    for (rows, distances), source, distance in zip(found, sources, planted):
        assert (source in rows.tolist()) == (distance <= 31)


def _spread(code, per_chunk, extra_bits, bitorder):
    """``code`` with per_chunk[j] bits flipped inside chunk j of the 31-bit layout, plus bits past the last chunk."""
    chunks, width = multihash_layout(31)
    bits = np.unpackbits(code, bitorder=bitorder)
    for j, flips in enumerate(per_chunk):
        bits[j * width: j * width + flips] ^= 1
    bits[chunks * width: chunks * width + extra_bits] ^= 1
    return np.packbits(bits, bitorder=bitorder)


@pytest.mark.parametrize("bitorder", ["little", "big"])
@pytest.mark.parametrize("per_chunk,extra,matches", [
    ([3] * 10 + [1], 0, True),       # 31: only the last chunk is within nflip
    ([3] * 9 + [2, 2], 0, True),     # 31: two chunks at exactly nflip
    ([3] * 9 + [1, 0], 3, True),     # 31 with the bits no chunk covers flipped
    ([3] * 10 + [2], 0, False),      # 32
    ([3] * 11, 0, False),            # 33: every chunk past nflip
])
def test_adversarial_spreads(bank, bitorder, per_chunk, extra, matches):
    index, _ = bank
    query = _spread(index.codes[7], per_chunk, extra, bitorder)
    rows, distances = index.search_codes(query[None, :])[0]
    assert (7 in rows.tolist()) == matches
    assert check_exactness(index, query[None, :])["recall"] == 1.0


def test_small_bank_scan_save_load_and_wider_query(bank, tmp_path):
    index, rng = bank
    small = PdqIndex([f"e{i}" for i in range(INDEX_FROM - 1)], index.codes[: INDEX_FROM - 1])
    assert small.index is None
    queries, _, _ = planted_queries(small.codes, [0, 31, 32], 10, rng)
    assert check_exactness(small, queries)["recall"] == 1.0
    index.save(tmp_path / "bank")
    again = PdqIndex.load(tmp_path / "bank")
    queries, _, _ = planted_queries(index.codes, range(0, 41), 5, rng)
    assert [r.tolist() for r, _ in again.search_codes(queries)] == [r.tolist() for r, _ in index.search_codes(queries)]
    # wider than the built radius: answered exactly by the scan
    assert check_exactness(again, queries, radius=40)["recall"] == 1.0


def test_matcher_takes_nearest_and_earlier_on_ties():
    rng = np.random.default_rng(3)
    codes = random_codes(INDEX_FROM + 110, rng)
    hexes = [c.tobytes().hex() for c in codes]
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    entries = [BankEntry(entry_id=f"e{i}", pdq=h, reason="t", added_at=when) for i, h in enumerate(hexes)]
    entries.append(BankEntry(entry_id="dup", pdq=hexes[5], reason="t", added_at=when))
    matcher = BankMatcher([HashBank(name="a", entries=entries[:100]), HashBank(name="b", entries=entries[100:])])
    assert matcher.banks[1].parts[0].index.index is not None  # one index per bank: b's is a faiss one, a's a scan
    name, entry, distance = matcher.match(hexes[5])
    assert (name, entry.entry_id, distance) == ("a", "e5", 0)
    name, entry, distance = matcher.match(hexes[2000])
    assert (name, entry.entry_id, distance) == ("b", "e2000", 0)
    assert matcher.match(random_codes(1, rng)[0].tobytes().hex()) is None


def test_matcher_over_loaded_banks_parses_only_the_entries_it_returns():
    rng = np.random.default_rng(5)
    hexes = [c.tobytes().hex() for c in random_codes(40, rng)]
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    lines = [BankEntry(entry_id=f"e{i}", pdq=h, reason="t", added_at=when).model_dump_json().encode()
             for i, h in enumerate(hexes)]
    lazy = LazyEntries(lines)
    stored = IndexedBank.single("stored", PdqIndex.from_hex(range(40), hexes), lazy, version=7)
    memory = HashBank(name="memory", entries=[BankEntry(entry_id="m", pdq=hexes[3], reason="t", added_at=when)])
    matcher = BankMatcher([stored, memory])
    assert matcher.version == "pdq<=31 stored@7"
    name, entry, distance = matcher.match(hexes[3])  # in both: the earlier bank wins the tie
    assert (name, entry.entry_id, distance) == ("stored", "e3", 0) and list(lazy._parsed) == [3]
    assert len(lazy) == 40 and [e.entry_id for e in lazy[1:3]] == ["e1", "e2"]
