"""What changes between two policy documents, per category: mode and thresholds (pure data, no S3)."""

from __future__ import annotations

from typing import Any

FIELDS = ("mode", "review_threshold", "remove_threshold", "monitor_threshold")
DIFF_FIELDS = (*FIELDS, "inputs")  # inputs: the signal scores a policy.v3 rule reads (empty: the image model's)
NEVER_ABOVE = 1.0  # a threshold above 1 is never reached by a sigmoid score


def rule_of(document: dict[str, Any], category: str) -> dict[str, Any] | None:
    rule = (document.get("categories") or {}).get(category)
    if rule is None:
        return None
    return {"mode": rule.get("mode", "act"), **{f: rule.get(f) for f in FIELDS[1:]},
            "inputs": list(rule.get("inputs") or [])}


def diff_policies(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per category of either policy (a's order, then b's new ones): ``status`` (same, changed,
    added, removed) and ``changes`` {field: [in a, in b]} for each of mode / review / remove / monitor threshold
    that differs."""
    names = list(a.get("categories") or {}) + [n for n in b.get("categories") or {} if n not in (a.get("categories") or {})]
    rows = []
    for name in names:
        old, new = rule_of(a, name), rule_of(b, name)
        if old is None or new is None:
            status = "added" if old is None else "removed"
            present = new if old is None else old
            changes = {f: ([None, present[f]] if old is None else [present[f], None]) for f in DIFF_FIELDS
                       if present[f] not in (None, [])}
        else:
            changes = {f: [old[f], new[f]] for f in DIFF_FIELDS if not _same(old[f], new[f])}
            status = "changed" if changes else "same"
        rows.append({"category": name, "status": status, "changes": changes})
    return rows


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        return abs(x - y) < 1e-9 or (x > NEVER_ABOVE and y > NEVER_ABOVE)
    return x == y


def describe_threshold(value: Any) -> str:
    if value is None:
        return "-"
    return "never" if value > NEVER_ABOVE else f"{value:.3f}"
