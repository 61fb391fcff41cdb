"""Training data: the dataset manifest seam (read, verify, refuse), webdataset shards streamed from S3 (or held in
memory for tests), split by rank and worker, square-root resampled, shuffled, decoded and augmented, batched in
the workers. The eval path uses ``tagwatch.preprocess`` unchanged; train augmentation ends with its mean/std.

Credentials: each worker builds its own boto3 client from ``S3Settings`` (a SecretStr) in-process, so the secret
never appears in an argv, a URL or a log line.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from dataclasses import dataclass, field
from itertools import count
from typing import Any, Iterator, Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from tagwatch.data.manifest import DatasetManifest, ShardSample, Vocabulary
from tagwatch.errors import ManifestError
from tagwatch.preprocess import Preset, preprocess_image, to_rgb
from tagwatch.settings import S3Settings
from tagwatch.train.losses import multi_hot
from tagwatch.train.sampling import (
    Resampler,
    batches_seen_by_worker,
    derive_seed,
    plan_slot,
    shuffle_buffer,
)


@dataclass(frozen=True)
class RawSample:
    key: str
    jpg: bytes
    meta: ShardSample


class ShardReader(Protocol):
    def read(self, path: str) -> Iterator[RawSample]: ...


@dataclass
class MemoryShards:
    """Shards held in memory (path -> samples): the no-S3 path of the unit tests and `--dataset synthetic:N`."""

    shards: dict[str, list[RawSample]]

    def read(self, path: str) -> Iterator[RawSample]:
        yield from self.shards[path]


@dataclass
class S3ShardReader:
    """Streams ``s3://bucket/prefix/<path>`` through webdataset's tar iterator; checks the shard's sha256 from the
    manifest when the stream ends (a corrupted shard stops training with a ManifestError)."""

    s3: S3Settings
    bucket: str
    prefix: str
    expected_sha256: dict[str, str] = field(default_factory=dict)
    _client: Any = field(default=None, repr=False)

    def client(self) -> Any:
        if self._client is None:  # built lazily: once per worker process, after fork
            from tagwatch.clients import s3_client

            self._client = s3_client(self.s3)
        return self._client

    def read(self, path: str) -> Iterator[RawSample]:
        key = f"{self.prefix}/{path}"
        try:
            body = self.client().get_object(Bucket=self.bucket, Key=key)["Body"]
        except Exception as error:
            raise ManifestError(
                f"cannot read shard s3://{self.bucket}/{key} ({type(error).__name__})",
                hint="is the dataset complete in S3 and the endpoint reachable? `tagwatch stack status`",
            ) from error
        stream = _HashingReader(body)
        yield from iterate_tar(stream, url=path)
        stream.drain()
        expected = self.expected_sha256.get(path)
        if expected and stream.hexdigest() != expected:
            raise ManifestError(f"shard {path} fails its sha256", hint="the shard changed after the manifest was sealed")


def iterate_tar(stream: Any, *, url: str) -> Iterator[RawSample]:
    """webdataset's tar iteration and key grouping over any readable stream; every sample needs jpg + json."""
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    files = ({**member, "__url__": url} for member in tar_file_iterator(stream))
    for sample in group_by_keys(files):
        if "jpg" not in sample or "json" not in sample:
            raise ManifestError(f"shard {url} has a sample without jpg+json: {sample.get('__key__')}",
                                hint="rebuild the dataset with `tagwatch data build`")
        try:
            meta = ShardSample.model_validate_json(sample["json"])
        except ValueError as error:
            raise ManifestError(f"shard {url}: sample {sample['__key__']} has an invalid json member",
                                hint="rebuild the dataset with `tagwatch data build`") from error
        yield RawSample(key=sample["__key__"], jpg=sample["jpg"], meta=meta)


class _HashingReader(io.RawIOBase):
    def __init__(self, body: Any) -> None:
        self.body = body
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.body.read(len(buffer))
        self.hash.update(data)
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self._read_more():
            pass

    def _read_more(self) -> bool:
        data = self.body.read(1 << 20)
        self.hash.update(data)
        return bool(data)

    def hexdigest(self) -> str:
        return self.hash.hexdigest()


