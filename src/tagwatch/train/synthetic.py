"""A small conforming dataset: procedural images whose hashtags are learnable (each label draws its own
shape/colour), written exactly like the data build writes (webdataset shards, vocabulary, categories, dedup
report, sealed manifest) either to S3 or kept in memory. For tests, benchmarks and `--dataset synthetic:N`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import tarfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from PIL import Image, ImageDraw

from tagwatch.data.manifest import (
    DatasetManifest,
    FileRef,
    ShardInfo,
    ShardSample,
    SourceInfo,
    SplitInfo,
    Vocabulary,
    VocabularyLabel,
    content_hash,
)
from tagwatch.train.data import MemoryShards, RawSample, iterate_tar

DEFAULT_CATEGORIES = ("weapons", "violence", "drugs")
_SHAPES = ("ellipse", "rectangle", "triangle", "cross")
_COLOURS = ((220, 30, 30), (30, 160, 40), (30, 60, 220), (230, 200, 20), (160, 40, 200), (20, 190, 200),
            (240, 120, 20), (30, 30, 30))


@dataclass
class SyntheticDataset:
    manifest: DatasetManifest
    vocabulary: Vocabulary
    files: dict[str, bytes]  # path under the version prefix -> bytes (shards and side files, not manifest.json)

    def eval_duplicates(self) -> frozenset[str]:
        return frozenset(d["nearest_post_id"] for d in json.loads(self.files["dedup.json"])["dropped"])

    def memory_shards(self) -> MemoryShards:
        shards: dict[str, list[RawSample]] = {}
        for path, blob in self.files.items():
            if path.startswith("shards/"):
                shards[path] = list(read_tar_samples(blob, url=path))
        return MemoryShards(shards)


def label_categories(num_labels: int, category_names: tuple[str, ...] | list[str]) -> dict[int, str]:
    """Labels 0..2C-1 imply a category (label j -> category j % C): the 'moderation' hashtags."""
    return {j: category_names[j % len(category_names)] for j in range(min(num_labels, 2 * len(category_names)))}


def render_image(labels: list[int], *, size: int, rng: random.Random) -> Image.Image:
    background = tuple(rng.randint(200, 255) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for label in labels:
        shape = _SHAPES[label % len(_SHAPES)]
        colour = _COLOURS[(label // len(_SHAPES)) % len(_COLOURS)]
        extent = rng.randint(size // 4, size // 2)
        x, y = rng.randint(0, size - extent), rng.randint(0, size - extent)
        box = (x, y, x + extent, y + extent)
        if shape == "ellipse":
            draw.ellipse(box, fill=colour)
        elif shape == "rectangle":
            draw.rectangle(box, fill=colour)
        elif shape == "triangle":
            draw.polygon([(x, y + extent), (x + extent // 2, y), (x + extent, y + extent)], fill=colour)
        else:
            third = extent // 3
            draw.rectangle((x + third, y, x + 2 * third, y + extent), fill=colour)
            draw.rectangle((x, y + third, x + extent, y + 2 * third), fill=colour)
    return image


def build_synthetic_dataset(
    *, num_samples: int = 256, num_labels: int = 16, category_names: tuple[str, ...] = DEFAULT_CATEGORIES,
    image_size: int = 80, samples_per_shard: int = 32, seed: int = 0, name: str = "synthetic", version: str = "v1",
    val_fraction: float = 0.125, holdout_fraction: float = 0.125, eval_duplicates: int = 2,
) -> SyntheticDataset:
    """Render ``num_samples`` images (1-3 Zipf-distributed labels each) into train/val/holdout shards."""
    rng = random.Random(seed)
    zipf = [1.0 / (j + 1) ** 0.8 for j in range(num_labels)]
    implied = label_categories(num_labels, category_names)
    posts: list[tuple[str, list[int]]] = []
    for index in range(num_samples):
        k = rng.choice((1, 1, 2, 3))
        labels = sorted(set(rng.choices(range(num_labels), weights=zipf, k=k)))
        posts.append((f"syn-{seed:04d}-{index:06d}", labels))
    n_val = max(1, int(num_samples * val_fraction))
    n_hold = max(1, int(num_samples * holdout_fraction))
    splits = {"train": posts[: num_samples - n_val - n_hold], "val": posts[num_samples - n_val - n_hold: num_samples - n_hold],
              "holdout": posts[num_samples - n_hold:]}
    counts = Counter(label for _, labels in splits["train"] for label in labels)
    vocabulary_labels = [VocabularyLabel(index=j, name=f"tag{j:03d}", count=counts.get(j, 0)) for j in range(num_labels)]
    vocab_body = [label.model_dump(mode="json") for label in vocabulary_labels]
    vocabulary = Vocabulary(version=f"{name}-{version}", labels=vocabulary_labels, sha256=content_hash(vocab_body))
    files: dict[str, bytes] = {}
    split_infos: dict[str, SplitInfo] = {}
    for split, members in splits.items():
        shards: list[ShardInfo] = []
        for shard_index in range(0, len(members), samples_per_shard):
            chunk = members[shard_index: shard_index + samples_per_shard]
            blob = _write_tar(chunk, counts=counts, implied=implied, size=image_size, seed=seed)
            path = f"shards/{split}-{shard_index // samples_per_shard:06d}.tar"
            files[path] = blob
            shards.append(ShardInfo(path=path, samples=len(chunk), bytes=len(blob), sha256=_sha(blob)))
        split_infos[split] = SplitInfo(samples=len(members), shards=shards)
    files["vocabulary.json"] = vocabulary.model_dump_json(indent=1).encode()
    files["categories.yaml"] = "".join(f"- name: {c}\n" for c in category_names).encode()
    # the data build's dedup report layout: train posts dropped as near-copies of these holdout posts
    dropped = [{"post_id": f"syn-{seed:04d}-dropped-{i}", "nearest_post_id": post_id, "nearest_split": "holdout",
                "distance": 0, "reason": "sha256"} for i, (post_id, _) in enumerate(splits["holdout"][:eval_duplicates])]
    files["dedup.json"] = json.dumps({"schema_version": 1, "dropped": dropped}).encode()
    manifest = DatasetManifest(
        name=name, version=version, created_at=datetime.now(timezone.utc),
        sources=[SourceInfo(name="synthetic", version=f"seed-{seed}", posts=num_samples)],
        vocabulary=FileRef(path="vocabulary.json", sha256=_sha(files["vocabulary.json"])),
        vocabulary_version=vocabulary.version, num_labels=num_labels,
        categories=FileRef(path="categories.yaml", sha256=_sha(files["categories.yaml"])),
        category_names=list(category_names),
        dedup=FileRef(path="dedup.json", sha256=_sha(files["dedup.json"])), dedup_dropped=len(dropped),
        image_size=image_size, splits=split_infos, sampling="sqrt",
    ).sealed()
    return SyntheticDataset(manifest=manifest, vocabulary=vocabulary, files=files)


def write_dataset_to_s3(dataset: SyntheticDataset, *, client: Any, bucket: str) -> str:
    """Upload every file, then manifest.json last (a reader never sees a manifest without its shards)."""
    prefix = f"{dataset.manifest.name}/{dataset.manifest.version}"
    for path, blob in dataset.files.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{path}", Body=blob)
    client.put_object(Bucket=bucket, Key=f"{prefix}/manifest.json", Body=dataset.manifest.model_dump_json(indent=1).encode())
    return f"s3://{bucket}/{prefix}"


def read_tar_samples(blob: bytes, *, url: str = "memory"):
    yield from iterate_tar(io.BytesIO(blob), url=url)


def _write_tar(posts: list[tuple[str, list[int]]], *, counts: Counter, implied: dict[int, str], size: int, seed: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for post_id, labels in posts:
            rng = random.Random(f"{seed}/{post_id}")
            buffer = io.BytesIO()
            render_image(labels, size=size, rng=rng).save(buffer, format="JPEG", quality=90)
            jpg = buffer.getvalue()
            weight = sum(1.0 / math.sqrt(max(1, counts.get(label, 0))) for label in labels) / len(labels)
            meta = ShardSample(post_id=post_id, labels=labels, categories=sorted({implied[l] for l in labels if l in implied}),
                               weight=weight, sha256=_sha(jpg), source="synthetic")
            for suffix, payload in (("jpg", jpg), ("json", meta.model_dump_json().encode())):
                info = tarfile.TarInfo(f"{post_id}.{suffix}")
                info.size, info.mtime, info.mode = len(payload), 0, 0o644
                tar.addfile(info, io.BytesIO(payload))
    return out.getvalue()


def _sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()
