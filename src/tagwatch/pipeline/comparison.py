"""Candidate and production on the same holdout, each with its own policy: the figures the gate decides on.

Each model's scores are lined up with the dataset's category columns (a model may lack some, or order them
differently); figures are ``train/figures.py``'s, weighted to natural traffic with the dataset's split rates.
"Recall at the budget" is measured on every moderation-positive holdout post (in any moderation category of the
dataset; ``other`` is the complement of them, never one): the share its policy sends to review or remove. Both
models are measured on exactly the same posts, so the difference gets a paired bootstrap CI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tagwatch.pipeline.gate import OTHER, Comparison
from tagwatch.stats import paired_difference
from tagwatch.train.evaluate import Predictions, average_precision
from tagwatch.train.figures import policy_actions
from tagwatch.train.population import moderation_positive
from tagwatch.train.report import split_figures


@dataclass(frozen=True)
class Scored:
    """One model's holdout scores on the dataset's categories it has (``names``, in the dataset's order)."""

    names: list[str]
    scores: np.ndarray  # [N, K] the model's columns for ``names``
    targets: np.ndarray  # [N, K] the dataset's columns for ``names``


def line_up(predictions: Predictions, *, model_categories: list[str], categories: list[str]) -> Scored:
    """``predictions`` (the model's columns = ``model_categories``; targets = the dataset's ``categories``) on
    the dataset categories the model has."""
    names = [name for name in categories if name in model_categories]
    scores = predictions.category_scores[:, [model_categories.index(n) for n in names]]
    targets = predictions.category_targets[:, [categories.index(n) for n in names]]
    return Scored(names, np.asarray(scores, dtype=float), np.asarray(targets) > 0)


def model_figures(scored: Scored, *, policy: dict[str, Any], positive: np.ndarray, manifest: Any,
                  split: str = "holdout") -> tuple[dict[str, Any], np.ndarray]:
    """``policy_figures`` of one model with its policy, plus ``recall_at_budget``: the share of ``positive``
    posts (moderation-positive in the dataset) its policy sends to review or remove; and that "caught" flag per
    post (review or remove)."""
    figures = split_figures(policy=policy, scores=scored.scores, targets=scored.targets, names=scored.names,
                            manifest=manifest, split=split, positive=positive)
    return figures, policy_actions(policy, scored.scores, scored.names) >= 1


def holdout_positive(targets: np.ndarray, categories: list[str]) -> np.ndarray:
    """Posts in at least one moderation category of the dataset (``other`` never counts)."""
    return moderation_positive(np.asarray(targets), categories, OTHER)


def compare_with_production(*, candidate: Scored, candidate_figures: dict[str, Any], candidate_caught: np.ndarray,
                            production: Scored, production_figures: dict[str, Any] | None,
                            production_caught: np.ndarray | None, production_version: int, positive: np.ndarray,
                            seed: int = 0) -> Comparison:
    """The gate's view of candidate vs production (``production_figures`` None: production has no policy)."""
    common = [n for n in candidate.names if n != OTHER and n in production.names]
    map_categories = [n for n in candidate_figures["moderation_map_categories"] if n in common]
    candidate_map = _mean_ap(candidate, map_categories)
    production_map = _mean_ap(production, map_categories)
    if production_figures is None or production_caught is None:
        return Comparison(production_version, common, int(positive.sum()), candidate_figures["recall_at_budget"],
                          None, None, candidate_map, production_map, map_categories)
    difference = paired_difference(candidate_caught, production_caught, positive,
                                   confidence=candidate_figures["confidence"], seed=seed).to_dict()
    return Comparison(production_version, common, int(positive.sum()), candidate_figures["recall_at_budget"],
                      production_figures["recall_at_budget"], difference, candidate_map, production_map,
                      map_categories)


def _mean_ap(scored: Scored, names: list[str]) -> float | None:
    values = [average_precision(scored.scores[:, scored.names.index(n)], scored.targets[:, scored.names.index(n)])
              for n in names]
    values = [v for v in values if v == v]
    return float(np.mean(values)) if values else None


MODE_CODES = {"act": 2, "monitor": 1, "off": 0, "absent": -1}  # KFP Metrics takes scalars only


def kfp_metrics(figures: dict[str, Any], *, gate: dict[str, Any] | None = None,
                production: dict[str, Any] | None = None) -> dict[str, float]:
    """The scalars of the Kubeflow UI's Metrics artifact: overall rates and recall with CI bounds (``_low`` /
    ``_high``), the moderation mAP, and per category ``<name>_ap`` (+CI), ``_precision`` / ``_recall`` at the
    operating point (+CI), ``_review_rate``, ``_remove_precision``, ``_chance``, ``_positives`` and ``_mode``
    (2 act, 1 monitor, 0 off). ``None`` values are left out."""
    out: dict[str, float | None] = {"holdout_posts": figures["posts"], "review_budget": figures.get("review_budget"),
                                    "moderation_map": figures.get("moderation_map"),
                                    "chance_moderation_map": figures.get("chance_moderation_map")}
    for key in ("review_rate", "remove_rate", "remove_precision"):
        _estimate(out, key, figures.get(key))
    _estimate(out, "recall", figures.get("recall_at_budget"))
    for name, entry in figures["categories"].items():
        out[f"{name}_mode"] = MODE_CODES.get(entry["mode"], -1)
        out[f"{name}_positives"] = entry["positives"]
        out[f"{name}_chance"] = entry.get("chance")
        _estimate(out, f"{name}_ap", entry.get("ap"))
        for key in ("precision", "recall", "review_rate", "remove_precision"):
            _estimate(out, f"{name}_{key}", entry.get(key))
    if production is not None:
        out["production_moderation_map"] = (gate or {}).get("production_map")
        _estimate(out, "production_recall", production.get("recall_at_budget"))
        _estimate(out, "production_review_rate", production.get("review_rate"))
    if gate is not None:
        out["gate_promote"] = 1.0 if gate.get("promote") else 0.0
        _estimate(out, "recall_difference", gate.get("recall_difference"))
    return {k: float(v) for k, v in out.items() if v is not None and v == v}


def _estimate(out: dict[str, Any], name: str, estimate: dict[str, Any] | None) -> None:
    if not estimate:
        return
    for suffix, key in (("", "value"), ("_low", "low"), ("_high", "high")):
        out[f"{name}{suffix}"] = estimate.get(key)
