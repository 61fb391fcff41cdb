"""benchmarks/bank_match.py's quick path runs and its exactness figures hold (figures only; no timed asserts)."""

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("faiss")
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bank_match.py"


def test_quick_benchmark_is_exact(capsys):
    spec = importlib.util.spec_from_file_location("bank_match", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # --reload-entries 0: the versioned-bank reload needs a running stack (tests/integration/test_bank_versions.py)
    assert module.main(["--quick", "--brute-queries", "150", "--baseline-sizes", "3000", "--reload-entries", "0"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    index = figures["index"]
    assert index["engine"] == "faiss IndexBinaryMultiHash" and index["entries"] == 50_000
    assert index["recall_at_31_vs_brute_force"] == 1.0 and index["planted_recall_at_radius"] == 1.0
    assert index["false_matches"] == 0 and index["planted_matched_beyond_radius"] == 0
    assert index["brute_force_queries"] == 150 and index["brute_force_expected_matches"] > 0
    (baseline,) = figures["baseline"]
    assert baseline["same_answers"] and baseline["indexed_matched"] > 0
