"""Benchmark: indexed PDQ bank matching (PdqIndex) against the linear BankMatcher it replaces; print ONE JSON line.

    PYTHONPATH=src python benchmarks/bank_match.py [--entries 1000000] [--quick]

Index figures (tagwatch.moderation.pdq_synthetic.measure_index): a bank of uniform random 256-bit codes, queries
planted at distances 0..40 from bank codes plus random ones; build seconds, bytes on disk, reload seconds, queries
per second on one core (faiss held to one thread; batched, and one ``within`` call per post as BankMatcher does),
recall at 31 bits (planted ground truth on every query; brute force on a random subsample, counted in the line),
matches beyond 31 (must be 0). Baseline, side by side: the pre-index BankMatcher (one unpacked N x 256 matrix,
argmin per post; code copied below) at ``--baseline-sizes`` entries: consumer reload from the bank JSON and ms per
match, next to the new BankMatcher on the same bank.

Versioned banks (``reload``, moderation/bank_store.py): on a private embedded stack (real SeaweedFS S3, free
ports, temp state dir), a ``--reload-entries`` bank (default 1M) is written as one version (a full snapshot), then
one entry is added on top (``add_one_entry_s``: a second version, a one-row delta segment; bank_segments.py), then
a consumer's reload is timed as BankSource does it: ``consumer_reload_s`` from nothing (every segment: GET metadata
and files, sha256 checks, index loaded from the stored faiss tables; split into fetch and index load of the
snapshot, next to building the index from the codes alone), and ``consumer_delta_reload_s`` for a consumer that
had the snapshot loaded when the alias moved (its segment cache holds the snapshot: only the delta is read); plus
one alias GET (what a refresh costs when nothing moved).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone

import numpy as np


class LinearBankMatcher:
    """BankMatcher before the index (tagwatch ff0f378), kept as the baseline."""

    def __init__(self, banks, threshold: int = 31) -> None:
        self.threshold = threshold
        self.labels = [(bank.name, entry) for bank in banks for entry in bank.entries]
        self.matrix = np.stack([_bits(e.pdq) for _, e in self.labels]) if self.labels else np.zeros((0, 256), np.uint8)

    def match(self, pdq: str):
        distances = (self.matrix != _bits(pdq)).sum(axis=1)
        best = int(distances.argmin())
        if distances[best] <= self.threshold:
            name, entry = self.labels[best]
            return name, entry, int(distances[best])
        return None


def _bits(hex_hash: str) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_hash), dtype=np.uint8))


def compare_matchers(size: int, matches: int, seed: int = 7) -> dict:
    """Reload (JSON -> HashBank -> matcher) and ms/match of the linear and the indexed BankMatcher on one bank."""
    from tagwatch.moderation.bank import BankEntry, BankMatcher, HashBank
    from tagwatch.moderation.pdq_synthetic import planted_queries, random_codes

    rng = np.random.default_rng(seed)
    codes = random_codes(size, rng)
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    bank = HashBank(name="bench", entries=[BankEntry(entry_id=f"{i:012x}", pdq=c.tobytes().hex(), reason="bench",
                                                     added_at=when) for i, c in enumerate(codes)])
    body = json.dumps(bank.model_dump(mode="json"))
    queries, _, _ = planted_queries(codes, range(0, 41), max(1, matches // 41), rng)
    hexes = [q.tobytes().hex() for q in queries]
    figures: dict = {"entries": size, "json_bytes": len(body), "matches_timed": len(hexes)}
    answers = {}
    for label, cls in (("linear", LinearBankMatcher), ("indexed", BankMatcher)):
        t = time.perf_counter()
        matcher = cls([HashBank.model_validate_json(body)])
        figures[f"{label}_reload_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        results = [matcher.match(h) for h in hexes]
        figures[f"{label}_ms_per_match"] = round(1000 * (time.perf_counter() - t) / len(hexes), 3)
        figures[f"{label}_matched"] = sum(r is not None for r in results)
        answers[label] = [r and (r[0], r[1].entry_id, r[2]) for r in results]
    figures["same_answers"] = answers["linear"] == answers["indexed"]
    figures["ms_per_match_speedup"] = round(figures["linear_ms_per_match"] / figures["indexed_ms_per_match"], 1)
    return figures


def measure_versioned_reload(size: int, seed: int = 9) -> dict:
    """Write, add to and reload a ``size``-entry bank in the versioned S3 layout on a private SeaweedFS."""
    import tempfile
    from pathlib import Path

    from tagwatch.clients import s3_client
    from tagwatch.moderation.bank import BankEntry
    from tagwatch.moderation.bank_segments import SegmentCache
    from tagwatch.moderation.bank_store import ALIAS, BankStore
    from tagwatch.moderation.pdq_index import PdqIndex
    from tagwatch.moderation.pdq_synthetic import random_codes
    from tagwatch.stack import private_stack

    rng = np.random.default_rng(seed)
    codes = random_codes(size + 1, rng)
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    entries = [BankEntry(entry_id=f"{i:012x}", pdq=c.tobytes().hex(), reason="bench", added_at=when, quality=90,
                         category="terrorism", source="benchmark") for i, c in enumerate(codes)]
    figures: dict = {"entries": size, "store": "s3: private embedded SeaweedFS on this machine"}
    with tempfile.TemporaryDirectory(prefix="tagwatch-bench-") as state, private_stack(Path(state)) as settings:
        store = BankStore(s3_client(settings.s3), settings.s3.buckets.models)
        t = time.perf_counter()
        store.extend("bench", entries[:size], reason="benchmark")
        figures["write_version_s"] = round(time.perf_counter() - t, 2)
        cache = SegmentCache()
        store.load_indexed("bench", cache=cache)  # a consumer that had the snapshot
        t = time.perf_counter()
        written = store.extend("bench", entries[size:], reason="benchmark: one more")
        figures["add_one_entry_s"] = round(time.perf_counter() - t, 2)
        versions = store.versions("bench")
        figures["add_one_entry_bytes"] = sum(d.bytes for d in versions.metadata(written.version)[0].files.values())
        t = time.perf_counter()
        delta_bank = store.load_indexed("bench", cache=cache)
        figures["consumer_delta_reload_s"] = round(time.perf_counter() - t, 3)
        figures["consumer_delta_reload_segments_read"] = len(cache.loaded) - 1
        t = time.perf_counter()
        versions.alias_bytes(ALIAS)
        figures["alias_poll_ms"] = round(1000 * (time.perf_counter() - t), 1)
        t = time.perf_counter()
        bank = store.load_indexed("bench")
        figures["consumer_reload_s"] = round(time.perf_counter() - t, 2)
        # the same reload in its parts (of the snapshot, segment 1)
        metadata = versions.metadata(1)[0]
        figures["version_bytes"] = {path: d.bytes for path, d in metadata.files.items()}
        t = time.perf_counter()
        files = {path: versions.read_file(metadata, path) for path in metadata.files}
        figures["fetch_and_verify_s"] = round(time.perf_counter() - t, 2)
        with tempfile.TemporaryDirectory() as tmp:
            for path, body in files.items():
                if path.startswith("index/"):
                    (Path(tmp) / path.removeprefix("index/")).write_bytes(body)
            t = time.perf_counter()
            PdqIndex.load(Path(tmp))
            figures["index_from_faiss_tables_s"] = round(time.perf_counter() - t, 2)
            t = time.perf_counter()
            PdqIndex(np.load(Path(tmp) / "ids.npy"), np.load(Path(tmp) / "codes.npy"))
            figures["index_from_codes_only_s"] = round(time.perf_counter() - t, 2)
        probe = [entries[i] for i in [*rng.choice(size, 49, replace=False), size]]  # the delta entry too
        figures["version"] = written.version
        figures["probes_found"] = sum(bank.entries[bank.nearest(e.pdq, 0)[0]].entry_id == e.entry_id
                                      for e in probe)
        figures["delta_probes_found"] = sum(
            delta_bank.entries[delta_bank.nearest(e.pdq, 0)[0]].entry_id == e.entry_id for e in probe)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="50k entries, baseline at 10k only")
    parser.add_argument("--brute-queries", type=int, default=300)
    parser.add_argument("--baseline-sizes", type=int, nargs="*", default=None)
    parser.add_argument("--reload-entries", type=int, default=None,
                        help="versioned-bank reload on a private stack (default 1M, 20k with --quick; 0: skip)")
    args = parser.parse_args(argv)
    import faiss

    from tagwatch.moderation.pdq_synthetic import measure_index

    faiss.omp_set_num_threads(1)
    entries = 50_000 if args.quick else args.entries
    sizes = args.baseline_sizes if args.baseline_sizes is not None else ([10_000] if args.quick else [10_000, 100_000])
    figures = {"benchmark": "bank_match", "quick": args.quick, "threads": 1,
               "index": measure_index(entries, brute_queries=args.brute_queries),
               "baseline": [compare_matchers(size, matches=205) for size in sizes]}
    reload_entries = args.reload_entries if args.reload_entries is not None else (20_000 if args.quick else 1_000_000)
    if reload_entries:
        figures["reload"] = measure_versioned_reload(reload_entries)
    index = figures["index"]
    figures["pass"] = (index["recall_at_31_vs_brute_force"] == 1.0 and index["planted_recall_at_radius"] == 1.0
                       and index["false_matches"] == 0 and index["planted_matched_beyond_radius"] == 0
                       and index["wrong_or_beyond_radius"] == 0
                       and all(b["same_answers"] for b in figures["baseline"])
                       and figures.get("reload", {}).get("probes_found", 50) == 50
                       and figures.get("reload", {}).get("delta_probes_found", 50) == 50)
    print(json.dumps(figures), flush=True)
    return 0 if figures["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
