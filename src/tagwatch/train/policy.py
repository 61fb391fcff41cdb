"""Per-category threshold calibration and the versioned policy file (``policy.json``, schema
``schemas/policy.v1.json``). The moderation consumers read it: score >= remove_threshold -> remove, else
score >= review_threshold -> review, else allow. Thresholds apply to ``category_scores`` (sigmoid outputs) of the
model the policy names; a policy can be recalibrated without a new model.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np

from tagwatch.train.evaluate import precision_recall_curve

POLICY_SCHEMA_VERSION = 1
NEVER = 1.0 + 1e-6  # a threshold no sigmoid score reaches: the action is never taken


def calibrate_category(scores: np.ndarray, labels: np.ndarray, *, target_precision: float, target_recall: float) -> dict[str, Any]:
    """remove: the lowest threshold whose precision >= target (most recall at that precision);
    review: the highest threshold whose recall >= target (most precision at that recall), never above remove."""
    labels = labels.astype(bool)
    positives = int(labels.sum())
    precision, recall, thresholds = precision_recall_curve(scores, labels)
    out: dict[str, Any] = {"positives": positives, "negatives": int(len(labels) - positives),
                           "target_precision": target_precision, "target_recall": target_recall}
    ok_precision = np.flatnonzero(precision >= target_precision) if positives else np.array([], dtype=int)
    if len(ok_precision):
        i = int(ok_precision.max())  # thresholds descend, so the largest index is the lowest threshold
        out.update(remove_threshold=float(thresholds[i]), achieved_precision=float(precision[i]),
                   remove_recall=float(recall[i]), remove_achievable=True)
    else:
        out.update(remove_threshold=NEVER, achieved_precision=None, remove_recall=0.0, remove_achievable=False)
    ok_recall = np.flatnonzero(recall >= target_recall) if positives else np.array([], dtype=int)
    if len(ok_recall):
        j = int(ok_recall.min())
        review = min(float(thresholds[j]), out["remove_threshold"])
        out.update(review_threshold=review, achieved_recall=float(recall[j]), review_precision=float(precision[j]),
                   review_achievable=True)
    else:
        out.update(review_threshold=out["remove_threshold"], achieved_recall=None, review_precision=None,
                   review_achievable=False)
    return out


def build_policy(*, scores: np.ndarray, targets: np.ndarray, category_names: list[str], target_precision: float,
                 target_recall: float, model: dict[str, Any], calibration: dict[str, Any], version: str,
                 never_flag: frozenset[str] = frozenset(), min_positives: int = 1) -> dict[str, Any]:
    """``never_flag``: categories that must never review or remove (the data build's "other" = no moderation
    category applies): their thresholds are NEVER, their calibration figures are kept for the record.
    ``min_positives``: a category with fewer calibration positives gets NEVER too (one or two examples cannot
    place a threshold: "recall >= 0.8" of a single low-scoring positive flags nearly every post)."""
    categories = {
        name: calibrate_category(scores[:, c], targets[:, c], target_precision=target_precision,
                                 target_recall=target_recall)
        for c, name in enumerate(category_names)
    }
    too_few = {name for name, figures in categories.items() if figures["positives"] < min_positives}
    for name in (never_flag | too_few) & set(categories):
        categories[name].update(remove_threshold=NEVER, review_threshold=NEVER, remove_achievable=False,
                                review_achievable=False)
    return {
        "schema_version": POLICY_SCHEMA_VERSION,
        "version": version,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "model": model,
        "calibration": calibration,
        "decision_rule": "remove if score >= remove_threshold, else review if score >= review_threshold, else allow",
        "categories": categories,
    }


def decide(scores: np.ndarray, *, remove_threshold: float, review_threshold: float) -> np.ndarray:
    """0 allow, 1 review, 2 remove, per score."""
    return np.where(scores >= remove_threshold, 2, np.where(scores >= review_threshold, 1, 0))


def validate_policy(policy: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless ``policy`` matches schemas/policy.v1.json."""
    import json
    from pathlib import Path

    import jsonschema

    schema_path = Path(__file__).resolve().parents[3] / "schemas" / "policy.v1.json"
    jsonschema.validate(policy, json.loads(schema_path.read_text()))
