"""The moderation policy: per-category thresholds -> allow / review / remove, with the rule that fired.

Versioned apart from the model so thresholds can change without a new model. The trainer's calibration writes
it (policy.json); the registry keeps it with the model version it was calibrated for.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["allow", "review", "remove"]


class CategoryRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    remove_threshold: float | None = Field(default=None, ge=0)  # > 1 means "never remove"
    review_threshold: float | None = Field(default=None, ge=0)


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    version: str
    categories: dict[str, CategoryRule]


def decide(scores: dict[str, float], policy: Policy) -> tuple[Action, list[str]]:
    """The strictest action any category earns; reasons name each rule that fired."""
    removes, reviews = [], []
    for category, rule in policy.categories.items():
        score = scores.get(category)
        if score is None:
            continue
        if rule.remove_threshold is not None and score >= rule.remove_threshold:
            removes.append(f"policy:{category}>={rule.remove_threshold:.3f} ({score:.3f})")
        elif rule.review_threshold is not None and score >= rule.review_threshold:
            reviews.append(f"policy:{category}>={rule.review_threshold:.3f} ({score:.3f})")
    if removes:
        return "remove", removes + reviews
    if reviews:
        return "review", reviews
    return "allow", []
