"""The dataset manifest's per-source record: licences and counts from the samples, the Markdown table, and a
manifest written before those fields existed keeping its content hash."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

from tagwatch.data.manifest import DatasetManifest, FileRef, ShardSample, SourceInfo, SplitInfo
from tagwatch.data.posts import Post
from tagwatch.data.provenance import source_infos, sources_table

REF = FileRef(path="x", sha256="0" * 64)


def _manifest(sources: list[SourceInfo]) -> DatasetManifest:
    return DatasetManifest(
        name="hashtags", version="v1", created_at=datetime(2026, 1, 1, tzinfo=timezone.utc), sources=sources,
        vocabulary=REF, vocabulary_version="v", num_labels=3, categories=REF,
        category_names=["weapons", "alcohol", "other"], dedup=REF, dedup_dropped=0,
        splits={s: SplitInfo(samples=0, shards=[]) for s in ("train", "val", "holdout")},
    ).sealed()


def test_a_manifest_written_before_the_source_fields_keeps_its_hash() -> None:
    # what a build wrote before: sources with name/version/posts only, hash over exactly that JSON
    old = _manifest([SourceInfo(name="openclipart", version="1", posts=5)])
    written = json.loads(old.model_dump_json())
    assert set(written["sources"][0]) >= {"name", "version", "posts"}
    for key in ("license", "attribution", "url", "splits", "positives"):
        written["sources"][0].pop(key, None)
    legacy_hash = old.compute_hash()
    reread = DatasetManifest.model_validate(written)
    reread.verify()
    assert reread.content_hash == legacy_hash
    # and the new fields are covered by the hash
    new = _manifest([SourceInfo(name="openclipart", version="1", posts=5, license="CC-PDDC")])
    assert new.content_hash != legacy_hash
    new.verify()


def _post(source: str, n: int) -> Post:
    return Post(post_id=f"{source}-{n:012d}", author_id="u-1", created_at=datetime(2024, 1, 1, tzinfo=timezone.utc),
                caption="#x", image_uri="s3://p/i.jpg", image_sha256="0" * 64, source=source, source_ref=str(n),
                keywords=["x"])


def _sample(source: str, n: int, categories: list[str]) -> tuple[ShardSample, bytes]:
    return ShardSample(post_id=f"{source}-{n:012d}", labels=[0], categories=categories, weight=1.0, sha256="0" * 64,
                       source=source), b""


def test_source_infos_count_samples_and_positives_per_split() -> None:
    posts = [_post("openmoji", n) for n in range(4)] + [_post("elsewhere", 9)]
    samples = {"train": [_sample("openmoji", 0, ["weapons"]), _sample("openmoji", 1, ["other"])],
               "val": [_sample("openmoji", 2, ["weapons", "alcohol"])],
               "holdout": [_sample("elsewhere", 9, ["alcohol"])]}
    infos = source_infos(post_counts=Counter(p.source for p in posts), versions={"openmoji": "17.0.0", "elsewhere": "unknown"}, samples=samples,
                         categories=["weapons", "alcohol"])
    by_name = {info.name: info for info in infos}
    moji = by_name["openmoji"]
    assert (moji.posts, moji.license) == (4, "CC-BY-SA-4.0") and "OpenMoji" in moji.attribution
    assert moji.splits == {"train": 2, "val": 1, "holdout": 0}
    assert moji.positives == {"weapons": {"train": 1, "val": 1, "holdout": 0},
                              "alcohol": {"train": 0, "val": 1, "holdout": 0}}
    assert by_name["elsewhere"].license is None and by_name["elsewhere"].positives["alcohol"]["holdout"] == 1
    table = sources_table(_manifest(infos))
    assert table.splitlines()[0] == "| source | version | licence | posts | samples | weapons | alcohol |"
    assert "| openmoji | 17.0.0 | CC-BY-SA-4.0 | 4 | 3 | 2 | 1 |" in table
    assert "| elsewhere | unknown | ? | 1 | 1 | 0 | 1 |" in table
    assert table.splitlines()[-1] == "| **all** |  |  | 5 | 4 | 2 | 2 |"
