"""`tagwatch data build`: posts in S3 -> vocabulary, splits, PDQ dedup, sqrt weights, shards, sealed manifest.

This module holds what the build decides (config, reading and screening the posts, split, labels, weights); the
steps run as map/reduce (``tagwatch.data.mapreduce``: plan -> hash ranges -> reduce -> write shards -> seal), in one
process or as pipeline tasks, with the same result for any number of ranges.

Steps: read every post (index + one listing per source) -> skip invalid posts and captions without hashtags
(counted by reason) -> leave out posts whose training consent does not allow it and posts on the erasure list
(tagwatch.privacy; counted by reason in the manifest) -> version = hash of the inputs and the config (same inputs, same version: a rerun finds its
manifest and does nothing) -> fetch images -> categories from original keywords -> split by a hash of post_id
(category-positive posts go to the holdout at a higher rate, so moderation evaluation has positives) -> drop
train near-copies of eval images (dedup.py) -> vocabulary over the remaining train captions (vocab.py) ->
labels and square-root resampling weights -> shards -> vocabulary.json, categories.yaml, dedup.json,
post_index.tsv, manifest.json (last: its presence marks a complete build) and ``<name>/latest.json``.

With ``review_labels``: reviewers' latest outcomes are screened by the same consent/erasure rule before the
version is computed (they are part of it), then folded in after the images are fetched (train posts relabelled,
val/holdout untouched, other posts added to train with their reviewed image) so the dedup sees them
(review_labels.py; counts in the manifest's ``review_labels``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from tagwatch.data import posts as store
from tagwatch.data.categories import Categories, CategoryMatcher, load_categories
from tagwatch.data.dedup import PDQ_MIN_QUALITY, PDQ_THRESHOLD, HashedImage
from tagwatch.data.manifest import SPLITS, DatasetManifest, ShardSample, Vocabulary, content_hash
from tagwatch.data.shards import dataset_prefix
from tagwatch.data.vocab import Canonicaliser, VocabConfig, VocabReport, build_vocabulary, label_index, labels_for
from tagwatch.data.vocab import post_keys as caption_keys
from tagwatch.data.review_labels import (FoldedReviews, ReviewLabel, ScreenedOutcomes, fetch_review_images,
                                         fold_review_labels, read_latest_outcomes, review_post,
                                         screen_outcomes)
from tagwatch.errors import ConfigError, ManifestError
from tagwatch.privacy.consent import ConsentReport, UnknownPolicy, filter_consented
from tagwatch.privacy.erasures import erased_post_ids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildConfig:
    name: str = "hashtags"
    version: str | None = None  # None: derived from the inputs and this config
    sources: tuple[str, ...] = ()  # empty: every source in the posts bucket
    seed: int = 0
    val_fraction: float = 0.1
    holdout_fraction: float = 0.1
    positive_val_fraction: float = 0.15
    positive_holdout_fraction: float = 0.4
    shard_samples: int = 500
    min_shards: int = 4
    pdq_threshold: int = PDQ_THRESHOLD
    pdq_min_quality: int = PDQ_MIN_QUALITY
    vocab: VocabConfig = VocabConfig()
    categories_path: Path | None = None
    image_size: int = 256
    fetch_threads: int = 8
    consent_unknown: UnknownPolicy = "exclude"  # posts with training_consent 'unknown' (settings.privacy)
    review_labels: bool = False  # fold reviewers' outcomes into train (review_labels.py)

    def fingerprint(self) -> dict:
        data = asdict(self)
        data.pop("version"), data.pop("fetch_threads"), data.pop("categories_path")
        if not self.review_labels:  # off: the version of a build from before the option stays what it was
            data.pop("review_labels")
        data["vocab"]["stop_tags"] = sorted(self.vocab.stop_tags)
        return data


@dataclass
class BuildReport:
    name: str
    version: str = ""
    up_to_date: bool = False
    posts_read: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    holdout_categories: dict[str, int] = field(default_factory=dict)
    vocabulary_size: int = 0
    top_tags: list[tuple[str, int]] = field(default_factory=list)
    dedup_dropped: int = 0
    consent: dict = field(default_factory=dict)  # ConsentReport: the policy and the posts it excluded, by reason
    review_labels: dict = field(default_factory=dict)  # ReviewLabelsReport when the build folds review outcomes
    seconds: dict[str, float] = field(default_factory=dict)
    manifest_uri: str = ""


@dataclass
class PreparedPost:
    post: store.Post
    keys: list[str]
    categories: list[str]
    split: str = "train"
    jpeg: bytes = b""
    reviewed: bool = False  # its categories are a reviewer's (train only)


Progress = Callable[[str, int, int], None]  # (stage, done, total)


def load_posts(*, client: Any, bucket: str, sources: tuple[str, ...], report: BuildReport):
    """Valid posts of the given sources (all when empty) and each source's version from its ingest report."""
    names = list(sources) or store.list_sources(client, bucket)
    valid: list[store.Post] = []
    infos: dict[str, str] = {}
    skipped: Counter[str] = Counter(report.skipped)
    for source in names:
        infos[source] = _source_version(client, bucket, source)
        for post_id, record in sorted(store.load_post_records(client, bucket, source).items()):
            report.posts_read += 1
            try:
                post = store.parse_post(record)
            except ValueError as error:
                skipped["invalid_post"] += 1
                log.warning("skipped post %s/%s: %s", source, post_id, error)
                continue
            if not post.caption.strip():
                skipped["empty_caption"] += 1
                log.warning("skipped post %s: empty caption", post_id)
                continue
            valid.append(post)
    report.skipped = dict(skipped)
    return valid, infos


