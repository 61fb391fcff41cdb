"""Reviewer outcomes as train labels: ``tagwatch data build --review-labels`` (``BuildConfig.review_labels``).

The latest review outcome of each post (the ledger bucket's post history, ``tagwatch.moderation.ledger``) becomes
a labelled train example: ``remove`` -> its categories positive, ``allow`` -> a reviewed negative (``[other]``:
no category applies). Each outcome lands in exactly one count of ``ReviewLabelsReport``:

1. privacy first, the posts' own rule (``tagwatch.privacy.consent.exclusion_reason``): a post on the erasure list,
   or whose post record's training consent the build's policy excludes (no record: ``unknown``), is left out
   (``excluded_privacy``, by reason);
2. a category the build's categories do not name, a removal without one, or (a post without a record) an id a
   shard cannot hold (webdataset keys end at the first dot): ``skipped``;
3. a post already in the dataset: in train, the reviewer's categories replace its own (``overrode``); in val or
   holdout nothing changes (``left_in_eval``): review never moves a post between splits nor relabels evaluation;
4. any other post: a new train example (``added_to_train``), its image fetched from ``image_uri`` (the posts bucket
   only, with moderation's image guards) and PDQ-hashed; an image that cannot be used is ``skipped`` by reason;
5. the build's PDQ dedup treats reviewed train images like every train image: a near-copy of a val/holdout image
   is dropped (``dropped_near_duplicate_of_eval``), never moved into evaluation.

The functions here are pure but for ``read_latest_outcomes`` and ``fetch_review_images``; ``tagwatch.data.build``
calls them in that order.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tagwatch.data.posts import POST_ID_PATTERN, Post
from tagwatch.moderation.events import ReviewOutcome
from tagwatch.privacy.consent import EXCLUSION_REASONS, Consent, UnknownPolicy, exclusion_reason

REVIEW_SOURCE = "review"  # the source of a reviewed example whose post has no post record
JPEG_QUALITY = 90


class ReviewLabelsReport(BaseModel):
    """What folding reviewer outcomes did in one dataset build (the manifest's ``review_labels``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    outcomes_read: int = Field(ge=0, description="review outcomes in the ledger history (every review of every post)")
    posts_reviewed: int = Field(ge=0, description="posts with an outcome; only each post's latest one is folded, "
                                "and it lands in exactly one of the counts below")
    added_to_train: int = Field(ge=0, description="reviewed posts added to train as new examples")
    overrode: int = Field(ge=0, description="train posts of the build whose categories the reviewer's replaced")
    left_in_eval: int = Field(ge=0, description="val/holdout posts of the build: left as they were")
    dropped_near_duplicate_of_eval: int = Field(
        ge=0, description="reviewed train images dropped by the PDQ dedup (near or byte copies of a val/holdout image)")
    excluded_privacy: dict[str, int] = Field(description="left out by the consent policy or the erasure list, by "
                                             "reason: denied, unknown, erased")
    skipped: dict[str, int] = Field(default_factory=dict, description="unusable outcomes by reason "
                                    "(unknown_category, remove_without_category, image_missing, ...)")

    @property
    def labels(self) -> int:
        """Train samples whose categories came from a reviewer."""
        return self.added_to_train + self.overrode


@dataclass(frozen=True)
class ReviewLabel:
    """One usable outcome: the post, the categories the reviewer gave it, its image and its post record (if any)."""

    post_id: str
    outcome_id: str
    categories: tuple[str, ...]  # in the categories' order; (other,) for allow
    image_uri: str
    reviewed_at: datetime | None = None
    record: Post | None = None

    def digest_input(self) -> list:
        """What the build's version hashes (the image by its address: the posts bucket's keys are content hashes)."""
        return [self.post_id, self.outcome_id, list(self.categories), self.image_uri]


@dataclass(frozen=True)
class ReviewedImage:
    label: ReviewLabel
    jpeg: bytes
    sha256: str
    pdq: str
    pdq_quality: int


@dataclass(frozen=True)
class _Subject:  # what exclusion_reason reads, for a post known only from its outcome
    post_id: str
    training_consent: Consent = "unknown"


@dataclass
class ScreenedOutcomes:
    outcomes_read: int
    posts_reviewed: int
    labels: list[ReviewLabel]  # the usable ones, by post_id
    excluded: Counter[str]
    skipped: Counter[str]


@dataclass
class FoldedReviews:
    overrides: dict[str, tuple[str, ...]]  # train post_id -> the reviewer's categories
    new: list[ReviewLabel]  # posts not in the build
    left_in_eval: int
    images: list[ReviewedImage] = field(default_factory=list)  # the new ones whose image could be used
    fetch_skipped: Counter[str] = field(default_factory=Counter)


def read_latest_outcomes(client: Any, ledger_bucket: str) -> tuple[int, dict[str, ReviewOutcome]]:
    """(outcomes read, post_id -> its latest outcome) from the ledger bucket's post history."""
    from botocore.exceptions import ClientError

    from tagwatch.errors import ConfigError
    from tagwatch.moderation.ledger import LedgerHistory, latest_outcomes

    try:
        outcomes = list(LedgerHistory(client, ledger_bucket).review_outcomes())
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise
        raise ConfigError(f"the ledger bucket {ledger_bucket!r} does not exist: no review outcomes to read",
                          hint="check settings.s3.buckets.ledger (TAGWATCH_S3__BUCKETS__LEDGER), or build without "
                          "--review-labels") from error
    return len(outcomes), latest_outcomes(outcomes)


def review_categories(outcome: ReviewOutcome, *, names: list[str], other: str) -> tuple[tuple[str, ...] | None, str]:
    """(the sample's categories, '') or (None, why it cannot be used)."""
    if outcome.action == "allow":
        return (other,), ""
    if not outcome.categories:
        return None, "remove_without_category"
    if any(c not in names or c == other for c in outcome.categories):
        return None, "unknown_category"
    return tuple(c for c in names if c in outcome.categories), ""


def screen_outcomes(latest: dict[str, ReviewOutcome], *, outcomes_read: int, records: dict[str, Post],
                    unknown: UnknownPolicy, erased: frozenset[str] | set[str], names: list[str],
                    other: str) -> ScreenedOutcomes:
    """Privacy and categories, before anything is fetched (``records``: every valid post record read, consented or
    not, so a denied post's outcome is excluded rather than mistaken for a post without a record)."""
    screened = ScreenedOutcomes(outcomes_read=outcomes_read, posts_reviewed=len(latest), labels=[], excluded=Counter({reason: 0 for reason in EXCLUSION_REASONS}),
                                skipped=Counter())
    for post_id in sorted(latest):
        outcome, record = latest[post_id], records.get(post_id)
        reason = exclusion_reason(record or _Subject(post_id), unknown=unknown, erased=erased)
        if reason is not None:
            screened.excluded[reason] += 1
            continue
        categories, why = review_categories(outcome, names=names, other=other)
        if categories is None or (record is None and not re.fullmatch(POST_ID_PATTERN, post_id)):
            screened.skipped[why or "unsupported_post_id"] += 1
            continue
        screened.labels.append(ReviewLabel(post_id=post_id, outcome_id=outcome.outcome_id, categories=categories,
                                           image_uri=outcome.image_uri, reviewed_at=outcome.reviewed_at,
                                           record=record))
    return screened


def fold_review_labels(labels: list[ReviewLabel], splits: dict[str, str]) -> FoldedReviews:
    """Against the build's posts (``splits``: post_id -> split): train posts take the reviewer's categories, val
    and holdout posts are left alone, and the rest become new train examples."""
    folded = FoldedReviews(overrides={}, new=[], left_in_eval=0)
    for label in labels:
        split = splits.get(label.post_id)
        if split is None:
            folded.new.append(label)
        elif split == "train":
            folded.overrides[label.post_id] = label.categories
        else:
            folded.left_in_eval += 1
    return folded


def fetch_review_images(*, client: Any, labels: list[ReviewLabel], posts_bucket: str, threads: int
                        ) -> tuple[list[ReviewedImage], Counter[str]]:
    """Each new example's image from the posts bucket, with the stream's guards (bucket, size, format, pixels), as
    RGB JPEG (re-encoded only when it is not one), sha256 and PDQ; an unusable image is counted by reason."""
    from tagwatch.data.ingest import compute_pdq
    from tagwatch.errors import PoisonInputError
    from tagwatch.moderation.images import ImageLimits, decode_image, fetch_image_bytes

    limits = ImageLimits()

    def fetch(label: ReviewLabel) -> ReviewedImage | str:
        try:
            data = fetch_image_bytes(client, label.image_uri, allowed_bucket=posts_bucket, limits=limits)
            image = decode_image(data, limits)
        except PoisonInputError as error:
            return error.reason
        if image.format != "JPEG" or image.mode != "RGB":
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
            data = buffer.getvalue()
        pdq, quality = compute_pdq(image)
        return ReviewedImage(label=label, jpeg=data, sha256=hashlib.sha256(data).hexdigest(), pdq=pdq,
                             pdq_quality=quality)

    images: list[ReviewedImage] = []
    skipped: Counter[str] = Counter()
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for result in pool.map(fetch, labels):
            if isinstance(result, str):
                skipped[result] += 1
            else:
                images.append(result)
    return images, skipped


def review_post(image: ReviewedImage) -> Post:
    """The post a new reviewed example stands for: its record (caption, source, ...) with the reviewed image, or,
    without a record, a caption-less post of source ``review``."""
    label = image.label
    update = {"image_uri": label.image_uri, "image_sha256": image.sha256, "pdq": image.pdq,
              "pdq_quality": image.pdq_quality}
    if label.record is not None:
        return label.record.model_copy(update=update)
    return Post(post_id=label.post_id, author_id="", created_at=label.reviewed_at, caption="", source=REVIEW_SOURCE,
                source_ref=label.outcome_id, training_consent="unknown", **update)


def review_report(screened: ScreenedOutcomes, folded: FoldedReviews, *, dedup_dropped: set[str]) -> ReviewLabelsReport:
    """The counts, once the build's dedup has run (``dedup_dropped``: every train post_id it dropped)."""
    added = {image.label.post_id for image in folded.images}
    reviewed = set(folded.overrides) | added
    return ReviewLabelsReport(
        outcomes_read=screened.outcomes_read, posts_reviewed=screened.posts_reviewed,
        added_to_train=len(added - dedup_dropped), overrode=len(set(folded.overrides) - dedup_dropped),
        left_in_eval=folded.left_in_eval, dropped_near_duplicate_of_eval=len(reviewed & dedup_dropped),
        excluded_privacy=dict(screened.excluded),
        skipped=dict(sorted((screened.skipped + folded.fetch_skipped).items())),
    )
