"""Where a dataset's posts came from: per source, its licence and how many samples and positives it gave.

``source_infos`` fills the manifest's ``sources`` list at build time; ``sources_table`` renders it as the Markdown
table docs/data.md shows (``tagwatch data sources`` prints it for any built dataset).
"""

from __future__ import annotations

from typing import Any

from tagwatch.data.manifest import SPLITS, DatasetManifest, ShardSample, SourceInfo
from tagwatch.data.sources import licence_of


def source_infos(
    *, post_counts: dict[str, int], versions: dict[str, str], samples: dict[str, list[tuple[ShardSample, Any]]],
    categories: list[str],
) -> list[SourceInfo]:
    """Per source: version, licence (from its module), posts read (``post_counts``: source -> valid consented
    posts), samples per split, positives per category."""
    infos = []
    for name, version in sorted(versions.items()):
        splits = {split: sum(1 for sample, _ in samples[split] if sample.source == name) for split in SPLITS}
        positives = {
            category: {split: sum(1 for sample, _ in samples[split] if sample.source == name
                                  and category in sample.categories) for split in SPLITS}
            for category in categories
        }
        infos.append(SourceInfo(name=name, version=version, posts=post_counts.get(name, 0),
                                splits=splits, positives=positives, **licence_of(name)))
    return infos


def sources_table(manifest: DatasetManifest) -> str:
    """Markdown: one row per source (licence, posts, samples, positives per category over all splits) + a total."""
    categories = [c for c in manifest.category_names if c != "other"]
    header = ["source", "version", "licence", "posts", "samples", *categories]
    rows = [header, ["---"] * len(header)]
    totals: dict[str, int] = {c: 0 for c in ["posts", "samples", *categories]}
    for info in manifest.sources:
        samples = sum((info.splits or {}).values())
        counts = {c: sum((info.positives or {}).get(c, {}).values()) for c in categories}
        totals["posts"] += info.posts
        totals["samples"] += samples
        for c in categories:
            totals[c] += counts[c]
        rows.append([info.name, info.version, info.license or "?", str(info.posts), str(samples),
                     *(str(counts[c]) for c in categories)])
    rows.append(["**all**", "", "", *(str(totals[k]) for k in ["posts", "samples", *categories])])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n"


def manifest_of(client: Any, bucket: str, name: str, version: str | None = None) -> DatasetManifest:
    """The manifest of dataset ``name`` (``version``, or the latest build)."""
    import json

    from tagwatch.data.shards import dataset_prefix

    if version is None:
        version = json.loads(client.get_object(Bucket=bucket, Key=f"{name}/latest.json")["Body"].read())["version"]
    body = client.get_object(Bucket=bucket, Key=f"{dataset_prefix(name, version)}/manifest.json")["Body"].read()
    return DatasetManifest.model_validate_json(body)
