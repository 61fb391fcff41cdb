"""Transfer (linear probe and fine-tune on the moderation categories), threshold calibration to policy.json, and
the evaluation report, on the in-memory synthetic dataset (no S3)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

from tagwatch.schemas import load_schema
from tagwatch.train.evaluate import average_precision, mean_average_precision
from tagwatch.train.policy import decide
from tagwatch.train.pretrain import main as pretrain
from tagwatch.train.transfer import main as transfer

SCHEMA = load_schema("policy.v2.json")
COMMON = ["--dataset", "synthetic:192", "--batch-size", "16", "--threads", "1", "--no-progress", "--workers", "0"]


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGWATCH_PATHS__STATE_DIR", str(tmp_path / "state"))
    torch.set_num_threads(1)


def test_average_precision_matches_hand_computation() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([1, 0, 1, 0])
    assert average_precision(scores, labels) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert np.isnan(average_precision(scores, np.zeros(4)))
    assert mean_average_precision(np.c_[scores, scores], np.c_[labels, np.zeros(4)]) == (pytest.approx(5 / 6), 1)


def test_vectorised_decide() -> None:
    assert list(decide(np.array([0.1, 0.5, 0.9]), remove_threshold=0.8, review_threshold=0.4)) == [0, 1, 2]


def test_pretrain_then_probe_and_finetune_write_policy_and_report(tmp_path: Path) -> None:
    pretrain([*COMMON, "--image-size", "48", "--width", "8", "--steps", "30", "--lr", "0.05", "--calibrate-steps", "0",
              "--no-evaluate", "--run-id", "pre", "--checkpoint-root", str(tmp_path / "ck"), "--output-dir", str(tmp_path / "pre")])
    for mode in ("probe", "finetune"):
        result = transfer([*COMMON, "--init", str(tmp_path / "ck" / "pre"), "--mode", mode, "--steps", "25", "--lr", "0.05",
                           "--run-id", f"tr-{mode}", "--checkpoint-root", str(tmp_path / "ck"),
                           "--output-dir", str(tmp_path / mode)])
        policy = json.loads((tmp_path / mode / "policy.json").read_text())
        jsonschema.validate(policy, SCHEMA)
        assert policy["model"]["run_id"] == f"tr-{mode}" and set(policy["categories"]) == {"weapons", "violence", "drugs"}
        assert json.loads((tmp_path / "ck" / f"tr-{mode}" / "policy.json").read_text()) == policy
        for rule in policy["categories"].values():
            assert rule["review_threshold"] <= rule["remove_threshold"]
        metrics = json.loads((tmp_path / mode / "holdout" / "metrics.json").read_text())
        assert metrics["category_map"] > metrics["chance_category_map"]
        figures = metrics["figures"]  # the policy's figures with CIs (train/figures.py), as the gate computes them
        assert figures["posts"] == 24 and set(figures["categories"]) == {"weapons", "violence", "drugs"}
        assert metrics["review_rate"] == figures["review_rate"]["value"] and metrics["review_budget"] == 0.05
        assert {"value", "low", "high"} <= set(figures["recall_at_budget"])
        assert metrics["moderation_map"] == figures["moderation_map"]
        assert (tmp_path / mode / "holdout" / "pr_curves.png").stat().st_size > 1000
        assert (tmp_path / mode / "holdout" / "confusion.png").stat().st_size > 1000
        assert result["holdout"]["images"] == 24
        assert metrics["duplicates_counted_wrong"] == 2  # the synthetic dedup report names 2 holdout posts
        assert metrics["hashtag_map_lower_bound"] <= metrics["hashtag_map"]
    pre = torch.load(tmp_path / "ck" / "pre" / "step-0000030.pt", weights_only=False)
    probe = torch.load(tmp_path / "ck" / "tr-probe" / "step-0000025.pt", weights_only=False)
    assert torch.equal(pre["model"]["backbone.features.0.weight"], probe["model"]["backbone.features.0.weight"])
    assert torch.equal(pre["model"]["backbone.features.1.running_mean"], probe["model"]["backbone.features.1.running_mean"])
    assert probe["model_config"]["num_categories"] == 3 and probe["model_config"]["preset"]["crop"] == 48
