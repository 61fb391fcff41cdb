"""Synthetic single-colour posts for smoke tests and the load generator (no dataset needed)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

COLOURS = [(230, 20, 20), (20, 20, 230), (128, 128, 128)]


def colour_jpeg(i: int, size: int = 96) -> bytes:
    rng = np.random.default_rng(i)
    base = np.array(COLOURS[i % len(COLOURS)], dtype=np.int16)
    pixels = np.clip(base + rng.integers(-8, 9, (size, size, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()
