"""The versioned policy file (``policy.json``, packaged schema ``policy.v2.json``) built from calibration scores by
the constrained calibrator (``operating_points.py``: review budget, confidence-bounded auto-removal, monitor mode).
The moderation consumers read it: per category in mode ``act``, score >= remove_threshold -> remove, else score >=
review_threshold -> review; a ``monitor`` category is scored and counted, never actioned; ``off`` is ignored.
Thresholds apply to ``category_scores`` (sigmoid outputs) of the model the policy names.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np

from tagwatch.train.operating_points import NEVER, Constraints, calibrate

POLICY_SCHEMA_VERSION = 2
__all__ = ["NEVER", "POLICY_SCHEMA_VERSION", "build_policy", "decide", "validate_policy"]


def build_policy(*, scores: np.ndarray, targets: np.ndarray, category_names: list[str], model: dict[str, Any],
                 calibration: dict[str, Any], version: str, constraints: Constraints = Constraints(),
                 weights: np.ndarray | None = None, severity: dict[str, float] | None = None,
                 not_moderated: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The policy document. ``not_moderated``: categories that are never actioned (the data build's "other" = no
    moderation category applies), mode ``off``. ``weights``: population weight per calibration post (see
    ``operating_points``); ``calibration`` says where the scores came from and is stored as given."""
    points = calibrate(scores, targets, category_names, constraints=constraints, weights=weights, severity=severity,
                       not_moderated=not_moderated)
    return {
        "schema_version": POLICY_SCHEMA_VERSION,
        "version": version,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "model": model,
        "calibration": calibration,
        "constraints": points["constraints"],
        "expected": points["expected"],
        "decision_rule": "per category in mode act: remove if score >= remove_threshold, else review if score >= "
                         "review_threshold; the strictest action wins; monitor categories are recorded, never actioned",
        "categories": points["categories"],
    }


def decide(scores: np.ndarray, *, remove_threshold: float, review_threshold: float) -> np.ndarray:
    """0 allow, 1 review, 2 remove, per score."""
    return np.where(scores >= remove_threshold, 2, np.where(scores >= review_threshold, 1, 0))


def validate_policy(policy: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless ``policy`` matches its packaged schema (policy.v<schema_version>.json
    in ``tagwatch.schemas``)."""
    import jsonschema

    from tagwatch.schemas import load_schema

    version = policy.get("schema_version", 1) if isinstance(policy, dict) else 1
    jsonschema.validate(policy, load_schema(f"policy.v{version if version in (1, 2, 3) else 3}.json"))
