"""Activations of the frozen lower stages, computed once per (dataset version, model, cut point, preset) and reused by
every run that trains the top of the network on them (``train/partial.py``).

Key: sha256 of the dataset manifest's content hash, the arch and its ImageNet weights file, the cut block, the
preset and the views; so a new dataset version, another cut or another image size is another entry, and nothing
is ever stale. Stored in the datasets bucket (``feature-cache/<key>/<split>.pt``, shared by every run and
machine) and in a local directory (``<state_dir>/feature-cache``, read first); the local copy alone when S3 is not
there (``synthetic:N`` datasets). The train split holds two views, the image and its horizontal flip (the only
augmentation cached activations can have: random crops would need a forward pass per crop); eval splits one.
Activations are stored as float16 (half the bytes; the top block trains in float32).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tagwatch.train.data import StreamConfig

log = logging.getLogger("tagwatch.train")
FORMAT = 1
CACHE_PREFIX = "feature-cache"


@dataclass
class CachedSplit:
    """One split's cached inputs of the trainable top: ``inputs`` float16[V, N, C, H, W] (V views), and per post
    its hashtags / categories (multi-hot), square-root sampling weight, key and PDQ hash."""

    inputs: torch.Tensor
    hashtags: torch.Tensor
    categories: torch.Tensor
    weights: torch.Tensor
    keys: list[str]
    pdq: list[str | None]

    def __len__(self) -> int:
        return len(self.keys)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "inputs": self.inputs, "hashtags": self.hashtags, "categories": self.categories,
                "weights": self.weights, "keys": self.keys, "pdq": self.pdq}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CachedSplit":
        return cls(**{k: data[k] for k in ("inputs", "hashtags", "categories", "weights", "keys", "pdq")})


def cache_key(*, manifest_hash: str, arch: str, weights: str, cut: int, preset: dict, views: dict[str, int]) -> str:
    spec = {"format": FORMAT, "manifest_hash": manifest_hash, "arch": arch, "weights": weights, "cut": cut,
            "preset": preset, "views": views}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def load_or_compute(*, backbone, dataset, preset, cut: int, splits: dict[str, int], settings, device: str = "cpu",
                    use_s3: bool = True) -> tuple[dict[str, CachedSplit], dict[str, Any]]:
    """{split: CachedSplit} for ``splits`` (split -> views: 2 = image + flip, 1 = image), and where each came from
    (``local`` / ``s3`` / ``computed``). ``backbone``: the frozen EfficientNet-Lite0 (ImageNet) the lower stages
    are taken from."""
    from tagwatch.train.effnet import weights_path

    key = cache_key(manifest_hash=dataset.manifest.content_hash, arch="efficientnet_lite0",
                    weights=weights_path().name, cut=cut, preset=preset.to_dict(), views=splits)
    local = Path(settings.paths.state_dir) / CACHE_PREFIX / key
    s3 = _S3Cache(settings, key) if use_s3 and dataset.uri.startswith("s3://") else None
    out: dict[str, CachedSplit] = {}
    sources: dict[str, str] = {}
    for split, views in splits.items():
        path = local / f"{split}.pt"
        if path.is_file():
            out[split], sources[split] = CachedSplit.from_dict(torch.load(path, weights_only=False)), "local"
            continue
        raw = s3.get(split) if s3 else None
        if raw is not None:
            sources[split] = "s3"
            out[split] = CachedSplit.from_dict(torch.load(io.BytesIO(raw), weights_only=False))
        else:
            sources[split] = "computed"
            out[split] = compute_split(backbone, dataset, preset=preset, split=split, cut=cut, views=views,
                                       device=device)
            if s3:
                s3.put(split, _serialise(out[split]))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_serialise(out[split]))
    log.info("feature cache %s (cut %d): %s", key, cut, sources)
    return out, {"key": key, "sources": sources, "uri": s3.uri if s3 else str(local)}


def compute_split(backbone, dataset, *, preset, split: str, cut: int, views: int, device: str) -> CachedSplit:
    """Run the lower stages (eval mode, no grad) over one eval pass of ``split`` with the shared preset."""
    from tagwatch.train.effnet import lower_stages

    backbone.eval().to(device)
    parts: list[list[torch.Tensor]] = [[] for _ in range(views)]
    hashtags, categories, keys, pdq = [], [], [], []
    with torch.no_grad():
        for batch in dataset.stream(split=split, preset=preset, config=StreamConfig(batch_size=64, train=False)):
            images = batch["images"].to(device)
            for view in range(views):
                seen = images if view == 0 else torch.flip(images, dims=(3,))
                parts[view].append(lower_stages(backbone, seen, cut).half().cpu())
            hashtags.append(batch["hashtags"])
            categories.append(batch["categories"])
            keys.extend(batch["keys"])
            pdq.extend(batch["pdq"])
    targets = torch.cat(hashtags)
    return CachedSplit(inputs=torch.stack([torch.cat(p) for p in parts]), hashtags=targets,
                       categories=torch.cat(categories), weights=sqrt_weights(targets), keys=keys, pdq=pdq)


def sqrt_weights(hashtags: torch.Tensor) -> torch.Tensor:
    """Per post: the mean over its hashtags of 1/sqrt(count(tag)) in these posts (the data build's sampling
    weight; 1.0 for a post without hashtags)."""
    counts = hashtags.sum(0).clamp(min=1.0)
    per_tag = hashtags / counts.sqrt()
    k = hashtags.sum(1)
    return torch.where(k > 0, per_tag.sum(1) / k.clamp(min=1.0), torch.ones_like(k))


def _serialise(cached: CachedSplit) -> bytes:
    buffer = io.BytesIO()
    torch.save(cached.to_dict(), buffer)
    return buffer.getvalue()


class _S3Cache:
    def __init__(self, settings, key: str) -> None:
        from tagwatch.clients import s3_client

        self.client = s3_client(settings.s3)
        self.bucket = settings.s3.buckets.datasets
        self.prefix = f"{CACHE_PREFIX}/{key}"
        self.uri = f"s3://{self.bucket}/{self.prefix}"

    def get(self, split: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{split}.pt")["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def put(self, split: str, body: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{split}.pt", Body=body)
        except Exception as error:  # the local copy still serves this machine; say why others will recompute
            log.warning("feature cache not stored in %s (%s): other machines will recompute it",
                        self.uri, type(error).__name__)


def label_noise(cached: CachedSplit, *, fraction: float, seed: int) -> CachedSplit:
    """A copy whose every post has round(fraction * k) of its k hashtags replaced by random vocabulary tags it does
    not have (the paper's noise experiment); sampling weights recomputed on the noisy tags."""
    if fraction <= 0:
        return cached
    rng = np.random.default_rng(seed)
    noisy = cached.hashtags.clone()
    num_labels = noisy.shape[1]
    for row in range(len(noisy)):
        tags = np.flatnonzero(noisy[row].numpy())
        replace = int(round(fraction * len(tags)))
        if replace == 0:
            continue
        dropped = rng.choice(tags, size=replace, replace=False)
        others = np.setdiff1d(np.arange(num_labels), tags)
        added = rng.choice(others, size=min(replace, len(others)), replace=False)
        noisy[row, torch.as_tensor(dropped)] = 0.0
        noisy[row, torch.as_tensor(added)] = 1.0
    return CachedSplit(inputs=cached.inputs, hashtags=noisy, categories=cached.categories,
                       weights=sqrt_weights(noisy), keys=cached.keys, pdq=cached.pdq)
