"""Exact radius search over 256-bit PDQ hashes: multi-index hashing (faiss ``IndexBinaryMultiHash``).

Why it is exact (pigeonhole): the 256 bits are cut into ``m`` disjoint chunks of ``b`` bits and every chunk is a
hash-table key. A bank code within ``radius`` bits of a query differs from it in at most ``radius`` bits in all;
were every chunk to differ in ``nflip + 1`` bits or more, the distance would be at least ``m * (nflip + 1)``, and the
layout is chosen so that ``m * (nflip + 1) > radius``. So at least one chunk differs in at most ``nflip`` bits, and the
index probes every key within ``nflip`` flips of each query chunk: the code is a candidate. Candidates are then kept
only if their exact Hamming distance is within the radius. Bits left outside the chunks (256 - m*b) only add
distance, so they cannot hide a match. At radius 31: m=11 chunks of 23 bits, nflip=2 (11 * 3 = 33 > 31).

Small banks (under INDEX_FROM entries) and queries wider than the radius the index was built for are answered by an
exact linear scan; so is everything when faiss-cpu (the ``data`` extra) is not installed, with one warning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

CODE_BYTES = 32
NFLIP = 2
# Under this many entries a linear scan is as quick as a lookup and needs no build.
INDEX_FROM = 2048
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def codes_from_hex(hashes: Sequence[str]) -> np.ndarray:
    """(n, 32) uint8 packed codes from 64-hex PDQ hashes."""
    if not len(hashes):
        return np.zeros((0, CODE_BYTES), np.uint8)
    return np.frombuffer(bytes.fromhex("".join(hashes)), dtype=np.uint8).reshape(len(hashes), CODE_BYTES).copy()


def hamming(codes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Hamming distance of one packed query (32 bytes) to every row of ``codes`` (the exact brute force)."""
    return _POPCOUNT[np.bitwise_xor(codes, query)].sum(axis=1, dtype=np.int32)


def multihash_layout(radius: int, nflip: int = NFLIP) -> tuple[int, int]:
    """(chunks m, bits per chunk b) with m * (nflip + 1) > radius: exact recall at ``radius`` by pigeonhole."""
    chunks = max(4, math.ceil((radius + 1) / (nflip + 1)))  # faiss hash keys are at most 64 bits: 256 / 4
    if chunks > 256:
        raise ValueError(f"radius {radius} too wide for a 256-bit multi-hash index")
    return chunks, min(64, 256 // chunks)


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


class PdqIndex:
    """Ids and their PDQ codes; ``within`` returns every id within ``max_distance`` bits, nearest first."""

    def __init__(self, ids: Sequence, codes: np.ndarray, radius: int = 31, *, index=None) -> None:
        if len(ids) != len(codes):
            raise ValueError(f"{len(ids)} ids for {len(codes)} codes")
        self.ids = np.asarray(ids) if len(ids) else np.zeros(0, dtype=np.int64)
        self.codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, CODE_BYTES)
        self.radius = radius
        self.index = index if index is not None else self._build()

    @classmethod
    def from_hex(cls, ids: Sequence, hashes: Sequence[str], radius: int = 31) -> PdqIndex:
        return cls(ids, codes_from_hex(hashes), radius)

    def _build(self):
        faiss = _faiss() if len(self.codes) >= INDEX_FROM else None
        if faiss is None:
            if len(self.codes) >= INDEX_FROM:
                logger.warning("faiss-cpu not installed: matching %d PDQ hashes by linear scan", len(self.codes))
            return None
        chunks, bits = multihash_layout(self.radius)
        index = faiss.IndexBinaryMultiHash(CODE_BYTES * 8, chunks, bits)
        index.nflip = NFLIP
        index.add(self.codes)
        return index

    def __len__(self) -> int:
        return len(self.codes)

    def within(self, query_hex: str, max_distance: int | None = None) -> list[tuple[object, int]]:
        return self.within_batch([query_hex], max_distance)[0]

    def within_batch(self, queries_hex: Sequence[str], max_distance: int | None = None) -> list[list[tuple]]:
        found = self.search_codes(codes_from_hex(queries_hex), max_distance)
        return [[(self.ids[p].item(), int(d)) for p, d in zip(rows, dists)] for rows, dists in found]

    def search_codes(self, queries: np.ndarray, max_distance: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query: (row positions, distances) of every code within ``max_distance``, by distance then row."""
        radius = self.radius if max_distance is None else max_distance
        queries = np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, CODE_BYTES)
        if self.index is None or radius > self.radius or not len(queries):
            return [self._scan(query, radius) for query in queries]
        # faiss keeps distances strictly below the radius it is given
        limits, distances, rows = self.index.range_search(queries, radius + 1)
        out = []
        for q in range(len(queries)):
            r, d = rows[limits[q]:limits[q + 1]], distances[limits[q]:limits[q + 1]].astype(np.int32)
            order = np.lexsort((r, d))
            out.append((r[order], d[order]))
        return out

    def _scan(self, query: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        distances = hamming(self.codes, query)
        rows = np.flatnonzero(distances <= radius)
        order = np.lexsort((rows, distances[rows]))
        return rows[order], distances[rows][order]

    def save(self, folder: Path) -> None:
        """``ids.npy`` + ``codes.npy`` (+ ``multihash.faiss``, so a reload does not rebuild the tables)."""
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "ids.npy", self.ids, allow_pickle=False)
        np.save(folder / "codes.npy", self.codes, allow_pickle=False)
        (folder / "radius.txt").write_text(f"{self.radius}\n")
        if self.index is not None:
            _faiss().write_index_binary(self.index, str(folder / "multihash.faiss"))

    @classmethod
    def load(cls, folder: Path) -> PdqIndex:
        ids = np.load(folder / "ids.npy", allow_pickle=False)
        codes = np.load(folder / "codes.npy", allow_pickle=False)
        radius = int((folder / "radius.txt").read_text())
        stored, faiss = folder / "multihash.faiss", _faiss()
        if stored.exists() and faiss is not None:
            index = faiss.read_index_binary(str(stored))
            index.nflip = NFLIP  # not part of faiss's serialised form in every version
            return cls(ids, codes, radius, index=index)
        return cls(ids, codes, radius)
