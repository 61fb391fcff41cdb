"""PDQ dedup of the training set against the evaluation splits.

Every train image within Hamming distance <= ``threshold`` (31, Meta's recommended PDQ match threshold) of any
val or holdout image is dropped from train, so evaluation does not reward memorised near-copies. PDQ hashes of
quality < ``min_quality`` (50) are not meaningful (Meta's guidance: flat, featureless images), so near-duplicate
matching uses only hashes of quality >= 50 on both sides; byte-identical images (same sha256) are dropped
whatever their quality. The report keeps every dropped post and its nearest eval image, so evaluation can also
report a lower-bound accuracy on the eval images that had a near-copy in train.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tagwatch.moderation.pdq_index import PdqIndex, codes_from_hex

PDQ_THRESHOLD = 31
PDQ_MIN_QUALITY = 50


class DroppedImage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    post_id: str
    nearest_post_id: str = Field(description="the val/holdout post it is a near-copy of")
    nearest_split: str
    distance: int = Field(description="PDQ Hamming distance (0 for byte-identical images)")
    reason: str = Field(description="'pdq' (near-duplicate) or 'sha256' (byte-identical)")


class DedupReport(BaseModel):
    """dedup.json of a dataset version."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="DedupReport")

    schema_version: int = 1
    threshold: int
    min_quality: int
    train_before: int
    train_after: int
    eval_images: int
    low_quality_train: int = Field(description="train images whose PDQ quality < min_quality (sha256 check only)")
    low_quality_eval: int
    dropped: list[DroppedImage]


class HashedImage(BaseModel):
    model_config = ConfigDict(frozen=True)

    post_id: str
    split: str
    sha256: str
    pdq: str | None
    quality: int | None


def pdq_bits(hex_hashes: Iterable[str]) -> np.ndarray:
    """(n, 256) float32 0/1 matrix of PDQ hashes given as 64 hex chars."""
    rows = [np.unpackbits(np.frombuffer(bytes.fromhex(h), dtype=np.uint8)) for h in hex_hashes]
    return np.array(rows, dtype=np.float32).reshape(-1, 256)


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances of 0/1 rows: |a| + |b| - 2 a.b (one matrix product, exact in float32)."""
    return (a.sum(1)[:, None] + b.sum(1)[None, :] - 2.0 * (a @ b.T)).round().astype(np.int32)


def near_duplicate_groups(hashes: list[str | None], *, threshold: int = PDQ_THRESHOLD, block: int = 2048) -> np.ndarray:
    """A group id per image: images within Hamming ``threshold`` of each other (transitively) share one; an image
    without a hash is its own group. Cross-fitting folds by group keeps a near-copy from scoring its twin."""
    parent = np.arange(len(hashes))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    index = [i for i, h in enumerate(hashes) if h]
    if index:
        bits = pdq_bits([hashes[i] for i in index])
        for start in range(0, len(index), block):
            distances = hamming_matrix(bits[start:start + block], bits)
            for a, b in zip(*np.nonzero(distances <= threshold)):
                i, j = index[start + a], index[b]
                if i < j:
                    parent[root(j)] = root(i)
    return np.array([root(i) for i in range(len(hashes))])


def dedup_train(
    *,
    train: list[HashedImage],
    evaluation: list[HashedImage],
    threshold: int = PDQ_THRESHOLD,
    min_quality: int = PDQ_MIN_QUALITY,
    chunk: int = 8192,
) -> DedupReport:
    """Which train images to drop: near-copies (PDQ) or byte copies (sha256) of any eval image. The eval hashes go
    into an exact PDQ index (recall at ``threshold`` equal to the brute force's); train hashes query it in chunks."""
    dropped: dict[str, DroppedImage] = {}
    by_sha = {image.sha256: image for image in evaluation}
    for image in train:
        twin = by_sha.get(image.sha256)
        if twin is not None:
            dropped[image.post_id] = DroppedImage(
                post_id=image.post_id, nearest_post_id=twin.post_id, nearest_split=twin.split, distance=0,
                reason="sha256",
            )

    def usable(image: HashedImage) -> bool:
        return image.pdq is not None and (image.quality or 0) >= min_quality

    good_train = [i for i in train if usable(i) and i.post_id not in dropped]
    good_eval = [i for i in evaluation if usable(i)]
    if good_train and good_eval:
        # exact radius search (multi-index hashing, tagwatch.moderation.pdq_index): the nearest eval image of each
        # train image within ``threshold``, ties to the first eval image, as the brute-force argmin gave
        index = PdqIndex(list(range(len(good_eval))), codes_from_hex([i.pdq for i in good_eval]), radius=threshold)
        for start in range(0, len(good_train), chunk):
            block = good_train[start : start + chunk]
            for image, (rows, distances) in zip(block, index.search_codes(codes_from_hex([i.pdq for i in block]))):
                if len(rows):
                    twin = good_eval[int(rows[0])]
                    dropped[image.post_id] = DroppedImage(
                        post_id=image.post_id, nearest_post_id=twin.post_id, nearest_split=twin.split,
                        distance=int(distances[0]), reason="pdq",
                    )
    return DedupReport(
        threshold=threshold,
        min_quality=min_quality,
        train_before=len(train),
        train_after=len(train) - len(dropped),
        eval_images=len(evaluation),
        low_quality_train=sum(not usable(i) for i in train),
        low_quality_eval=sum(not usable(i) for i in evaluation),
        dropped=sorted(dropped.values(), key=lambda d: d.post_id),
    )
