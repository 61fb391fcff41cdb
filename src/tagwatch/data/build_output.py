"""What a dataset build writes once its shards are written (``tagwatch.data.build_map``): its files and the sealed
manifest (``tagwatch.data.mapreduce`` decides what goes in; this module only writes it). Layout in
``tagwatch.data.manifest``."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

from tagwatch.data.dedup import DedupReport
from tagwatch.data.manifest import (
    DatasetManifest,
    FileRef,
    SourceInfo,
    SplitInfo,
    SplitRates,
    Vocabulary,
)
from tagwatch.data.review_labels import ReviewLabelsReport
from tagwatch.privacy.consent import ConsentReport

POST_INDEX_FILE = "post_index.tsv"


def write_metadata(
    *, client: Any, bucket: str, prefix: str, config: Any, version: str, vocabulary: Vocabulary,
    categories_text: str, category_names: list[str], dedup: DedupReport, split_infos: dict[str, SplitInfo],
    sources: list[SourceInfo], consent: ConsentReport, post_splits: dict[str, str],
    review_labels: ReviewLabelsReport | None = None,
) -> DatasetManifest:
    """vocabulary.json, categories.yaml, dedup.json, post_index.tsv (``post_splits``: every post in the shards and
    its split, what lineage searches), then the sealed manifest.json (with the consent policy and its exclusions,
    and what review labels did when the build folded them)."""
    files = {
        "vocabulary.json": vocabulary.model_dump_json(indent=1).encode(),
        "categories.yaml": categories_text.encode("utf-8"),
        "dedup.json": dedup.model_dump_json(indent=1).encode(),
        POST_INDEX_FILE: "".join(f"{post_id}\t{post_splits[post_id]}\n" for post_id in sorted(post_splits)).encode(),
    }
    refs = {}
    for path, data in files.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{path}", Body=data)
        refs[path] = FileRef(path=path, sha256=hashlib.sha256(data).hexdigest())
    manifest = DatasetManifest(
        name=config.name, version=version, created_at=datetime.now(timezone.utc), sources=sources,
        vocabulary=refs["vocabulary.json"], vocabulary_version=vocabulary.version,
        num_labels=len(vocabulary.labels), categories=refs["categories.yaml"], category_names=category_names,
        dedup=refs["dedup.json"], dedup_dropped=len(dedup.dropped), image_size=config.image_size,
        splits=split_infos, sampling="sqrt",  # split_rates: what assign_split does, as rates
        split_rates=SplitRates.of(positive=(config.positive_val_fraction, config.positive_holdout_fraction),
                                  negative=(config.val_fraction, config.holdout_fraction)),
        consent=consent, post_index=refs[POST_INDEX_FILE], review_labels=review_labels,
    ).sealed()
    client.put_object(Bucket=bucket, Key=f"{prefix}/manifest.json", Body=manifest.model_dump_json(indent=1).encode(),
                      ContentType="application/json")
    return manifest
