"""The promotion gate: register and deploy a new model only if it beats production on the same holdout.

Both models are scored on the holdout of the dataset the candidate was built from (``evaluation.py``), so the
comparison is like for like; the figure is the mean over categories of average precision (category mAP),
computed on the categories both models have.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

OTHER = "other"  # categories.yaml's `other:` (posts in no moderation category): not compared


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    candidate_map: float | None
    production_map: float | None
    production_version: int | None
    min_improvement: float
    categories_in_common: list[str] | None = field(default=None)

    def to_dict(self) -> dict:
        return asdict(self)


def _finite(value: float | None) -> bool:
    return value is not None and value == value


def decide_promotion(*, candidate_map: float | None, production_map: float | None, production_version: int | None,
                     min_improvement: float = 0.0, categories_in_common: list[str] | None = None) -> GateDecision:
    """Promote when there is no production model, or when the candidate's holdout category mAP exceeds
    production's by more than ``min_improvement`` (absolute), both on ``categories_in_common``. A candidate
    without a measurable mAP (no holdout positives) never replaces a production model: nothing shows that it
    is better; nor does one that shares no moderation category with production (a change of category scheme is
    a human decision: ``tagwatch model promote``)."""

    def decision(promote: bool, reason: str) -> GateDecision:
        return GateDecision(promote, reason, candidate_map, production_map, production_version, min_improvement,
                            categories_in_common)

    if production_version is None:
        return decision(True, "no production model yet")
    if categories_in_common is not None and not categories_in_common:
        return decision(False, f"production v{production_version} has no moderation category in common with the "
                        "candidate: not comparable (promote by hand if the new categories are intended)")
    if not _finite(candidate_map):
        return decision(False, "the candidate has no measurable holdout mAP (no positives in the holdout)")
    if not _finite(production_map):
        return decision(True, f"production v{production_version} has no measurable mAP on this holdout")
    assert candidate_map is not None and production_map is not None
    delta = candidate_map - production_map
    if delta > min_improvement:
        return decision(True, f"candidate mAP {candidate_map:.4f} beats production v{production_version} "
                        f"{production_map:.4f} by {delta:+.4f} (> {min_improvement:g})")
    return decision(False, f"candidate mAP {candidate_map:.4f} does not beat production v{production_version} "
                    f"{production_map:.4f} by more than {min_improvement:g} ({delta:+.4f})")