def _source_version(client: Any, bucket: str, source: str) -> str:
    try:
        body = client.get_object(Bucket=bucket, Key=store.report_key(source))["Body"].read()
        return str(json.loads(body).get("source_version") or "unknown")
    except Exception:  # no ingest report (posts written by another producer)
        return "unknown"


def assign_split(post_id: str, *, positive: bool, seed: int, config: BuildConfig) -> str:
    """Deterministic split from a hash of (seed, post_id); category positives favour the holdout."""
    u = int.from_bytes(hashlib.sha256(f"split:{seed}:{post_id}".encode()).digest()[:8], "big") / 2**64
    holdout = config.positive_holdout_fraction if positive else config.holdout_fraction
    val = config.positive_val_fraction if positive else config.val_fraction
    if u < holdout:
        return "holdout"
    if u < holdout + val:
        return "val"
    return "train"


def sqrt_weight(labels: list[int], counts: list[int]) -> float:
    """Mean over the sample's labels of 1/sqrt(label count): the paper's square-root resampling."""
    if not labels:
        return 1.0
    return sum(1.0 / max(counts[i], 1) ** 0.5 for i in labels) / len(labels)


def input_version(posts: list[store.Post], config: BuildConfig, categories_text: str,
                  reviews: list[ReviewLabel] | None = None) -> str:
    inputs = [[p.post_id, p.image_sha256, p.caption, p.keywords] for p in sorted(posts, key=lambda p: p.post_id)]
    data = {"config": config.fingerprint(), "categories": categories_text, "posts": inputs}
    if reviews is not None:  # only with review labels on: without, the digest is the one before the option
        data["reviews"] = [label.digest_input() for label in reviews]
    return "v" + content_hash(data)[:12]


def prepare_posts(
    *, posts: list[store.Post], canonicaliser: Canonicaliser, matcher: CategoryMatcher, config: BuildConfig,
    report: BuildReport,
) -> list[PreparedPost]:
    """Hashtag keys, categories and split of every post; posts without a usable hashtag are skipped."""
    prepared: list[PreparedPost] = []
    skipped: Counter[str] = Counter(report.skipped)
    other = matcher.categories.other
    for post in posts:
        keys = caption_keys(post.caption, canonicaliser, config.vocab.stop_tags)
        categories = matcher.post_categories(post.keywords)
        if not keys and categories == [other]:
            skipped["no_hashtags"] += 1
            continue
        split = assign_split(post.post_id, positive=categories != [other], seed=config.seed, config=config)
        prepared.append(PreparedPost(post=post, keys=keys, categories=categories, split=split))
    report.skipped = dict(skipped)
    return prepared


def hashed(item: PreparedPost) -> HashedImage:
    pdq, quality = item.post.pdq, item.post.pdq_quality
    if pdq is None:  # a post from another producer: hash its image here
        import io

        from PIL import Image

        from tagwatch.data.ingest import compute_pdq

        pdq, quality = compute_pdq(Image.open(io.BytesIO(item.jpeg)))
    return HashedImage(post_id=item.post.post_id, split=item.split, sha256=item.post.image_sha256, pdq=pdq,
                       quality=quality)


@dataclass
class BuildInputs:
    """What the build reads before any image: the consented posts, the version they make and whether it is built."""

    report: BuildReport
    categories: Categories
    categories_text: str
    posts: list[store.Post]
    source_versions: dict[str, str]
    consent: ConsentReport
    reviews: ScreenedOutcomes | None
    prefix: str
    up_to_date: bool


