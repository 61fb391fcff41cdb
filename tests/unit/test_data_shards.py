"""Square-root weights, shard sizing, reproducible tar shards that webdataset reads, splits."""

from __future__ import annotations

import io
import json

import pytest
import webdataset as wds
from PIL import Image

from tagwatch.data.build import BuildConfig, assign_split, sqrt_weight
from tagwatch.data.manifest import ShardSample
from tagwatch.data.shards import shard_sizes, write_tar


def test_sqrt_weight_is_mean_inverse_sqrt_count() -> None:
    counts = [100, 25, 4]
    assert sqrt_weight([0], counts) == pytest.approx(0.1)
    assert sqrt_weight([1, 2], counts) == pytest.approx((1 / 5 + 1 / 2) / 2)
    # rarer labels weigh more: the paper's square-root resampling
    assert sqrt_weight([2], counts) > sqrt_weight([1], counts) > sqrt_weight([0], counts)
    assert sqrt_weight([], counts) == 1.0


@pytest.mark.parametrize(
    ("total", "max_samples", "min_shards", "expected"),
    [(0, 500, 4, []), (3, 500, 4, [1, 1, 1]), (10, 500, 4, [3, 3, 2, 2]), (1200, 500, 4, [300] * 4),
     (5001, 500, 4, None)],
)
def test_shard_sizes(total, max_samples, min_shards, expected) -> None:
    sizes = shard_sizes(total, max_samples=max_samples, min_shards=min_shards)
    assert sum(sizes) == total and all(s <= max_samples for s in sizes)
    assert max(sizes, default=0) - min(sizes, default=0) <= 1
    if total >= min_shards:
        assert len(sizes) >= min_shards
    if expected is not None:
        assert sizes == expected


def _sample(i: int) -> tuple[ShardSample, bytes]:
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), (i * 20 % 256, 10, 10)).save(buffer, "JPEG")
    sample = ShardSample(post_id=f"synthetic-{i:04d}", labels=[i % 3], categories=["other"], weight=0.5,
                         sha256="0" * 64, source="synthetic")
    return sample, buffer.getvalue()


def test_tar_is_reproducible_and_webdataset_decodes_it(tmp_path) -> None:
    samples = [_sample(i) for i in range(5)]
    data = write_tar(samples)
    assert data == write_tar(samples)  # same samples -> same bytes -> same sha256 in the manifest
    path = tmp_path / "train-000000.tar"
    path.write_bytes(data)
    decoded = list(wds.WebDataset(str(path), shardshuffle=False).decode("pil"))
    assert [d["__key__"] for d in decoded] == [s.post_id for s, _ in samples]
    first = decoded[0]
    assert first["jpg"].size == (256, 256) and first["jpg"].mode == "RGB"
    assert ShardSample.model_validate(first["json"]) == samples[0][0]


def test_split_assignment_is_deterministic_and_favours_positives_for_holdout() -> None:
    config = BuildConfig()
    ids = [f"openclipart-{i:08x}" for i in range(4000)]
    plain = [assign_split(p, positive=False, seed=0, config=config) for p in ids]
    positive = [assign_split(p, positive=True, seed=0, config=config) for p in ids]
    assert plain == [assign_split(p, positive=False, seed=0, config=config) for p in ids]
    assert 0.07 < plain.count("holdout") / 4000 < 0.13 and 0.07 < plain.count("val") / 4000 < 0.13
    assert 0.35 < positive.count("holdout") / 4000 < 0.45
    assert json.dumps(sorted(set(plain))) == '["holdout", "train", "val"]'
