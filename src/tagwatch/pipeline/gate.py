"""The promotion gate: register and deploy a new model only if, on the same holdout as production, its policy keeps
within its review budget and catches no fewer harmful posts than production's, beyond the noise.

The rule (``decide_promotion``), checked in this order; the first that fails refuses:

1. **Review budget not broken beyond the CI** (always, production or not): the candidate's holdout review rate
   (share of posts its policy sends to review; population-weighted, natural traffic) must not be over its policy's
   ``constraints.review_budget`` beyond the noise: refused when the CI's lower bound is above the budget. A point
   estimate over the budget with the budget inside the CI passes, and the sentence says so (the calibrator
   already keeps the rate's upper bound within the budget on its own, larger sample). A candidate that breaks its
   budget is never promoted, not even as the first model.
2. **Comparable**: production shares at least one moderation category with the candidate (a change of category
   scheme is a human decision: ``tagwatch model promote``).
3. **Recall at the budget not worse beyond the CI**: over the holdout's moderation-positive posts (in any
   moderation category, ``other`` never counts), the share each model's own policy sends to review or remove.
   The paired bootstrap CI of candidate minus production (the same posts) must not lie wholly below 0: refused when
   its upper bound < 0.
4. **mAP margin, opt-in** (``min_improvement`` > 0): the candidate's moderation mAP (mean AP over its acting
   categories with enough holdout positives, compared with production's AP on the same categories) must beat
   production's by more than ``min_improvement``. With ``min_improvement`` = 0 (the default) the mAP is
   information only: AP on a few dozen positives has a CI about +-0.1 wide, so a point-estimate mAP rule mostly
   decides on noise, while rules 1 and 3 judge what the stream will do.

No production model: rule 1 alone. A production model without a policy (its recall cannot be measured): rules 1
and 4.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

OTHER = "other"  # categories.yaml's `other:` (posts in no moderation category): not compared
EPSILON = 1e-12  # a rate equal to the budget is within it (float sums of weights)


@dataclass(frozen=True)
class Comparison:
    """Candidate vs production on the same holdout posts (``evaluation.compare_with_production``). Estimates are
    ``stats.Estimate.to_dict()`` objects (value, low, high, n)."""

    production_version: int
    categories_in_common: list[str]
    positives: int  # moderation-positive holdout posts both recalls are measured on
    candidate_recall: dict[str, Any] | None = None
    production_recall: dict[str, Any] | None = None  # None: production has no policy
    recall_difference: dict[str, Any] | None = None  # candidate - production, paired bootstrap CI
    candidate_map: float | None = None
    production_map: float | None = None
    map_categories: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    review_rate: dict[str, Any] | None
    review_budget: float | None
    production_version: int | None
    min_improvement: float
    checks: list[str] = field(default_factory=list)  # one sentence per rule checked, in order
    candidate_recall: dict[str, Any] | None = None
    production_recall: dict[str, Any] | None = None
    recall_difference: dict[str, Any] | None = None
    candidate_map: float | None = None
    production_map: float | None = None
    categories_in_common: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(value: float | None) -> bool:
    return value is not None and value == value


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{100 * value:.1f} %"


def _ci(estimate: dict[str, Any] | None, fmt=_pct) -> str:
    if not estimate or estimate.get("value") is None:
        return "not measurable"
    if estimate.get("low") is None or estimate.get("high") is None:
        return fmt(estimate["value"])
    return f"{fmt(estimate['value'])} (95 % CI {fmt(estimate['low'])} to {fmt(estimate['high'])})"


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f}"


def _signed(value: float | None) -> str:
    return "?" if value is None else f"{value:+.3f}"


def budget_check(review_rate: dict[str, Any] | None, review_budget: float | None) -> tuple[bool, str]:
    """Rule 1: (within budget, the sentence that says so with the numbers)."""
    if review_budget is None:
        return False, "the candidate's policy states no review budget, so the gate cannot check its review rate"
    if not review_rate or review_rate.get("value") is None:
        return False, "the candidate's review rate cannot be measured (no holdout posts)"
    point_within = review_rate["value"] <= review_budget + EPSILON
    low = review_rate.get("low")
    within = point_within or (low is not None and low <= review_budget + EPSILON)
    verdict = ("within" if point_within else "over, but within the noise of," if within else "over, beyond the CI,")
    return within, (f"the candidate sends {_ci(review_rate)} of holdout posts to review, "
                    f"{verdict} its policy's review budget of {_pct(review_budget)}")


def decide_promotion(*, review_rate: dict[str, Any] | None, review_budget: float | None,
                     comparison: Comparison | None, min_improvement: float = 0.0) -> GateDecision:
    """Apply the module's rule. ``review_rate``: the candidate's holdout review rate (Estimate dict, population-
    weighted); ``review_budget``: its policy's; ``comparison``: None when there is no production model."""
    checks: list[str] = []

    def decision(promote: bool, reason: str) -> GateDecision:
        c = comparison
        return GateDecision(
            promote, reason, review_rate, review_budget, c.production_version if c else None, min_improvement,
            checks, c.candidate_recall if c else None, c.production_recall if c else None,
            c.recall_difference if c else None, c.candidate_map if c else None, c.production_map if c else None,
            c.categories_in_common if c else None)

    within, sentence = budget_check(review_rate, review_budget)
    checks.append(sentence)
    if not within:
        return decision(False, f"{sentence}: a candidate over its review budget is never promoted")
    if comparison is None:
        return decision(True, f"no production model yet; {sentence}")
    c, version = comparison, comparison.production_version
    if not c.categories_in_common:
        return decision(False, f"production v{version} has no moderation category in common with the candidate: "
                        "not comparable (promote by hand if the new categories are intended)")
    if c.production_recall is None:
        checks.append(f"production v{version} has no policy: its recall at the budget cannot be measured")
    elif c.recall_difference is None or c.recall_difference.get("value") is None:
        return decision(False, f"the holdout has no moderation-positive post, so recall at the budget cannot be "
                        f"compared with production v{version}'s: nothing shows the candidate is not worse")
    else:
        d = c.recall_difference
        worse = d.get("high") is not None and d["high"] < 0
        recall = (f"recall at the budget (moderation-positive holdout posts sent to review or remove, "
                  f"{c.positives} posts): candidate {_ci(c.candidate_recall)}, production v{version} "
                  f"{_ci(c.production_recall)}; paired difference {_signed(d['value'])} (95 % CI "
                  f"{_signed(d.get('low'))} to {_signed(d.get('high'))})")
        checks.append(recall + (", wholly below 0: worse" if worse else ": not worse beyond the CI"))
        if worse:
            return decision(False, f"{recall}: the candidate catches fewer harmful posts than production, beyond "
                            "the CI")
    on = ", ".join(c.map_categories) or "no category"
    if _finite(c.candidate_map) and _finite(c.production_map):
        delta = c.candidate_map - c.production_map  # type: ignore[operator]
        map_sentence = (f"moderation mAP candidate {c.candidate_map:.3f}, production v{version} "
                        f"{c.production_map:.3f} ({delta:+.3f}) on {on}")
    else:
        delta, map_sentence = None, f"moderation mAP candidate {_num(c.candidate_map)}, production v{version} " \
                                    f"{_num(c.production_map)} on {on}"
    if min_improvement > 0:
        if not _finite(c.candidate_map):
            return decision(False, f"{map_sentence}: the candidate has no measurable mAP, so it cannot beat "
                            f"production by the {min_improvement:g} asked for")
        if delta is not None and delta <= min_improvement:
            return decision(False, f"{map_sentence}: the candidate does not beat production v{version} by more "
                            f"than {min_improvement:g}")
        checks.append(f"{map_sentence}: beats production by more than {min_improvement:g}"
                      if delta is not None else f"{map_sentence}: production's mAP is not measurable")
    else:
        checks.append(f"{map_sentence} (information only)")
    return decision(True, "; ".join(checks))


