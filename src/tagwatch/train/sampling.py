"""Deterministic stream sampling: which shards (or samples) each rank and data-loader worker reads, square-root
resampling by replication, and a seeded shuffle buffer.

Everything here is a pure function of (seed, epoch, rank, world_size, worker, num_workers), never of timing, so
a resumed run regenerates exactly the stream an uninterrupted one would have read (the DistributedSampler idea,
for streamed shards).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
SAMPLINGS = ("sqrt", "natural")


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from any tuple of parts (stable across processes, unlike hash())."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


@dataclass(frozen=True)
class SlotPlan:
    """What one (rank, worker) slot reads in one epoch: these shards, and of their samples every ``modulo``-th
    starting at ``offset`` (counted over the shards' concatenation)."""

    shards: tuple[str, ...]
    modulo: int
    offset: int


def plan_slot(
    shards: list[str], *, epoch: int, seed: int, rank: int, world_size: int, worker: int, num_workers: int,
    shuffle: bool = True,
) -> SlotPlan:
    """Split by shard when there are at least as many shards as slots, else split by sample."""
    order = list(shards)
    if shuffle:
        random.Random(derive_seed(seed, "shards", epoch)).shuffle(order)
    slots = world_size * num_workers
    slot = rank * num_workers + worker
    if len(order) >= slots:
        return SlotPlan(shards=tuple(order[slot::slots]), modulo=1, offset=0)
    return SlotPlan(shards=tuple(order), modulo=slots, offset=slot)


def batches_seen_by_worker(global_batches: int, *, worker: int, num_workers: int) -> int:
    """How many of the first ``global_batches`` batches a DataLoader took from ``worker`` (it takes batches
    from its workers round-robin, so batch i came from worker i % num_workers)."""
    if global_batches <= worker:
        return 0
    return (global_batches - worker + num_workers - 1) // num_workers


class Resampler:
    """Square-root resampling by replication: a sample with weight w is emitted n times, E[n] = w / mean(w).

    The data build stores w = mean over the image's labels of 1/sqrt(count(label)); replicating in proportion to
    it gives the paper's square-root label distribution. mean(w) is the running mean over this slot's stream
    (deterministic: the stream order is). ``natural`` emits every sample once.
    """

    def __init__(self, mode: str, rng: random.Random) -> None:
        if mode not in SAMPLINGS:
            from tagwatch.errors import ConfigError

            raise ConfigError(f"unknown sampling {mode!r}", hint=f"pick one of: {', '.join(SAMPLINGS)}")
        self.mode = mode
        self.rng = rng
        self.total = 0.0
        self.count = 0

    def copies(self, weight: float) -> int:
        if self.mode == "natural":
            return 1
        self.total += weight
        self.count += 1
        ratio = weight / (self.total / self.count)
        whole = math.floor(ratio)
        return whole + (1 if self.rng.random() < ratio - whole else 0)


def shuffle_buffer(items: Iterable[T], *, size: int, rng: random.Random) -> Iterator[T]:
    """Reservoir-style shuffle with a bounded buffer (webdataset's ``shuffle``), seeded."""
    if size <= 1:
        yield from items
        return
    buffer: list[T] = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= size:
            index = rng.randrange(len(buffer))
            buffer[index], buffer[-1] = buffer[-1], buffer[index]
            yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer
