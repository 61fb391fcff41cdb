"""The dataset seam: what the data build writes and the trainer/evaluator read. Versioned; see docs/seams.md.

Layout under ``s3://<buckets.datasets>/<name>/<version>/``::

    manifest.json         DatasetManifest (this module), the entry point; its content_hash covers everything
    vocabulary.json       Vocabulary
    categories.yaml       the moderation categories used for this build (copy of the package's, or the override)
    dedup.json            the PDQ dedup report (dropped train post_ids and their nearest eval image)
    post_index.tsv        ``<post_id>\t<split>`` of every sample in the shards, sorted (`tagwatch data lineage` reads it)
    shards/<split>-NNNNNN.tar   webdataset shards, split in {train, val, holdout}

``s3://<buckets.datasets>/<name>/latest.json`` = ``{"version": "<version>"}`` names the newest complete build.

One shard sample (webdataset keys): ``__key__`` = post_id, ``jpg`` = RGB JPEG bytes, ``json`` = ShardSample.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tagwatch.data.review_labels import ReviewLabelsReport
from tagwatch.privacy.consent import ConsentReport

MANIFEST_SCHEMA_VERSION = 1
SPLITS = ("train", "val", "holdout")
Split = Literal["train", "val", "holdout"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ShardSample(_Model):
    """The ``json`` member of one webdataset sample."""

    post_id: str
    labels: list[int] = Field(description="sorted unique vocabulary indices (the image's canonical hashtags)")
    categories: list[str] = Field(default_factory=list, description="moderation categories from original keywords")
    weight: float = Field(gt=0, description="square-root resampling weight: mean of 1/sqrt(count) of its labels")
    sha256: str = Field(description="sha256 of the jpg bytes")
    pdq: str | None = Field(default=None, description="PDQ hash, 64 hex chars")
    source: str


class VocabularyLabel(_Model):
    index: int
    name: str = Field(description="canonical hashtag, e.g. 'dog'")
    synset: str | None = Field(default=None, description="WordNet 3.0 noun synset, e.g. 'dog.n.01'")
    count: int = Field(ge=0, description="posts carrying this label (train split)")
    aliases: list[str] = Field(default_factory=list, description="raw tags folded into it, e.g. ['puppy', 'doggo']")


class Vocabulary(_Model):
    schema_version: int = 1
    version: str
    labels: list[VocabularyLabel]
    sha256: str = Field(description="content hash of `labels` (see content_hash())")

    @property
    def names(self) -> list[str]:
        return [label.name for label in self.labels]


class ShardInfo(_Model):
    path: str = Field(description="relative to the dataset version prefix, e.g. 'shards/train-000000.tar'")
    samples: int
    bytes: int
    sha256: str


class SplitInfo(_Model):
    samples: int
    shards: list[ShardInfo]


class FileRef(_Model):
    path: str
    sha256: str


class SourceInfo(_Model):
    """One post source of the build. The fields after ``posts`` were added later (schema still v1): a manifest
    written before them leaves them out, and its content hash (which skips None) stays what it was."""

    name: str
    version: str
    posts: int = Field(description="valid posts of this source read from the posts bucket")
    license: str | None = Field(default=None, description="SPDX id of the source's licence, e.g. 'CC-BY-SA-4.0'")
    attribution: str | None = Field(default=None, description="the credit line the licence asks for")
    url: str | None = Field(default=None, description="the source's home page")
    splits: dict[Split, int] | None = Field(default=None, description="samples of this source per split (after dedup)")
    positives: dict[str, dict[Split, int]] | None = Field(
        default=None, description="moderation category -> split -> samples of this source in it ('other' left out)"
    )


class SplitRates(_Model):
    """The share of posts the build assigns to each split, for posts in a moderation category (``positive``) and
    in none (``negative``). Val and holdout over-sample positives; weighting a split's posts by 1/rate estimates
    figures for the traffic as it arrives (``tagwatch.train.population``)."""

    positive: dict[Split, float]
    negative: dict[Split, float]

    @classmethod
    def of(cls, *, positive: tuple[float, float], negative: tuple[float, float]) -> "SplitRates":
        """From (val, holdout) fractions per class; train gets the rest."""
        def rates(val: float, holdout: float) -> dict[str, float]:
            return {"train": round(1.0 - holdout - val, 6), "val": val, "holdout": holdout}

        return cls(positive=rates(*positive), negative=rates(*negative))


class DatasetManifest(_Model):
    schema_version: int = MANIFEST_SCHEMA_VERSION
    name: str
    version: str
    created_at: datetime
    sources: list[SourceInfo]
    vocabulary: FileRef
    vocabulary_version: str
    num_labels: int
    categories: FileRef
    category_names: list[str]
    dedup: FileRef
    dedup_dropped: int
    image_size: int = 256
    splits: dict[Split, SplitInfo]
    sampling: Literal["sqrt", "natural"] = "sqrt"
    split_rates: SplitRates | None = Field(default=None, description="split assignment rates (None: older builds)")
    consent: ConsentReport | None = Field(
        default=None, description="the training-consent policy and the posts it excluded (None: builds before it)")
    post_index: FileRef | None = Field(default=None, description="post_index.tsv (None: builds before it; lineage "
                                       "then reads the shards)")
    review_labels: ReviewLabelsReport | None = Field(
        default=None, description="reviewer outcomes folded into train (None: built without review labels)")
    content_hash: str = Field(
        default="", description="sha256 of the canonical JSON of all other fields but created_at (None fields left out)"
    )

    @property
    def review_label_count(self) -> int:
        """Train samples whose categories came from a reviewer (0 for a build without review labels)."""
        return self.review_labels.labels if self.review_labels else 0

    def compute_hash(self) -> str:
        # exclude_none: optional fields added later do not change the hash of a manifest written before them
        return content_hash(self.model_dump(mode="json", exclude={"content_hash", "created_at"}, exclude_none=True))

    def sealed(self) -> DatasetManifest:
        """A copy with content_hash filled in (what the data build writes)."""
        return self.model_copy(update={"content_hash": self.compute_hash()})

    def verify(self) -> None:
        """Raise ManifestError unless content_hash matches (the trainer refuses unverifiable manifests)."""
        from tagwatch.errors import ManifestError

        if not self.content_hash or self.content_hash != self.compute_hash():
            raise ManifestError(
                f"dataset manifest {self.name}/{self.version} fails its content hash",
                hint="the manifest was edited or truncated: rebuild it with `tagwatch data build`",
            )


def content_hash(obj: object) -> str:
    """sha256 of canonical JSON (sorted keys, no spaces): stable across writers."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()
