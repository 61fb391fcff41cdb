"""Training consent: which posts a dataset build may use.

A post carries ``training_consent`` (granted, denied or unknown; records written before the field read as
unknown). Only training looks at it: moderation screens every post whatever its consent. ``unknown`` is mapped by
the policy (``settings.privacy.consent_unknown``): excluded by default. A post on the erasure list
(tagwatch.privacy.erasures) is excluded whatever its record says.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Consent = Literal["granted", "denied", "unknown"]
UnknownPolicy = Literal["exclude", "include"]
EXCLUSION_REASONS = ("denied", "unknown", "erased")


class _HasConsent(Protocol):
    post_id: str
    training_consent: Consent


P = TypeVar("P", bound=_HasConsent)


def exclusion_reason(post: _HasConsent, *, unknown: UnknownPolicy, erased: set[str] | frozenset[str]) -> str | None:
    """Why ``post`` may not be trained on (``denied``, ``unknown``, ``erased``), or None when it may."""
    if post.post_id in erased:
        return "erased"
    if post.training_consent == "denied":
        return "denied"
    if post.training_consent == "unknown" and unknown == "exclude":
        return "unknown"
    return None


class ConsentReport(BaseModel):
    """What the consent filter did in one dataset build (recorded in its manifest)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: dict[str, str] = Field(description="consent value -> include/exclude, e.g. {'granted': 'include', "
                                   "'denied': 'exclude', 'unknown': 'exclude'}; erased posts are always excluded")
    excluded: dict[str, int] = Field(description="posts left out, by reason: denied, unknown, erased")
    erasure_list: int = Field(ge=0, description="post ids on the erasure list when the build ran")

    @property
    def total_excluded(self) -> int:
        return sum(self.excluded.values())


def consent_policy(unknown: UnknownPolicy) -> dict[str, str]:
    return {"granted": "include", "denied": "exclude", "unknown": unknown}


def filter_consented(posts: Iterable[P], *, unknown: UnknownPolicy,
                     erased: set[str] | frozenset[str]) -> tuple[list[P], ConsentReport]:
    """The posts training may use, and the report of those left out (by reason)."""
    kept: list[P] = []
    excluded: Counter[str] = Counter({reason: 0 for reason in EXCLUSION_REASONS})
    for post in posts:
        reason = exclusion_reason(post, unknown=unknown, erased=erased)
        if reason is None:
            kept.append(post)
        else:
            excluded[reason] += 1
    return kept, ConsentReport(policy=consent_policy(unknown), excluded=dict(excluded), erasure_list=len(erased))


def source_consent(module: Any, post_id: str) -> Consent:
    """The consent a source gives its posts: its ``training_consent(post_id)`` when it has one, else its
    ``TRAINING_CONSENT`` (openly licensed corpora: granted), else unknown."""
    chooser = getattr(module, "training_consent", None)
    if callable(chooser):
        return chooser(post_id)
    return getattr(module, "TRAINING_CONSENT", "unknown")


def mixed_consent(post_id: str, *, denied: float = 0.1, unknown: float = 0.1) -> Consent:
    """A deterministic mix for generated posts (so a build's exclusions are visible): about ``denied`` of them
    denied, ``unknown`` unknown, the rest granted, chosen by a hash of the post id."""
    u = int.from_bytes(hashlib.sha256(f"consent:{post_id}".encode()).digest()[:8], "big") / 2**64
    if u < denied:
        return "denied"
    if u < denied + unknown:
        return "unknown"
    return "granted"
