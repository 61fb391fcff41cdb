"""Synthetic posts: procedural images of coloured shapes whose keywords follow from what is drawn.

Fast (~1 ms an image), seeded (item ``i`` of seed ``s`` is always the same picture), no files needed: unit tests
and the demo's quick mode rely on it. Keywords are the colour and shape names, e.g. ``["red", "circle",
"blue", "square"]``, all real WordNet nouns so canonicalisation has work to do.
"""

from __future__ import annotations

import hashlib
import random

from tagwatch.data.sources import RenderedItem, SourceItem

NAME = "synthetic"
VERSION = "2"  # 2: a shape covered by later ones (all but <= MIN_VISIBLE_PIXELS) gives no keywords (~1 % of items)
MIN_VISIBLE_PIXELS = 50

COLOURS = {
    "red": (220, 30, 30), "green": (30, 160, 60), "blue": (30, 70, 220), "yellow": (240, 210, 20),
    "purple": (130, 40, 160), "orange": (250, 140, 20), "black": (20, 20, 20), "pink": (245, 120, 180),
}
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")


def source_version() -> str:
    return VERSION


def list_items(*, root=None, limit: int | None = None, seed: int = 0) -> list[SourceItem]:
    """``limit`` items (default 500) of the given seed."""
    count = 500 if limit is None else limit
    return [SourceItem(source=NAME, ref=f"seed{seed}/{i:06d}", payload={"seed": seed, "index": i}) for i in range(count)]


def item_spec(seed: int, index: int) -> list[tuple[str, str, tuple[int, int, int]]]:
    """The shapes of one image: (shape, colour, (cx, cy, radius)) for 1-3 shapes."""
    rng = random.Random(int.from_bytes(hashlib.sha256(f"synthetic:{seed}:{index}".encode()).digest()[:8], "big"))
    spec = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        radius = rng.randint(30, 70)
        spec.append(
            (
                rng.choice(SHAPES),
                rng.choice(sorted(COLOURS)),
                (rng.randint(radius, 256 - radius), rng.randint(radius, 256 - radius), radius),
            )
        )
    return spec


def render_item(item: SourceItem, size: int = 256) -> RenderedItem:
    from PIL import Image, ImageDraw

    spec = item_spec(item.payload["seed"], item.payload["index"])
    image = Image.new("RGB", (256, 256), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    # which shape owns each pixel: a shape that later ones cover entirely is not in the picture, nor in its keywords
    owner = Image.new("L", (256, 256), 0)
    owner_draw = ImageDraw.Draw(owner)
    for n, (shape, colour, (cx, cy, r)) in enumerate(spec, start=1):
        _draw_shape(draw, shape, COLOURS[colour], cx, cy, r)
        _draw_shape(owner_draw, shape, n, cx, cy, r)
    counts = owner.histogram()
    keywords: list[str] = []
    for n, (shape, colour, _) in enumerate(spec, start=1):
        if counts[n] > MIN_VISIBLE_PIXELS:
            keywords.extend(k for k in (colour, shape) if k not in keywords)
    if size != 256:
        image = image.resize((size, size), Image.LANCZOS)
    names = " and ".join(f"{c} {s}" for n, (s, c, _) in enumerate(spec, start=1) if counts[n] > MIN_VISIBLE_PIXELS)
    return RenderedItem(ref=item.ref, image=image, keywords=keywords, title=names, author=f"synth{item.payload['index'] % 37}")


def _draw_shape(draw, shape: str, fill: tuple[int, int, int], cx: int, cy: int, r: int) -> None:
    import math

    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(4, r // 4))
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    elif shape == "cross":
        w = max(6, r // 3)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
    else:  # star
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy - radius * math.sin(angle)))
        draw.polygon(points, fill=fill)
