"""Synthetic PDQ banks with planted near-duplicates, and the exactness check of a PdqIndex against brute force.

Uniform random 256-bit codes sit about 128 bits apart (a random pair within 31 bits has probability ~1e-28), so a
query made by flipping ``k`` bits of one bank code has that code as its only match within 31 bits: planted
queries carry their own ground truth, and the brute-force scan (``hamming``) checks the rest.
"""

from __future__ import annotations

import numpy as np

from tagwatch.moderation.pdq_index import CODE_BYTES, PdqIndex, hamming


def random_codes(count: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(count, CODE_BYTES), dtype=np.uint8)


def flip_bits(codes: np.ndarray, flips: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each row of ``codes`` with ``flips[i]`` distinct random bits flipped (so exactly that far from its source)."""
    bits = np.unpackbits(codes, axis=1)
    order = np.argsort(rng.random(bits.shape), axis=1)
    mask = np.arange(bits.shape[1])[None, :] < np.asarray(flips)[:, None]
    chosen = np.zeros_like(bits)
    np.put_along_axis(chosen, order, mask.astype(np.uint8), axis=1)
    return np.packbits(bits ^ chosen, axis=1)


def planted_queries(codes: np.ndarray, distances: range | list[int], per_distance: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(queries, source rows, planted distances): ``per_distance`` queries at each distance from random rows."""
    planted = np.repeat(np.asarray(list(distances)), per_distance)
    sources = rng.integers(0, len(codes), size=len(planted))
    return flip_bits(codes[sources], planted, rng), sources, planted


def check_exactness(index: PdqIndex, queries: np.ndarray, radius: int = 31) -> dict:
    """Recall and false matches of ``index`` at ``radius`` against a brute-force scan of every code, per query."""
    expected = found = agreed = beyond = 0
    for query, (rows, distances) in zip(queries, index.search_codes(queries, radius)):
        truth = hamming(index.codes, query)
        want = set(np.flatnonzero(truth <= radius).tolist())
        got = set(rows.tolist())
        expected, found, agreed = expected + len(want), found + len(got), agreed + len(want & got)
        beyond += int((distances > radius).sum()) + int((truth[rows] != distances).sum())
    return {"queries": len(queries), "expected_matches": expected, "found_matches": found,
            "recall": agreed / expected if expected else 1.0, "false_matches": found - agreed,
            "wrong_or_beyond_radius": beyond}
