"""Synthetic PDQ banks with planted near-duplicates, and the exactness check of a PdqIndex against brute force.

Uniform random 256-bit codes sit about 128 bits apart (a random pair within 31 bits has probability ~1e-28), so a
query made by flipping ``k`` bits of one bank code has that code as its only match within 31 bits: planted
queries carry their own ground truth, and the brute-force scan (``hamming``) checks the rest.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from tagwatch.moderation.pdq_index import CODE_BYTES, NFLIP, PdqIndex, hamming, multihash_layout


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


def _folder_bytes(folder: Path) -> dict[str, int]:
    return {path.name: path.stat().st_size for path in folder.iterdir()}


def measure_index(entries: int, *, per_distance: int = 100, random_queries: int = 5000, single_queries: int = 2000,
                  brute_queries: int = 300, radius: int = 31, seed: int = 19) -> dict:
    """Figures of a PdqIndex over ``entries`` random codes: build, size, reload, throughput, exactness.

    Queries: ``per_distance`` planted at each distance 0..40 (only 0..radius may match their source) plus
    ``random_queries`` uniform ones. Throughput runs in this thread (faiss's own threads are the caller's to set).
    Brute force (a scan of every code per query) checks a random subsample of ``brute_queries`` queries.
    """
    rng = np.random.default_rng(seed)
    codes = random_codes(entries, rng)
    t = time.perf_counter()
    index = PdqIndex(np.arange(entries), codes, radius)
    build_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory(prefix="tagwatch-pdq-") as tmp:
        folder = Path(tmp) / "bank"
        t = time.perf_counter()
        index.save(folder)
        save_s = time.perf_counter() - t
        files = _folder_bytes(folder)
        t = time.perf_counter()
        index = PdqIndex.load(folder)
        reload_s = time.perf_counter() - t
    planted, sources, distances = planted_queries(codes, range(0, 41), per_distance, rng)
    queries = np.concatenate([planted, random_codes(random_queries, rng)])
    t = time.perf_counter()
    found = index.search_codes(queries)
    batched_s = time.perf_counter() - t
    hexes = [q.tobytes().hex() for q in queries[rng.permutation(len(queries))[:single_queries]]]
    t = time.perf_counter()
    for query in hexes:
        index.within(query)
    single_s = time.perf_counter() - t
    hits = [(int(s) in rows.tolist()) for (rows, _), s in zip(found, sources)]
    should = distances <= radius
    sample = queries[rng.permutation(len(queries))[:brute_queries]]
    t = time.perf_counter()
    brute = check_exactness(index, sample, radius)
    brute_s = time.perf_counter() - t
    return {
        "entries": entries, "engine": "faiss IndexBinaryMultiHash" if index.index is not None else "numpy scan",
        "layout_chunks_bits_nflip": [*multihash_layout(radius), NFLIP], "build_s": round(build_s, 2),
        "index_bytes": sum(files.values()), "index_files_bytes": files, "save_s": round(save_s, 2),
        "reload_s": round(reload_s, 2), "queries": len(queries),
        "qps_per_core_batched": round(len(queries) / batched_s),
        "qps_per_core_one_at_a_time": round(len(hexes) / single_s),
        "planted_within_radius": int(should.sum()), "planted_recall_at_radius": float(np.mean(np.array(hits)[should])),
        "planted_matched_beyond_radius": int(np.sum(np.array(hits)[~should])),
        "recall_at_31_vs_brute_force": brute["recall"], "false_matches": brute["false_matches"],
        "wrong_or_beyond_radius": brute["wrong_or_beyond_radius"], "brute_force_queries": brute["queries"],
        "brute_force_expected_matches": brute["expected_matches"], "brute_force_s": round(brute_s, 1),
    }