def load_manifest(*, s3: S3Settings, bucket: str, name: str, version: str) -> tuple[DatasetManifest, Vocabulary]:
    """Read and verify ``manifest.json`` (content hash) and ``vocabulary.json`` (its FileRef sha256). Refuse
    anything that does not verify."""
    from tagwatch.clients import s3_client

    client = s3_client(s3)
    prefix = f"{name}/{version}"
    try:
        raw = client.get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["Body"].read()
    except Exception as error:
        raise ManifestError(
            f"no dataset manifest at s3://{bucket}/{prefix}/manifest.json ({type(error).__name__})",
            hint="build the dataset first (`tagwatch data build`) or check --dataset NAME/VERSION",
        ) from error
    try:
        manifest = DatasetManifest.model_validate_json(raw)
    except ValueError as error:
        raise ManifestError(f"dataset manifest {prefix} does not parse", hint="rebuild it with `tagwatch data build`") from error
    manifest.verify()
    vocab_raw = client.get_object(Bucket=bucket, Key=f"{prefix}/{manifest.vocabulary.path}")["Body"].read()
    if hashlib.sha256(vocab_raw).hexdigest() != manifest.vocabulary.sha256:
        raise ManifestError(f"vocabulary of {prefix} fails its sha256", hint="rebuild the dataset")
    vocabulary = Vocabulary.model_validate_json(vocab_raw)
    if len(vocabulary.labels) != manifest.num_labels:
        raise ManifestError(f"vocabulary of {prefix} has {len(vocabulary.labels)} labels, manifest says "
                            f"{manifest.num_labels}", hint="rebuild the dataset")
    return manifest, vocabulary


