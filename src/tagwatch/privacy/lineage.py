"""`tagwatch data lineage POST_ID`: which dataset versions hold a post, and which model versions were trained on them.

Datasets: every ``<name>/<version>/manifest.json`` in the datasets bucket; a build's ``post_index.tsv`` says which
posts (and in which split) its shards hold; a build written before that file is searched shard by shard. Models:
registry versions whose lineage ``manifest_hash`` is such a dataset's content hash. What to do about them
(rebuild without the post, retrain, retire a version) is the operator's call: docs/privacy.md.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import asdict, dataclass, field
from typing import Any

from tagwatch.data.manifest import SPLITS, DatasetManifest
from tagwatch.data.shards import dataset_prefix, read_manifest
from tagwatch.errors import ManifestError


@dataclass(frozen=True)
class DatasetHit:
    name: str
    version: str
    split: str
    manifest_hash: str
    created_at: str
    review_labels: int = 0  # train samples of the build whose categories came from a reviewer


@dataclass(frozen=True)
class ModelHit:
    model_name: str
    version: int
    dataset: str  # name/version it was trained on
    aliases: tuple[str, ...] = ()
    review_labels: int = 0  # of that dataset's train labels, how many came from reviewers


@dataclass
class LineageReport:
    post_id: str
    datasets: list[DatasetHit] = field(default_factory=list)
    models: list[ModelHit] = field(default_factory=list)
    searched: int = 0  # dataset versions searched
    unreadable: list[str] = field(default_factory=list)  # name/version whose manifest fails verification

    def to_json(self) -> dict:
        return asdict(self)


def _prefixes(client: Any, bucket: str, prefix: str) -> list[str]:
    found: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        found.extend(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))
    return sorted(found)


def dataset_versions(client: Any, bucket: str) -> list[tuple[str, str]]:
    """(name, version) of every build with a manifest.json in ``bucket``."""
    out = []
    for name in _prefixes(client, bucket, ""):
        for version in _prefixes(client, bucket, f"{name}/"):
            key = f"{dataset_prefix(name, version)}/manifest.json"
            if client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount", 0):
                out.append((name, version))
    return out


def split_of(client: Any, bucket: str, manifest: DatasetManifest, post_id: str) -> str | None:
    """The split whose shards hold ``post_id`` in this build, or None."""
    prefix = dataset_prefix(manifest.name, manifest.version)
    if manifest.post_index is not None:
        body = client.get_object(Bucket=bucket, Key=f"{prefix}/{manifest.post_index.path}")["Body"].read()
        for line in body.decode("utf-8").splitlines():
            found, _, split = line.partition("\t")
            if found == post_id:
                return split
        return None
    for split in SPLITS:  # a build from before post_index.tsv: the shards' member names
        for shard in manifest.splits[split].shards:
            data = client.get_object(Bucket=bucket, Key=f"{prefix}/{shard.path}")["Body"].read()
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                if f"{post_id}.json" in tar.getnames():
                    return split
    return None


def models_trained_on(versions: list, aliases: dict, datasets: list[DatasetHit]) -> list[ModelHit]:
    """Registry versions (VersionMetadata) whose lineage names one of ``datasets`` by manifest hash."""
    by_hash = {hit.manifest_hash: hit for hit in datasets}
    hits = []
    for version in versions:
        dataset = by_hash.get(str(version.lineage.get("manifest_hash")))
        if dataset is not None:
            named = tuple(sorted(a for a, record in aliases.items() if record.version == version.version))
            hits.append(ModelHit(model_name=version.model_name, version=version.version,
                                 dataset=f"{dataset.name}/{dataset.version}", aliases=named,
                                 review_labels=dataset.review_labels))
    return hits


def find_lineage(*, client: Any, datasets_bucket: str, registry: Any, post_id: str) -> LineageReport:
    """Every dataset version whose shards hold ``post_id`` and every registered model version trained on one."""
    report = LineageReport(post_id=post_id)
    for name, version in dataset_versions(client, datasets_bucket):
        report.searched += 1
        try:
            manifest = read_manifest(client=client, bucket=datasets_bucket, name=name, version=version)
        except ManifestError:
            report.unreadable.append(f"{name}/{version}")
            continue
        split = split_of(client, datasets_bucket, manifest, post_id)
        if split is not None:
            report.datasets.append(DatasetHit(name=name, version=version, split=split,
                                              manifest_hash=manifest.content_hash,
                                              created_at=manifest.created_at.isoformat(),
                                              review_labels=manifest.review_label_count))
    if report.datasets:
        report.models = models_trained_on(registry.list_versions(), registry.aliases(), report.datasets)
    return report
