"""Sources: openclipart metadata parsing (incl. a non-UTF-8 keyword), a broken SVG, synthetic determinism,
and the committed JSON Schemas equal the generated ones."""

from __future__ import annotations

import json

import numpy as np

from tagwatch.data.ingest import render_outcome
from tagwatch.data.schemas import generate_schemas, render_schema
from tagwatch.data.sources import SourceItem, openclipart, synthetic
from tagwatch.schemas import SCHEMA_DIR as SCHEMAS

SVG = b"""<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:cc="http://creativecommons.org/ns#" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
     width="100" height="50" viewBox="0 0 100 50">
  <metadata><rdf:RDF><cc:Work><dc:title>Red &amp; blue</dc:title>
    <dc:subject><rdf:Bag>%(keywords)s</rdf:Bag></dc:subject>
    <dc:creator><cc:Agent><dc:title>Jane Artist</dc:title></cc:Agent></dc:creator>
  </cc:Work></rdf:RDF></metadata>
  <rect x="0" y="0" width="50" height="50" fill="#ff0000"/><circle cx="75" cy="25" r="20" fill="#0000ff"/>
</svg>"""


def _svg(*keywords: bytes) -> bytes:
    return SVG % {b"keywords": b"".join(b"<rdf:li>" + k + b"</rdf:li>" for k in keywords)}


def test_parse_metadata_drops_non_utf8_keyword_and_author_name() -> None:
    keywords, bad, title, author = openclipart.parse_metadata(
        _svg(b"square", b"caf\xe9", b"ice  cream", b"Jane Artist", b"jane_artist", b"square")
    )
    assert keywords == ["square", "ice cream"]
    assert bad == 1
    assert title == "Red & blue" and author == "Jane Artist"


def test_render_svg_on_white_square(tmp_path) -> None:
    path = tmp_path / "ok.svg"
    path.write_bytes(_svg(b"square", b"circle"))
    outcome = render_outcome(SourceItem("openclipart", "ok.svg", str(path)))
    assert outcome.error is None and outcome.keywords == ("square", "circle")
    from io import BytesIO

    from PIL import Image

    image = Image.open(BytesIO(outcome.jpeg))
    assert image.size == (256, 256) and image.mode == "RGB"
    assert image.getpixel((128, 10)) == (255, 255, 255) or sum(image.getpixel((128, 10))) > 740  # white letterbox
    r, g, b = image.getpixel((64, 128))
    assert r > 200 and g < 60 and b < 60
    assert len(outcome.pdq) == 64 and 0 <= outcome.pdq_quality <= 100


def test_svg_with_a_non_utf8_keyword_still_renders(tmp_path) -> None:
    path = tmp_path / "badkw.svg"
    path.write_bytes(_svg(b"square", b"caf\xe9"))
    outcome = render_outcome(SourceItem("openclipart", "badkw.svg", str(path)))
    assert outcome.error is None and outcome.keywords == ("square",) and outcome.bad_keywords == 1


def test_broken_svg_and_missing_keywords_are_reasons_not_crashes(tmp_path) -> None:
    broken = tmp_path / "broken.svg"
    broken.write_bytes(_svg(b"square").replace(b"</svg>", b"<rect"))
    empty = tmp_path / "nokw.svg"
    empty.write_bytes(_svg())
    assert render_outcome(SourceItem("openclipart", "broken.svg", str(broken))).error == "render_failed"
    assert render_outcome(SourceItem("openclipart", "nokw.svg", str(empty))).error == "no_keywords"
    assert render_outcome(SourceItem("openclipart", "gone.svg", str(tmp_path / "gone.svg"))).error == "unreadable"


def test_synthetic_is_seeded_and_keywords_follow_the_picture() -> None:
    items = synthetic.list_items(limit=40, seed=3)
    first = [synthetic.render_item(i) for i in items]
    again = [synthetic.render_item(i) for i in synthetic.list_items(limit=40, seed=3)]
    assert [r.image.tobytes() for r in first] == [r.image.tobytes() for r in again]
    singles = set()
    for item, rendered in zip(items, first):
        # colours: read off the pixels (shapes are filled with the exact RGB, no anti-aliasing)
        pixels = np.asarray(rendered.image)
        drawn = {name for name, rgb in synthetic.COLOURS.items() if (pixels == rgb).all(axis=-1).sum() > 50}
        assert drawn == set(rendered.keywords) & set(synthetic.COLOURS), rendered.keywords
        assert set(rendered.keywords) - set(synthetic.COLOURS) <= set(synthetic.SHAPES)
        if len(synthetic.item_spec(3, item.payload["index"])) == 1:  # one shape: recognise it from its pixels alone
            (colour,) = drawn
            shape = _shape_of((pixels == synthetic.COLOURS[colour]).all(axis=-1))
            assert rendered.keywords == [colour, shape], rendered.keywords
            singles.add(shape)
    assert len(singles) >= 3  # the shape check saw several kinds
    other_seed = synthetic.render_item(synthetic.list_items(limit=1, seed=4)[0])
    assert other_seed.image.tobytes() != first[0].image.tobytes()


def _shape_of(mask: "np.ndarray") -> str:
    """Which of the synthetic shapes a filled mask is, from geometry alone (fill ratio of its bounding box, the
    centre, the bottom row, the middle of the left edge)."""
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    box = mask[top:bottom + 1, left:right + 1]
    ratio = box.mean()
    if not mask[(top + bottom) // 2, (left + right) // 2]:
        return "ring"
    if ratio > 0.97:
        return "square"
    if 0.7 < ratio < 0.85:
        return "circle"
    if box[-1].mean() > 0.95:
        return "triangle"
    return "cross" if box[box.shape[0] // 2, 0] else "star"


def test_committed_schemas_equal_generated() -> None:
    generated = generate_schemas()
    committed = {p.name for p in SCHEMAS.glob("*.json")}
    assert set(generated) <= committed
    for name, schema in generated.items():
        assert (SCHEMAS / name).read_text() == render_schema(schema), f"regenerate: python -m tagwatch.data.schemas"
        json.loads((SCHEMAS / name).read_text())
