"""The promotion gate (review budget, recall at the budget vs production with a paired CI, opt-in mAP margin), the
Kubeflow UI figures and the HTML report of the evaluate step, on constructed figures and scores."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from tagwatch.pipeline.comparison import (Scored, compare_with_production, holdout_positive, kfp_metrics, line_up,
                                          model_figures)
from tagwatch.pipeline.evaluation import binary_flag_figures, write_html_report
from tagwatch.pipeline.gate import Comparison, decide_promotion
from tagwatch.pipeline.steps import k8s_name, run_id_for
from tagwatch.train.evaluate import Predictions


def rate(value: float, low: float | None = None, high: float | None = None) -> dict:
    return {"value": value, "low": value if low is None else low, "high": value if high is None else high, "n": 500}


def comparison(difference: dict | None, *, common=("weapons",), candidate_map=0.6, production_map=0.5,
               production_recall: dict | None = None) -> Comparison:
    return Comparison(production_version=3, categories_in_common=list(common), positives=60,
                      candidate_recall=rate(0.7, 0.57, 0.8),
                      production_recall=production_recall or rate(0.68, 0.55, 0.78),
                      recall_difference=difference, candidate_map=candidate_map, production_map=production_map,
                      map_categories=list(common))


def test_within_budget_and_not_worse_beyond_the_ci_promotes() -> None:
    # the candidate's recall is a little lower, but the CI of the difference reaches above 0: not worse beyond noise
    decision = decide_promotion(review_rate=rate(0.041, 0.03, 0.055), review_budget=0.05,
                                comparison=comparison(rate(-0.02, -0.08, 0.04)))
    assert decision.promote
    assert "within its policy's review budget of 5.0 %" in decision.reason
    assert "4.1 % (95 % CI 3.0 % to 5.5 %)" in decision.reason  # numbers and CIs in the sentence
    assert "not worse beyond the CI" in decision.reason and "-0.080" in decision.reason
    assert "(information only)" in decision.reason  # mAP: said, not decided on
    assert len(decision.checks) == 3 and decision.to_dict()["production_version"] == 3


def test_a_review_rate_over_budget_is_refused_with_or_without_production() -> None:
    over = decide_promotion(review_rate=rate(0.072, 0.059, 0.088), review_budget=0.05,
                            comparison=comparison(rate(0.1, 0.05, 0.15)))
    assert not over.promote and "over, beyond the CI, its policy's review budget of 5.0 %" in over.reason
    assert "never promoted" in over.reason
    first = decide_promotion(review_rate=rate(0.072, 0.059, 0.088), review_budget=0.05, comparison=None)
    assert not first.promote and "never promoted" in first.reason  # even as the first model
    # over by the point estimate, but the budget is inside the CI: noise, not a broken budget
    noisy = decide_promotion(review_rate=rate(0.062, 0.049, 0.078), review_budget=0.05, comparison=None)
    assert noisy.promote and "over, but within the noise of, its policy's review budget" in noisy.reason
    # exactly at the budget is within it
    assert decide_promotion(review_rate=rate(0.05), review_budget=0.05, comparison=None).promote
    # no stated budget, or nothing measured: refused, not guessed
    assert not decide_promotion(review_rate=rate(0.01), review_budget=None, comparison=None).promote
    assert not decide_promotion(review_rate={"value": None}, review_budget=0.05, comparison=None).promote


def test_recall_significantly_worse_is_refused() -> None:
    decision = decide_promotion(review_rate=rate(0.03), review_budget=0.05,
                                comparison=comparison(rate(-0.15, -0.24, -0.06), candidate_map=0.9))
    assert not decision.promote
    assert "catches fewer harmful posts than production, beyond the CI" in decision.reason
    assert "production v3" in decision.reason and "60 posts" in decision.reason


def test_no_production_promotes_iff_within_budget() -> None:
    promoted = decide_promotion(review_rate=rate(0.02, 0.01, 0.04), review_budget=0.05, comparison=None)
    assert promoted.promote and promoted.reason.startswith("no production model yet")
    assert promoted.production_version is None
    assert not decide_promotion(review_rate=rate(0.051), review_budget=0.05, comparison=None).promote


def test_not_comparable_or_unmeasurable_production() -> None:
    other_scheme = decide_promotion(review_rate=rate(0.02), review_budget=0.05,
                                    comparison=comparison(rate(0.0), common=()))
    assert not other_scheme.promote and "no moderation category in common" in other_scheme.reason
    no_positives = decide_promotion(review_rate=rate(0.02), review_budget=0.05, comparison=comparison(None))
    assert not no_positives.promote and "no moderation-positive post" in no_positives.reason
    no_policy = Comparison(3, ["weapons"], 60, rate(0.7), None, None, 0.6, 0.5, ["weapons"])
    decision = decide_promotion(review_rate=rate(0.02), review_budget=0.05, comparison=no_policy)
    assert decision.promote and "has no policy" in decision.reason


def test_the_map_margin_is_opt_in() -> None:
    same = comparison(rate(0.0), candidate_map=0.52, production_map=0.5)
    assert decide_promotion(review_rate=rate(0.02), review_budget=0.05, comparison=same).promote
    margin = decide_promotion(review_rate=rate(0.02), review_budget=0.05, comparison=same, min_improvement=0.05)
    assert not margin.promote and "does not beat production v3 by more than 0.05" in margin.reason
    assert decide_promotion(review_rate=rate(0.02), review_budget=0.05, min_improvement=0.05,
                            comparison=comparison(rate(0.0), candidate_map=0.7, production_map=0.5)).promote
    assert not decide_promotion(review_rate=rate(0.02), review_budget=0.05, min_improvement=0.05,
                                comparison=comparison(rate(0.0), candidate_map=None)).promote


def policy(threshold: float, *, modes: dict[str, str] | None = None, budget: float = 0.5) -> dict:
    modes = {"other": "off", **(modes or {})}  # as the calibrator writes it: `other` is never actioned

    def rule(name: str) -> dict:
        mode = modes.get(name, "act")
        return {"mode": mode, "reason": f"{name} {mode}", "remove_threshold": 2.0,
                "review_threshold": threshold if mode == "act" else 2.0}

    return {"version": "p1", "constraints": {"review_budget": budget, "confidence": 0.95, "min_positives": 1},
            "categories": {name: rule(name) for name in ("x", "y", "other")}}


def scored() -> Scored:
    scores = np.array([[0.9, 0.1, 0.1], [0.8, 0.7, 0.1], [0.2, 0.3, 0.9], [0.1, 0.9, 0.1], [0.1, 0.1, 0.8]])
    targets = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]]) > 0
    return Scored(["x", "y", "other"], scores, targets)


def test_classification_metrics_never_count_other() -> None:
    """Posts only in `other` (c, e) are negatives, even with a high `other` score (before, every holdout post was
    "positive" because `other` counted)."""
    figures = binary_flag_figures(scored(), policy=policy(0.75))
    # flagged: a (x 0.9), b (x 0.8), d (y 0.9); positives a, b, d; c and e are true negatives
    assert figures["confusion_matrix"] == [[2, 0], [0, 3]]
    assert figures["categories"] == ["x", "y"] and figures["positives"] == 3 and figures["images"] == 5
    assert figures["tpr"][0] == 0.0 and figures["tpr"][-1] == 1.0 and figures["fpr"][-1] == 1.0
    assert all(0 <= t <= 1 for t in figures["thresholds"])
    # a monitored category's posts are labelled positive, but never predicted positive
    monitored = binary_flag_figures(scored(), policy=policy(0.75, modes={"y": "monitor"}))
    assert monitored["confusion_matrix"] == [[2, 0], [1, 2]]


def test_line_up_reorders_a_models_columns() -> None:
    predictions = Predictions(list("abcde"), np.zeros((5, 2)), scored().scores[:, [1, 0]],
                              np.zeros((5, 2)), scored().targets[:, :3].astype(np.float32))
    lined = line_up(predictions, model_categories=["y", "x"], categories=["x", "y", "other"])
    assert lined.names == ["x", "y"] and np.allclose(lined.scores, scored().scores[:, :2])


def test_figures_comparison_and_metrics_on_the_same_posts() -> None:
    candidate = scored()
    positive = holdout_positive(candidate.targets, candidate.names)
    assert positive.tolist() == [True, True, False, True, False]
    figures, caught = model_figures(candidate, policy=policy(0.75), positive=positive, manifest=None)
    assert figures["recall_at_budget"]["value"] == pytest.approx(1.0)
    weaker, weaker_caught = model_figures(candidate, policy=policy(0.85), positive=positive, manifest=None)
    assert weaker["recall_at_budget"]["value"] == pytest.approx(2 / 3)  # b (0.8) no longer caught
    compared = compare_with_production(candidate=candidate, candidate_figures=figures, candidate_caught=caught,
                                       production=candidate, production_figures=weaker,
                                       production_caught=weaker_caught, production_version=1, positive=positive)
    assert compared.categories_in_common == ["x", "y"] and compared.positives == 3
    assert compared.recall_difference["value"] == pytest.approx(1 / 3)
    gate = decide_promotion(review_rate=figures["review_rate"], review_budget=0.5, comparison=compared).to_dict()
    metrics = kfp_metrics(figures, gate=gate, production=weaker)
    assert metrics["x_mode"] == 2 and metrics["other_mode"] == 0
    for key in ("review_rate", "review_rate_low", "review_rate_high", "recall", "recall_low", "moderation_map",
                "x_ap", "x_ap_low", "x_ap_high", "x_precision_low", "x_recall_high", "production_recall",
                "recall_difference_high", "gate_promote", "holdout_posts"):
        assert key in metrics, key
    assert all(isinstance(v, float) for v in metrics.values())


def test_html_report_shows_cis_and_the_gate_reasoning(tmp_path) -> None:
    png = tmp_path / "pr_curves.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    figures, _ = model_figures(scored(), policy=policy(0.75), positive=np.array([1, 1, 0, 1, 0], bool), manifest=None)
    gate = decide_promotion(review_rate=figures["review_rate"], review_budget=0.6, comparison=None).to_dict()
    path = write_html_report(path=tmp_path / "r.html", title="t <1>", plots=[png, tmp_path / "missing.png"],
                             candidate=figures, production=None, gate=gate)
    text = path.read_text()
    data = re.search(r'src="data:image/png;base64,([^"]+)"', text).group(1)
    assert base64.b64decode(data) == png.read_bytes() and "t &lt;1&gt;" in text and "missing" not in text
    assert "no production model yet" in text and "<li>" in text  # the reasoning, one line per check
    assert re.search(r"<td>x</td><td>act</td><td>2</td>.*\[\d\.\d{3}, \d\.\d{3}\]", text)  # AP with its CI


def test_k8s_names() -> None:
    assert k8s_name("Pretrain", "2026_11_29") == "pretrain-2026-11-29"
    assert k8s_name("123") == "tw-123"
    long = k8s_name("x" * 100)
    assert len(long) <= 52 and long == k8s_name("x" * 100) and long != k8s_name("x" * 99)
    assert run_id_for("pretrain", "86006311-aaaa") == "pretrain-86006311-aaaa"
