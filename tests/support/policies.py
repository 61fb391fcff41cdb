"""Policy documents for policy-version tests: a valid policy.v2.json body with the thresholds a test chooses."""

from __future__ import annotations

from typing import Any


def policy_document(categories, *, review: float = 0.5, remove: float = 0.9, mode: str = "act",
                    version: str = "hand-1") -> dict[str, Any]:
    rule = {"mode": mode, "reason": "set by the test", "remove_threshold": remove, "review_threshold": review,
            "positives": 0, "negatives": 0}
    return {
        "schema_version": 2, "version": version, "created_at": "2026-01-01T00:00:00+00:00",
        "model": {"run_id": "run-0"}, "calibration": {"split": "val", "images": 0},
        "constraints": {"review_budget": 0.05, "remove_precision": 0.95, "confidence": 0.95, "min_positives": 10},
        "categories": {c: dict(rule) for c in categories},
    }
