"""Run set-up shared by pretraining and transfer: settings, the dataset handle, the preset, the run id, the
checkpoint store, logging on rank 0 only. Thin adapters over the library; no logic of their own."""

from __future__ import annotations

import logging
import os
import random
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tagwatch.data.manifest import DatasetManifest, Vocabulary
from tagwatch.errors import ConfigError
from tagwatch.preprocess import DEFAULT_PRESET, PRESETS, Preset
from tagwatch.settings import Settings, load_settings
from tagwatch.train.checkpoint import CheckpointStore
from tagwatch.train.data import S3ShardReader, ShardReader, ShardStream, StreamConfig, load_manifest, shard_paths
from tagwatch.train.distributed import DistInfo, broadcast_object

log = logging.getLogger("tagwatch.train")


@dataclass
class DatasetHandle:
    manifest: DatasetManifest
    vocabulary: Vocabulary
    reader: ShardReader
    uri: str
    eval_duplicates: frozenset[str] = frozenset()
    severity: dict[str, float] = field(default_factory=dict)  # categories.yaml `severity` per category

    def stream(self, *, split: str, preset: Preset, config: StreamConfig) -> ShardStream:
        return ShardStream(reader=self.reader, shards=shard_paths(self.manifest, split), num_labels=self.manifest.num_labels,
                           category_names=self.manifest.category_names, preset=preset, config=config)

    def split_samples(self, split: str) -> int:
        info = self.manifest.splits.get(split)  # type: ignore[call-overload]
        return info.samples if info else 0

    def duplicates(self) -> set[str]:
        """Eval post ids with a near-copy in the (pre-dedup) train set: scored as misses for lower bounds."""
        return set(self.eval_duplicates)


def open_dataset(spec: str, *, settings: Settings, synthetic_labels: int = 16, seed: int = 0) -> DatasetHandle:
    """``synthetic:N`` (in memory, no S3) or ``NAME/VERSION`` under ``s3://<buckets.datasets>/``."""
    if spec.startswith("synthetic:"):
        from tagwatch.train.synthetic import build_synthetic_dataset

        try:
            samples = int(spec.split(":", 1)[1])
        except ValueError as error:
            raise ConfigError(f"bad dataset spec {spec!r}", hint="use synthetic:N, e.g. synthetic:256") from error
        dataset = build_synthetic_dataset(num_samples=samples, num_labels=synthetic_labels, seed=seed)
        return DatasetHandle(dataset.manifest, dataset.vocabulary, dataset.memory_shards(), f"memory://{spec}",
                             dataset.eval_duplicates())
    name, _, version = spec.partition("/")
    if not name or not version:
        raise ConfigError(f"bad dataset spec {spec!r}", hint="use NAME/VERSION (under the datasets bucket) or synthetic:N")
    bucket = settings.s3.buckets.datasets
    manifest, vocabulary = load_manifest(s3=settings.s3, bucket=bucket, name=name, version=version)
    expected = {s.path: s.sha256 for split in manifest.splits.values() for s in split.shards}
    reader = S3ShardReader(s3=settings.s3, bucket=bucket, prefix=f"{name}/{version}", expected_sha256=expected)
    duplicates = read_eval_duplicates(settings=settings, bucket=bucket, prefix=f"{name}/{version}", manifest=manifest)
    return DatasetHandle(manifest, vocabulary, reader, f"s3://{bucket}/{name}/{version}", duplicates,
                         read_severity(settings=settings, bucket=bucket, prefix=f"{name}/{version}", manifest=manifest))


def read_severity(*, settings: Settings, bucket: str, prefix: str, manifest: DatasetManifest) -> dict[str, float]:
    """Each category's ``severity`` from the dataset's own categories.yaml (what the build used)."""
    import yaml

    from tagwatch.clients import s3_client

    raw = s3_client(settings.s3).get_object(Bucket=bucket, Key=f"{prefix}/{manifest.categories.path}")["Body"].read()
    document = yaml.safe_load(raw)
    categories = document.get("categories") if isinstance(document, dict) else None
    if not isinstance(categories, dict):  # another writer's file (e.g. a plain list of names): no severities
        return {}
    return {name: float(spec.get("severity", 1.0)) for name, spec in categories.items() if isinstance(spec, dict)}


def read_eval_duplicates(*, settings: Settings, bucket: str, prefix: str, manifest: DatasetManifest) -> frozenset[str]:
    """The ``nearest_post_id`` of every train image the data build dropped as a near-copy (dedup.json)."""
    import hashlib
    import json

    from tagwatch.clients import s3_client
    from tagwatch.errors import ManifestError

    raw = s3_client(settings.s3).get_object(Bucket=bucket, Key=f"{prefix}/{manifest.dedup.path}")["Body"].read()
    if hashlib.sha256(raw).hexdigest() != manifest.dedup.sha256:
        raise ManifestError(f"dedup report of {prefix} fails its sha256", hint="rebuild the dataset")
    return frozenset(d["nearest_post_id"] for d in json.loads(raw).get("dropped", []) if d.get("nearest_post_id"))


def resolve_settings(settings: Settings | None = None) -> Settings:
    """``settings`` (the CLI's, when it runs the trainer in-process) or this process's own from the environment
    (a torchrun rank, a pipeline step), with the embedded stack's endpoints."""
    from tagwatch.stack import with_stack_endpoints

    return with_stack_endpoints(settings if settings is not None else load_settings())


def preset_for(image_size: int) -> Preset:
    """The named presets for 128/224; other sizes keep the 128 preset's resize/crop ratio and its mean/std."""
    for preset in PRESETS.values():
        if preset.crop == image_size:
            return preset
    return Preset(name=f"tagwatch-{image_size}", resize=round(image_size * DEFAULT_PRESET.resize / DEFAULT_PRESET.crop),
                  crop=image_size, mean=DEFAULT_PRESET.mean, std=DEFAULT_PRESET.std)


def agree_run_id(info: DistInfo, run_id: str | None, *, kind: str) -> str:
    """The same run id on every rank: the flag, else TAGWATCH_RUN_ID, else one rank 0 makes up."""
    chosen = run_id or os.environ.get("TAGWATCH_RUN_ID") or f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    return broadcast_object(info, chosen)


def checkpoint_store(root: str | None, run_id: str, settings: Settings) -> CheckpointStore:
    root = root or f"s3://{settings.s3.buckets.checkpoints}"
    return CheckpointStore(f"{root.rstrip('/')}/{run_id}", s3=settings.s3)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def configure_rank_logging(info: DistInfo, settings: Settings) -> None:
    from tagwatch.logs import configure_logging

    configure_logging(settings.log_level if info.is_main else "WARNING", settings.secret_values())


def default_output_dir(settings: Settings, run_id: str) -> Path:
    return settings.paths.state_dir / "runs" / run_id


def set_cpu_threads(*, requested: int, workers: int, device: str) -> int:
    """Torch intra-op threads for this rank. On CPU the default leaves one core per data worker: OpenMP threads
    that share cores with decode workers spin and lose far more than they gain."""
    if requested:
        torch.set_num_threads(requested)
    elif device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_ranks - workers))
    return torch.get_num_threads()
