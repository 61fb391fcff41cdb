"""The moderation policy: per-category rules over every signal -> allow / review / remove, and the rule that fired.

Versioned apart from the model so thresholds can change without a new model. The trainer's calibration writes
it (policy.json, tagwatch/schemas/policy.v2.json; v1 files still load: every category acts); the registry keeps it with
the model version it was calibrated for. A category in ``monitor`` mode is scored and its hits are named in the
decision's reasons (``monitor:<category>...``) and counted, but it never changes the action; ``off`` is ignored.

One policy over all signals (moderation/signals/, docs/policy.md): a rule reads the image model's score of its
category, or with ``inputs`` (policy.v3) the highest of named signal scores (``caption.offensive:offensive_text``,
``image:violence``, ``bank:terrorism``). A hash-bank match takes its entry's action (remove or review) unless the
policy puts the entry's category in ``monitor`` or ``off``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["allow", "review", "remove"]
Mode = Literal["act", "monitor", "off"]
MONITOR_PREFIX = "monitor:"
IMAGE_SIGNAL = "image"


class CategoryRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    mode: Mode = "act"
    remove_threshold: float | None = Field(default=None, ge=0)  # > 1 means "never remove"
    review_threshold: float | None = Field(default=None, ge=0)
    monitor_threshold: float | None = Field(default=None, ge=0)
    reason: str = ""
    # "signal:score" references, the rule's score being the highest present; empty: the image model's score of
    # this category (every policy before v3)
    inputs: tuple[str, ...] = ()


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    version: str
    categories: dict[str, CategoryRule]


def decide(scores: dict[str, float], policy: Policy, *, signals=(), bank_hit=None,
           defaults: dict[str, CategoryRule] | None = None) -> tuple[Action, list[str]]:
    """The strictest action any acting category earns; reasons name each rule that fired, then monitor hits.

    ``scores``: the image model's per category; ``signals``: SignalScores of the other signals (name, scores);
    ``bank_hit``: (bank name, entry, distance) of a hash-bank match; ``defaults``: rules for categories the policy
    does not name (a signal's own monitor rule, moderation/signals/).
    """
    values = {(IMAGE_SIGNAL, k): v for k, v in (scores or {}).items()}
    for signal in signals:
        values.update({(signal.name, k): v for k, v in signal.scores.items()})
    removes, reviews, monitors = [], [], []
    rules = {**(defaults or {}), **policy.categories}
    for category, rule in rules.items():
        score, via = _rule_score(category, rule, values)
        if score is None or rule.mode == "off":
            continue
        if rule.mode == "monitor":
            if rule.monitor_threshold is not None and score >= rule.monitor_threshold:
                monitors.append(f"{MONITOR_PREFIX}{category}>={rule.monitor_threshold:.3f} "
                                f"({score:.3f}{via}; not actioned)")
        elif rule.remove_threshold is not None and score >= rule.remove_threshold:
            removes.append(f"policy:{category}>={rule.remove_threshold:.3f} ({score:.3f}{via})")
        elif rule.review_threshold is not None and score >= rule.review_threshold:
            reviews.append(f"policy:{category}>={rule.review_threshold:.3f} ({score:.3f}{via})")
    if bank_hit is not None:
        action, reason = _bank_rule(bank_hit, policy)
        if reason is not None:
            (removes if action == "remove" else reviews if action == "review" else monitors).insert(0, reason)
    if removes:
        return "remove", removes + reviews + monitors
    if reviews:
        return "review", reviews + monitors
    return "allow", monitors


def _rule_score(category: str, rule: CategoryRule, values: dict) -> tuple[float | None, str]:
    """(the rule's score, " via <signal>" when it is not the image model's own score of the category)."""
    if not rule.inputs:
        return values.get((IMAGE_SIGNAL, category)), ""
    present = [(values[ref], ref) for ref in map(_ref, rule.inputs) if ref in values]
    if not present:
        return None, ""
    score, (signal, key) = max(present)
    return score, f" via {signal}:{key}"


def _ref(text: str) -> tuple[str, str]:
    signal, _, key = text.partition(":")
    return signal, key


def bank_action(entry, policy: Policy) -> Action | None:
    """What a match of ``entry`` does under ``policy``: its own action, or None (monitor/off for its category)."""
    rule = policy.categories.get(entry.category)
    return entry.action if rule is None or rule.mode == "act" else None


def _bank_rule(bank_hit, policy: Policy) -> tuple[Action | None, str | None]:
    bank, entry, distance = bank_hit
    what = f"bank:{bank}:{entry.entry_id} category={entry.category} ({entry.reason}; distance {distance})"
    rule = policy.categories.get(entry.category)
    if rule is not None and rule.mode == "off":
        return None, None
    if bank_action(entry, policy) is None:
        return None, f"{MONITOR_PREFIX}{entry.category}>=bank ({what}; not actioned)"
    return entry.action, what


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
