"""The moderation policy: per-category thresholds -> allow / review / remove, with the rule that fired.

Versioned apart from the model so thresholds can change without a new model. The trainer's calibration writes
it (policy.json, tagwatch/schemas/policy.v2.json; v1 files still load: every category acts); the registry keeps it with
the model version it was calibrated for. A category in ``monitor`` mode is scored and its hits are named in the
decision's reasons (``monitor:<category>...``) and counted, but it never changes the action; ``off`` is ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["allow", "review", "remove"]
Mode = Literal["act", "monitor", "off"]
MONITOR_PREFIX = "monitor:"


class CategoryRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    mode: Mode = "act"
    remove_threshold: float | None = Field(default=None, ge=0)  # > 1 means "never remove"
    review_threshold: float | None = Field(default=None, ge=0)
    monitor_threshold: float | None = Field(default=None, ge=0)
    reason: str = ""


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    version: str
    categories: dict[str, CategoryRule]


def decide(scores: dict[str, float], policy: Policy) -> tuple[Action, list[str]]:
    """The strictest action any acting category earns; reasons name each rule that fired, then monitor hits."""
    removes, reviews, monitors = [], [], []
    for category, rule in policy.categories.items():
        score = scores.get(category)
        if score is None or rule.mode == "off":
            continue
        if rule.mode == "monitor":
            if rule.monitor_threshold is not None and score >= rule.monitor_threshold:
                monitors.append(f"{MONITOR_PREFIX}{category}>={rule.monitor_threshold:.3f} ({score:.3f}; not actioned)")
        elif rule.remove_threshold is not None and score >= rule.remove_threshold:
            removes.append(f"policy:{category}>={rule.remove_threshold:.3f} ({score:.3f})")
        elif rule.review_threshold is not None and score >= rule.review_threshold:
            reviews.append(f"policy:{category}>={rule.review_threshold:.3f} ({score:.3f})")
    if removes:
        return "remove", removes + reviews + monitors
    if reviews:
        return "review", reviews + monitors
    return "allow", monitors


def monitor_hits(reasons: list[str]) -> list[str]:
    """The categories a decision's reasons name as monitor hits."""
    return [r[len(MONITOR_PREFIX):].split(">=", 1)[0] for r in reasons if r.startswith(MONITOR_PREFIX)]


def load_policy_file(path: Path) -> Policy:
    """A policy.json file; ConfigError (exit 3) when it is unreadable or not a policy."""
    import json

    from tagwatch.errors import ConfigError

    try:
        return Policy.model_validate(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as error:
        raise ConfigError(f"policy file {path} is unreadable: {str(error)[:200]}",
                          hint="pass the policy.json the transfer step wrote (tagwatch train transfer)") from error