def read_inputs(*, client: Any, posts_bucket: str, datasets_bucket: str, config: BuildConfig,
                ledger_bucket: str = "") -> BuildInputs:
    """Every post record (and, with ``config.review_labels``, the review outcomes in ``ledger_bucket``'s post
    history) screened by consent and the erasure list; the version they make; whether that version is built."""
    t0 = time.monotonic()
    report = BuildReport(name=config.name)
    categories, categories_text = load_categories(config.categories_path)
    posts, source_versions = load_posts(client=client, bucket=posts_bucket, sources=config.sources, report=report)
    records = {post.post_id: post for post in posts}  # before the consent filter: reviewed posts' consent
    erased = erased_post_ids(client, posts_bucket)
    posts, consent = filter_consented(posts, unknown=config.consent_unknown, erased=erased)
    report.consent = consent.model_dump()
    if not posts:
        raise ManifestError(
            f"no usable posts in s3://{posts_bucket}/", hint="ingest some first: `tagwatch data ingest --source ...`"
        )
    reviews = None
    if config.review_labels:
        if not ledger_bucket:
            raise ConfigError("review labels need the ledger bucket", hint="pass ledger_bucket (settings.s3.buckets)")
        outcomes_read, latest = read_latest_outcomes(client, ledger_bucket)
        reviews = screen_outcomes(latest, outcomes_read=outcomes_read, records=records,
                                  unknown=config.consent_unknown, erased=erased, names=categories.names,
                                  other=categories.other)
    report.version = config.version or input_version(posts, config, categories_text,
                                                     reviews=reviews.labels if reviews else None)
    prefix = dataset_prefix(config.name, report.version)
    report.manifest_uri = f"s3://{datasets_bucket}/{prefix}/manifest.json"
    report.seconds["read_posts"] = round(time.monotonic() - t0, 2)
    up_to_date = _already_built(client, datasets_bucket, prefix)
    if up_to_date:
        report.up_to_date = True
        write_latest(client, datasets_bucket, config.name, report.version)
    return BuildInputs(report=report, categories=categories, categories_text=categories_text, posts=posts,
                       source_versions=source_versions, consent=consent, reviews=reviews, prefix=prefix,
                       up_to_date=up_to_date)


def fold_reviews(*, client: Any, posts_bucket: str, prepared: list[PreparedPost], reviews: ScreenedOutcomes,
                 canonicaliser: Canonicaliser, config: BuildConfig) -> FoldedReviews:
    """Apply the reviewers' labels to ``prepared`` (in place: train posts relabelled, new train examples appended,
    val/holdout untouched); the dedup that follows sees the new examples as train images."""
    by_id = {item.post.post_id: item for item in prepared}
    folded = fold_review_labels(reviews.labels, {post_id: item.split for post_id, item in by_id.items()})
    for post_id, categories in folded.overrides.items():
        by_id[post_id].categories, by_id[post_id].reviewed = list(categories), True
    folded.images, folded.fetch_skipped = fetch_review_images(client=client, labels=folded.new,
                                                              posts_bucket=posts_bucket, threads=config.fetch_threads)
    for image in folded.images:
        post = review_post(image)
        prepared.append(PreparedPost(post=post, keys=caption_keys(post.caption, canonicaliser, config.vocab.stop_tags),
                                     categories=list(image.label.categories), jpeg=image.jpeg, reviewed=True))
    return folded


def label_samples(
    *, prepared: list[PreparedPost], vocabulary: Vocabulary, key_map: dict[str, str], report: BuildReport
) -> dict[str, list[tuple[ShardSample, bytes]]]:
    """ShardSamples per split. Train and val samples need a label; holdout keeps every post (moderation)."""
    index_of = label_index(vocabulary)
    counts = [label.count for label in vocabulary.labels]
    samples: dict[str, list[tuple[ShardSample, bytes]]] = {split: [] for split in SPLITS}
    skipped: Counter[str] = Counter(report.skipped)
    for item in prepared:
        labels = labels_for(item.keys, key_map, index_of)
        if not labels and item.split != "holdout" and not item.reviewed:  # a reviewed one has its categories
            skipped[f"no_labels_{item.split}"] += 1
            continue
        sample = ShardSample(
            post_id=item.post.post_id, labels=labels, categories=item.categories,
            weight=sqrt_weight(labels, counts), sha256=item.post.image_sha256, pdq=item.post.pdq,
            source=item.post.source,
        )
        samples[item.split].append((sample, item.jpeg))
    report.skipped = dict(skipped)
    return samples


def _already_built(client: Any, bucket: str, prefix: str) -> bool:
    try:
        body = client.get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["Body"].read()
        DatasetManifest.model_validate_json(body).verify()
        return True
    except Exception:  # absent, unreadable or failing its hash: build again
        return False


def write_latest(client: Any, bucket: str, name: str, version: str) -> None:
    client.put_object(Bucket=bucket, Key=f"{name}/latest.json", Body=json.dumps({"version": version}).encode(),
                      ContentType="application/json")


def vocabulary_of_posts(
    *, client: Any, posts_bucket: str, config: BuildConfig, wordnet: Any
) -> tuple[Vocabulary, VocabReport, BuildReport]:
    """The vocabulary a build would choose (train split, before dedup), without fetching images."""
    report = BuildReport(name=config.name)
    categories, _ = load_categories(config.categories_path)
    posts, _ = load_posts(client=client, bucket=posts_bucket, sources=config.sources, report=report)
    posts, _ = filter_consented(posts, unknown=config.consent_unknown, erased=erased_post_ids(client, posts_bucket))
    canonicaliser = Canonicaliser(wordnet)
    prepared = prepare_posts(posts=posts, canonicaliser=canonicaliser, matcher=CategoryMatcher(categories, wordnet),
                             config=config, report=report)
    vocabulary, _, vocab_report = build_vocabulary(
        captions=[p.post.caption for p in prepared if p.split == "train"], canonicaliser=canonicaliser,
        config=config.vocab,
    )
    return vocabulary, vocab_report, report
