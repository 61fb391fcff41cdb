"""PDQ dedup: deliberately built near-duplicates of eval images are removed from train, and the guarantee holds."""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image, ImageEnhance

from tagwatch.data.dedup import HashedImage, dedup_train, hamming_matrix, pdq_bits
from tagwatch.data.ingest import compute_pdq
from tagwatch.data.sources import SourceItem, synthetic


def _image(index: int) -> Image.Image:
    return synthetic.render_item(SourceItem("synthetic", f"seed5/{index}", {"seed": 5, "index": index})).image


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _hashed(post_id: str, split: str, image: Image.Image) -> HashedImage:
    pdq, quality = compute_pdq(image)
    return HashedImage(post_id=post_id, split=split, sha256=hashlib.sha256(_jpeg(image)).hexdigest(), pdq=pdq,
                       quality=quality)


def _near_copies(image: Image.Image) -> list[Image.Image]:
    """Edits a re-poster makes that PDQ is built to survive: recompression, brightness, colour, a resize round
    trip. (Crops and overlays move these flat, low-texture pictures' PDQ by 30-80 bits: out of PDQ's reach.)"""
    return [
        Image.open(io.BytesIO(_jpeg(image, quality=40))).convert("RGB"),
        ImageEnhance.Brightness(image).enhance(1.15),
        ImageEnhance.Color(image).enhance(0.85),
        image.resize((180, 180)).resize((256, 256)),
    ]


def test_hamming_matrix_matches_bit_count() -> None:
    rng = np.random.default_rng(0)
    hashes = [rng.bytes(32).hex() for _ in range(6)]
    bits = pdq_bits(hashes)
    expected = [[bin(int(a, 16) ^ int(b, 16)).count("1") for b in hashes] for a in hashes]
    assert hamming_matrix(bits, bits).tolist() == expected


def test_near_duplicates_of_eval_images_leave_train() -> None:
    evaluation, train, planted = [], [], set()
    for i in range(6):
        image = _image(i)
        evaluation.append(_hashed(f"eval-{i}", "holdout" if i % 2 else "val", image))
        for j, copy in enumerate(_near_copies(image)):
            train.append(_hashed(f"copy-{i}-{j}", "train", copy))
            planted.add(f"copy-{i}-{j}")
    originals = [_hashed(f"orig-{i}", "train", _image(100 + i)) for i in range(30)]
    train.extend(originals)
    # A byte-identical copy is dropped even when its PDQ quality would not count.
    twin = evaluation[0].model_copy(update={"post_id": "twin", "split": "train", "quality": 0})
    train.append(twin)

    report = dedup_train(train=train, evaluation=evaluation)
    dropped = {d.post_id: d for d in report.dropped}
    usable_planted = {t.post_id for t in train if t.post_id in planted and (t.quality or 0) >= 50}
    assert usable_planted and usable_planted <= set(dropped)
    assert dropped["twin"].reason == "sha256" and dropped["twin"].distance == 0
    assert dropped["copy-1-0"].nearest_post_id == "eval-1" and dropped["copy-1-0"].nearest_split == "holdout"
    assert report.train_after == len(train) - len(dropped)

    # The guarantee: no kept train image (quality >= 50) within distance 31 of an eval image (quality >= 50).
    kept = [t for t in train if t.post_id not in dropped and (t.quality or 0) >= 50]
    good_eval = [e for e in evaluation if (e.quality or 0) >= 50]
    distances = hamming_matrix(pdq_bits(t.pdq for t in kept), pdq_bits(e.pdq for e in good_eval))
    assert distances.min() > 31
    # and unrelated images mostly survive (the threshold is not so loose that it empties train)
    assert sum(o.post_id not in dropped for o in originals) >= 20


def test_threshold_is_inclusive() -> None:
    base = "00" * 32
    flipped_31 = (int(base, 16) ^ ((1 << 31) - 1)).to_bytes(32, "big").hex()
    flipped_32 = (int(base, 16) ^ ((1 << 32) - 1)).to_bytes(32, "big").hex()
    ev = [HashedImage(post_id="e", split="val", sha256="e" * 64, pdq=base, quality=100)]
    train = [
        HashedImage(post_id="d31", split="train", sha256="a" * 64, pdq=flipped_31, quality=100),
        HashedImage(post_id="d32", split="train", sha256="b" * 64, pdq=flipped_32, quality=100),
        HashedImage(post_id="low", split="train", sha256="c" * 64, pdq=base, quality=10),
    ]
    report = dedup_train(train=train, evaluation=ev)
    assert [d.post_id for d in report.dropped] == ["d31"]
    assert report.low_quality_train == 1


def test_indexed_dedup_equals_brute_force_at_the_threshold() -> None:
    """Planted near-copies at 30, 31 and 32 bits of eval hashes (enough eval hashes that the faiss multi-hash index
    answers, not the small-set scan): the index drops exactly what the dense Hamming matrix says is within 31."""
    from tagwatch.moderation.pdq_index import INDEX_FROM

    rng = np.random.default_rng(19)
    eval_bits = rng.integers(0, 2, size=(INDEX_FROM + 500, 256), dtype=np.uint8)

    def hexed(bits: np.ndarray) -> str:
        return np.packbits(bits).tobytes().hex()

    evaluation = [HashedImage(post_id=f"eval-{i}", split="val", sha256=f"e{i}", pdq=hexed(b), quality=100)
                  for i, b in enumerate(eval_bits)]
    train = []
    for i, distance in enumerate([30, 31, 32] * 40):
        bits = eval_bits[i * 7].copy()
        flip = rng.choice(256, size=distance, replace=False)
        bits[flip] ^= 1
        train.append(HashedImage(post_id=f"near-{i}-{distance}", split="train", sha256=f"t{i}", pdq=hexed(bits),
                                 quality=100))
    train += [HashedImage(post_id=f"far-{i}", split="train", sha256=f"f{i}", pdq=hexed(b), quality=100)
              for i, b in enumerate(rng.integers(0, 2, size=(300, 256), dtype=np.uint8))]

    report = dedup_train(train=train, evaluation=evaluation, threshold=31)
    distances = hamming_matrix(pdq_bits(t.pdq for t in train), pdq_bits(e.pdq for e in evaluation))
    nearest = distances.argmin(axis=1)
    expected = {t.post_id: (evaluation[int(nearest[row])].post_id, int(distances[row, nearest[row]]))
                for row, t in enumerate(train) if distances[row].min() <= 31}
    assert {d.post_id: (d.nearest_post_id, d.distance) for d in report.dropped} == expected
    assert {p.rsplit("-", 1)[1] for p in expected} == {"30", "31"} and len(expected) == 80