def augment_image(image: Image.Image, *, preset: Preset, rng: random.Random, min_scale: float = 0.25) -> np.ndarray:
    """RandomResizedCrop(preset.crop, scale=(min_scale, 1), ratio=(3/4, 4/3)) + horizontal flip, then the
    preset's normalisation: float32 CHW, the same layout and constants as ``preprocess_image``."""
    image = to_rgb(image)
    width, height = image.size
    area = width * height
    box = (0, 0, width, height)
    for _ in range(10):
        target = area * rng.uniform(min_scale, 1.0)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        w = int(round((target * ratio) ** 0.5))
        h = int(round((target / ratio) ** 0.5))
        if 0 < w <= width and 0 < h <= height:
            left = rng.randint(0, width - w)
            top = rng.randint(0, height - h)
            box = (left, top, left + w, top + h)
            break
    image = image.resize((preset.crop, preset.crop), Image.BILINEAR, box=box)
    if rng.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(preset.mean, dtype=np.float32)) / np.asarray(preset.std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


@dataclass
class StreamConfig:
    """How a ShardStream reads. ``start_batch`` is the number of this rank's batches already consumed (resume)."""

    batch_size: int
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    sampling: str = "sqrt"
    shuffle_size: int = 256
    train: bool = True
    start_batch: int = 0


class ShardStream(IterableDataset):
    """Yields ready batches: {"images": float32[B,3,S,S], "hashtags": multi-hot[B,L], "categories": multi-hot[B,C],
    "keys": [...]}. Train mode streams forever (epoch after epoch); eval mode makes one pass, in order, with the
    shared preprocessing preset and a short last batch."""

    def __init__(self, *, reader: ShardReader, shards: list[str], num_labels: int, category_names: list[str],
                 preset: Preset, config: StreamConfig) -> None:
        super().__init__()
        self.reader = reader
        self.shards = list(shards)
        self.num_labels = num_labels
        self.category_index = {name: i for i, name in enumerate(category_names)}
        self.preset = preset
        self.config = config

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        if not self.config.train:
            yield from self._eval_batches(worker, num_workers)
            return
        # The DataLoader always starts its round-robin at worker 0, but after k batches the next one is logical
        # worker k % W's: rotate the ids so a restarted loader continues the uninterrupted order.
        worker = (worker + self.config.start_batch) % num_workers
        skip = batches_seen_by_worker(self.config.start_batch, worker=worker, num_workers=num_workers)
        items = self._train_items(worker, num_workers)
        batch: list[tuple[RawSample, int, int]] = []
        skipped = 0
        for item in items:
            if skipped < skip * self.config.batch_size:
                skipped += 1  # fast-forward: no decode
                continue
            batch.append(item)
            if len(batch) == self.config.batch_size:
                yield self._collate([self._decode_train(*entry) for entry in batch], [entry[0] for entry in batch])
                batch = []

    def _train_items(self, worker: int, num_workers: int) -> Iterator[tuple[RawSample, int, int]]:
        cfg = self.config
        slot_seed = derive_seed(cfg.seed, "slot", cfg.rank, cfg.world_size, worker, num_workers)
        resampler = Resampler(cfg.sampling, random.Random(derive_seed(slot_seed, "resample")))

        def replicated() -> Iterator[tuple[RawSample, int, int]]:
            for epoch in count():
                plan = plan_slot(self.shards, epoch=epoch, seed=cfg.seed, rank=cfg.rank, world_size=cfg.world_size,
                                 worker=worker, num_workers=num_workers)
                seen = [0]
                for sample in self._slot_samples(plan, seen):
                    for replica in range(resampler.copies(sample.meta.weight)):
                        yield sample, epoch, replica
                if seen[0] == 0:
                    raise ManifestError("the train split has no samples", hint="rebuild the dataset")

        return shuffle_buffer(replicated(), size=cfg.shuffle_size, rng=random.Random(derive_seed(slot_seed, "shuffle")))

    def _slot_samples(self, plan, seen: list[int] | None = None) -> Iterator[RawSample]:
        """The samples of ``plan``'s shards that belong to this rank/worker slot (every modulo-th, from offset).

        ``seen[0]`` counts every sample read, this slot's or not (an empty split is an error, an empty slot not).
        """
        index = 0
        for shard in plan.shards:
            for sample in self.reader.read(shard):
                mine = index % plan.modulo == plan.offset
                index += 1
                if seen is not None:
                    seen[0] = index
                if mine:
                    yield sample

    def _decode_train(self, sample: RawSample, epoch: int, replica: int) -> np.ndarray:
        rng = random.Random(derive_seed(self.config.seed, "augment", sample.key, epoch, replica))
        with Image.open(io.BytesIO(sample.jpg)) as image:
            return augment_image(image, preset=self.preset, rng=rng)

    def _eval_batches(self, worker: int, num_workers: int) -> Iterator[dict[str, Any]]:
        plan = plan_slot(self.shards, epoch=0, seed=0, rank=self.config.rank, world_size=self.config.world_size,
                         worker=worker, num_workers=num_workers, shuffle=False)
        arrays: list[np.ndarray] = []
        samples: list[RawSample] = []
        for sample in self._slot_samples(plan):
            with Image.open(io.BytesIO(sample.jpg)) as image:
                arrays.append(preprocess_image(image, self.preset))
            samples.append(sample)
            if len(samples) == self.config.batch_size:
                yield self._collate(arrays, samples)
                arrays, samples = [], []
        if samples:
            yield self._collate(arrays, samples)

    def _collate(self, arrays: list[np.ndarray], samples: list[RawSample]) -> dict[str, Any]:
        categories = [[self.category_index[c] for c in s.meta.categories if c in self.category_index] for s in samples]
        return {
            "images": torch.from_numpy(np.stack(arrays)),
            "hashtags": multi_hot([s.meta.labels for s in samples], self.num_labels),
            "categories": multi_hot(categories, len(self.category_index)),
            "keys": [s.key for s in samples],
            "pdq": [s.meta.pdq for s in samples],
        }


def shard_paths(manifest: DatasetManifest, split: str) -> list[str]:
    info = manifest.splits.get(split)  # type: ignore[call-overload]
    if info is None or not info.shards:
        raise ManifestError(f"dataset {manifest.name}/{manifest.version} has no {split!r} shards",
                            hint="rebuild the dataset with that split")
    return [shard.path for shard in info.shards]


def manifest_summary(manifest: DatasetManifest) -> dict[str, Any]:
    return json.loads(manifest.model_dump_json(include={"name", "version", "content_hash", "num_labels"}))
