"""The promotion gate, the UI figures and the HTML report of the evaluate step."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from tagwatch.pipeline.evaluation import binary_flag_figures, category_map_on, write_html_report
from tagwatch.pipeline.gate import decide_promotion
from tagwatch.pipeline.steps import k8s_name, run_id_for
from tagwatch.train.evaluate import Predictions


def test_gate() -> None:
    assert decide_promotion(candidate_map=None, production_map=None, production_version=None).promote
    better = decide_promotion(candidate_map=0.6, production_map=0.5, production_version=3)
    assert better.promote and "beats production v3" in better.reason
    same = decide_promotion(candidate_map=0.5, production_map=0.5, production_version=3)
    assert not same.promote and "does not beat" in same.reason
    margin = decide_promotion(candidate_map=0.52, production_map=0.5, production_version=3, min_improvement=0.05)
    assert not margin.promote
    assert not decide_promotion(candidate_map=float("nan"), production_map=0.5, production_version=3).promote
    assert decide_promotion(candidate_map=0.4, production_map=None, production_version=3).promote


def predictions() -> Predictions:
    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.2, 0.3], [0.1, 0.9]], dtype=np.float32)
    targets = np.array([[1, 0], [1, 0], [0, 0], [0, 1]], dtype=np.float32)
    return Predictions(["a", "b", "c", "d"], np.zeros((4, 3), np.float32), scores, np.zeros((4, 3)), targets)


def policy(threshold: float) -> dict:
    rule = {"remove_threshold": 2.0, "review_threshold": threshold}
    return {"version": "p1", "categories": {"x": rule, "y": rule}}


def test_binary_flag_figures() -> None:
    figures = binary_flag_figures(predictions(), categories=["x", "y"], policy=policy(0.75))
    # flagged: a (0.9), b (0.8), d (0.9); positives a, b, d; c is a true negative
    assert figures["confusion_matrix"] == [[1, 0], [0, 3]]
    assert figures["tpr"][0] == 0.0 and figures["tpr"][-1] == 1.0 and figures["fpr"][-1] == 1.0
    assert all(0 <= t <= 1 for t in figures["thresholds"])


def test_category_map_on_common_categories() -> None:
    result = category_map_on(predictions(), model_categories=["y", "x"], categories=["x", "y", "z"])
    assert set(result["per_category_ap"]) == {"x", "y"}
    # the model's columns are in another order: x is column 1 -> scores 0.1, 0.7, 0.3, 0.9 for targets 1,1,0,0:
    # ranked d(0) b(1) c(0) a(1): precision 1/2 and 2/4 at the hits
    assert result["per_category_ap"]["x"] == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_html_report_inlines_the_plots(tmp_path) -> None:
    png = tmp_path / "pr_curves.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    path = write_html_report(path=tmp_path / "r.html", title="t <1>", plots=[png, tmp_path / "missing.png"],
                             candidate={"per_category": {"x": {"ap": 0.5, "positives": 2}}, "category_map": 0.5},
                             production=None, gate={"promote": True, "reason": "no production model yet"})
    text = path.read_text()
    data = re.search(r'src="data:image/png;base64,([^"]+)"', text).group(1)
    assert base64.b64decode(data) == png.read_bytes() and "t &lt;1&gt;" in text and "missing" not in text


def test_k8s_names() -> None:
    assert k8s_name("Pretrain", "2026_11_29") == "pretrain-2026-11-29"
    assert k8s_name("123") == "tw-123"
    long = k8s_name("x" * 100)
    assert len(long) <= 52 and long == k8s_name("x" * 100) and long != k8s_name("x" * 99)
    assert run_id_for("pretrain", "86006311-aaaa") == "pretrain-86006311-aaaa"


def test_gate_refuses_a_model_with_other_categories() -> None:
    refused = decide_promotion(candidate_map=0.9, production_map=0.1, production_version=2, categories_in_common=[])
    assert not refused.promote and "no moderation category in common" in refused.reason
    assert decide_promotion(candidate_map=0.9, production_map=0.1, production_version=2,
                            categories_in_common=["weapons"]).promote


def test_category_map_on_a_subset_keeps_the_dataset_columns() -> None:
    """``only`` picks categories; the target columns stay those of the dataset's order (x=0, y=1)."""
    subset = category_map_on(predictions(), model_categories=["x", "y"], categories=["x", "y"], only=["y"])
    assert set(subset["per_category_ap"]) == {"y"} and subset["category_map"] == pytest.approx(1.0)