def shadow_check(report: dict[str, Any] | None, *, version: int, limits) -> tuple[bool, str]:
    """Does a shadow replay of ``version`` allow its promotion? (ok, the sentence that says why).

    ``limits``: ``settings.gate`` (``require_shadow``, ``max_remove_rate_increase``, ``max_review_rate_increase``,
    ``min_shadow_posts``). ``report``: the latest shadow report of the version (``shadow.report.latest_report``).
    A rate's increase is over its limit when the paired difference's 95 % CI lower bound is above it (over beyond
    the noise, as the review-budget rule judges); a point estimate over the limit with the limit inside the CI
    passes, and the sentence says so."""
    if not limits.require_shadow:
        return True, "no shadow report required (settings.gate.require_shadow is off)"
    if report is None:
        return False, (f"no shadow report of version {version}: run `tagwatch shadow run --candidate "
                       f"MODEL@{version}` before promoting it")
    compared = int(report.get("summary", {}).get("compared") or 0)
    if compared < limits.min_shadow_posts or not report.get("rates"):
        return False, (f"the shadow report of version {version} compared {compared} post(s) with production, fewer "
                       f"than the {limits.min_shadow_posts} required")
    sentences, ok = [], True
    for action, limit in (("remove", limits.max_remove_rate_increase), ("review", limits.max_review_rate_increase)):
        delta = report["rates"][action]["delta"]
        low, value = delta.get("low"), delta.get("value")
        over = low is not None and low > limit + EPSILON
        point_over = value is not None and value > limit + EPSILON
        verdict = ("over, beyond the CI," if over else "over, but within the noise of," if point_over else "within")
        sentences.append(f"shadow replay of {compared} posts: {action} rate change {_signed(value)} (95 % CI "
                         f"{_signed(low)} to {_signed(delta.get('high'))}), {verdict} the limit of +{limit:.3f}")
        ok = ok and not over
    return ok, "; ".join(sentences)
