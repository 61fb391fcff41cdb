"""Evaluation report files: ``metrics.json``, ``pr_curves.png`` (per category, thresholds marked) and
``confusion.png`` (per category: actual negative/positive x decision allow/review/remove).

``metrics.json`` carries the policy's figures with confidence intervals (``figures``: ``train/figures.py``,
population-weighted with the dataset's split rates) and, beside them, the older flat keys that other code reads:
``per_category`` (AP, prevalence, precision/recall of the flags as counted on the split), ``category_map`` (mean AP
over every category with a positive, ``other`` included: kept for old readers, not a moderation figure) and
``moderation_map`` (the one to quote: mean AP over acting moderation categories with enough positives).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tagwatch.train.evaluate import Predictions, average_precision, hashtag_metrics, precision_recall_curve
from tagwatch.stats import weighted_proportion
from tagwatch.train.figures import policy_actions, policy_figures, rule_flags
from tagwatch.train.population import moderation_positive, split_weights

DECISIONS = ("allow", "review", "remove")
NEVER_SCORE = 1.0 + 1e-6  # above every sigmoid: no marker
OTHER = "other"  # the data build's "no moderation category applies": never a moderation figure


def category_metrics(predictions: Predictions, *, category_names: list[str], policy: dict[str, Any]) -> dict[str, Any]:
    """Per-category AP, prevalence (= chance AP) and precision/recall of remove and review at the policy's thresholds."""
    out: dict[str, Any] = {}
    review_flags, remove_flags = rule_flags(policy, predictions.category_scores, category_names)
    for c, name in enumerate(category_names):
        scores, labels = predictions.category_scores[:, c], predictions.category_targets[:, c].astype(bool)
        decisions = np.where(remove_flags[:, c], 2, np.where(review_flags[:, c], 1, 0))  # monitor/off: never
        confusion = [[int(((decisions == d) & (labels == actual)).sum()) for d in range(3)] for actual in (False, True)]
        removed, flagged = decisions == 2, decisions >= 1
        out[name] = {
            "ap": average_precision(scores, labels), "prevalence": float(labels.mean()) if len(labels) else float("nan"),
            "positives": int(labels.sum()), "images": int(len(labels)),
            "remove_precision": _ratio((removed & labels).sum(), removed.sum()),
            "remove_recall": _ratio((removed & labels).sum(), labels.sum()),
            "review_or_remove_precision": _ratio((flagged & labels).sum(), flagged.sum()),
            "review_or_remove_recall": _ratio((flagged & labels).sum(), labels.sum()),
            "confusion": {"rows": ["actual_negative", "actual_positive"], "columns": list(DECISIONS), "counts": confusion},
        }
    aps = [m["ap"] for m in out.values() if m["ap"] == m["ap"]]
    prevalences = [m["prevalence"] for m in out.values() if m["ap"] == m["ap"]]
    return {"per_category": out, "category_map": float(np.mean(aps)) if aps else float("nan"),
            "chance_category_map": float(np.mean(prevalences)) if prevalences else float("nan")}


def split_figures(*, policy: dict[str, Any], scores: np.ndarray, targets: np.ndarray, names: list[str],
                  manifest: Any = None, split: str = "holdout", positive: np.ndarray | None = None,
                  seed: int = 0) -> dict[str, Any]:
    """``policy_figures`` of ``policy`` on one split's posts, weighted to natural traffic with the dataset
    manifest's split rates (as sampled when it has none), plus ``chance_moderation_map`` beside the mAP and
    ``recall_at_budget``: the share of moderation-positive posts (in any moderation category, not only acting
    ones) the policy sends to review or remove (what the promotion gate compares).
    ``positive``: which posts the build counted as moderation-positive (default: from ``targets``; pass it when
    ``names`` are only some of the dataset's categories, so the weights stay the dataset's)."""
    positive = moderation_positive(targets, names, OTHER) if positive is None else positive
    weights, population = split_weights(manifest, [split] * len(scores), positive)
    figures = policy_figures(policy=policy, scores=scores, targets=targets, names=names, weights=weights,
                             population=population, seed=seed)
    caught = policy_actions(policy, scores, names) >= 1
    figures["recall_at_budget"] = weighted_proportion(caught[positive], None,
                                                      confidence=figures["confidence"]).to_dict()
    chances = [figures["categories"][n]["chance"] for n in figures["moderation_map_categories"]]
    figures["chance_moderation_map"] = float(np.mean(chances)) if chances else None
    return figures


def write_report(predictions: Predictions, *, category_names: list[str], policy: dict[str, Any], out_dir: Path,
                 split: str, duplicates: set[str] | None = None, extra: dict[str, Any] | None = None,
                 manifest: Any = None) -> dict[str, Any]:
    """Write metrics.json and the plots for ``predictions`` of ``split``; ``manifest``: the dataset's (its split
    rates weight the figures to natural traffic)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = split_figures(policy=policy, scores=predictions.category_scores, targets=predictions.category_targets,
                            names=category_names, manifest=manifest, split=split)
    metrics = {"split": split, **category_metrics(predictions, category_names=category_names, policy=policy),
               "moderation_map": figures["moderation_map"], "chance_moderation_map": figures["chance_moderation_map"],
               "review_rate": figures["review_rate"]["value"], "review_budget": figures["review_budget"],
               "figures": figures, **hashtag_metrics(predictions, duplicates=duplicates), **(extra or {})}
    metrics = clean_json(metrics)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    plot_pr_curves(predictions, category_names=category_names, policy=policy, path=out_dir / "pr_curves.png")
    plot_confusion(metrics["per_category"], path=out_dir / "confusion.png")
    return metrics


def plot_pr_curves(predictions: Predictions, *, category_names: list[str], policy: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(category_names), figsize=(4 * len(category_names), 3.6), squeeze=False)
    for c, name in enumerate(category_names):
        axis = axes[0][c]
        scores, labels = predictions.category_scores[:, c], predictions.category_targets[:, c]
        if labels.sum() > 0:
            precision, recall, thresholds = precision_recall_curve(scores, labels)
            axis.plot(recall, precision, drawstyle="steps-post")
            for key, marker in (("remove_threshold", "rv"), ("review_threshold", "o")):
                rule = policy["categories"][name]
                threshold = rule[key] if rule.get("mode", "act") == "act" else NEVER_SCORE
                at = np.flatnonzero(thresholds >= threshold)
                if len(at):
                    axis.plot(recall[at.max()], precision[at.max()], marker, label=key.split("_")[0])
            axis.axhline(labels.mean(), linestyle=":", color="grey", label="chance")
            axis.legend(loc="lower left", fontsize=7)
        axis.set_title(f"{name} (AP {average_precision(scores, labels):.2f})", fontsize=9)
        axis.set_xlabel("recall")
        axis.set_ylabel("precision")
        axis.set_xlim(0, 1.02)
        axis.set_ylim(0, 1.02)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def plot_confusion(per_category: dict[str, Any], *, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_category)
    figure, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 2.8), squeeze=False)
    for i, name in enumerate(names):
        counts = np.array(per_category[name]["confusion"]["counts"])
        axis = axes[0][i]
        axis.imshow(counts, cmap="Blues")
        for (row, column), value in np.ndenumerate(counts):
            axis.text(column, row, str(value), ha="center", va="center")
        axis.set_xticks(range(3), DECISIONS)
        axis.set_yticks(range(2), ["neg", "pos"])
        axis.set_title(name, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _ratio(numerator: Any, denominator: Any) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def clean_json(value: Any) -> Any:
    """NaN -> None (strict JSON), numpy scalars -> Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
