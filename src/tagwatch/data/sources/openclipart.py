"""Openclipart (Debian ``openclipart-svg``): ~7,458 public-domain SVGs; keywords from ``<dc:subject>``.

Keywords equal to the artist's name are dropped (many artists tag their own name). Symlinked files (duplicates of other files in the package) are skipped. Keywords are decoded one by one as
strict UTF-8; a keyword that is not valid UTF-8 is dropped and counted, the rest of the post is kept.
"""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

from tagwatch.data.sources import RenderedItem, SourceItem

NAME = "openclipart"
LICENSE = "CC-PDDC"  # Debian's copyright file: Creative Commons Public Domain Dedication and Certification
ATTRIBUTION = "Openclipart (https://openclipart.org/), public domain; from Debian's openclipart-svg"
URL = "https://openclipart.org/"
TRAINING_CONSENT = "granted"  # published by their authors under an open licence that allows reuse
DEFAULT_ROOT = Path("/usr/share/openclipart/svg")

_SUBJECT_RE = re.compile(rb"<dc:subject>(.*?)</dc:subject>", re.S)
_LI_RE = re.compile(rb"<rdf:li>(.*?)</rdf:li>", re.S)
_TITLE_RE = re.compile(rb"<dc:title>(.*?)</dc:title>", re.S)
_CREATOR_RE = re.compile(rb"<dc:creator>.*?<dc:title>(.*?)</dc:title>", re.S)


def source_version() -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "openclipart-svg"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def list_items(*, root: Path | None = None, limit: int | None = None, seed: int = 0) -> list[SourceItem]:
    """Every regular ``.svg`` file under ``root``, sorted by relative path (``limit`` takes the first N)."""
    base = Path(root or DEFAULT_ROOT)
    if not base.is_dir():
        from tagwatch.errors import ConfigError

        raise ConfigError(f"openclipart directory {base} not found", hint="apt-get install openclipart-svg")
    files = sorted(p for p in base.rglob("*.svg") if p.is_file() and not p.is_symlink())
    items = [SourceItem(source=NAME, ref=str(p.relative_to(base)), payload=str(p)) for p in files]
    return items[:limit] if limit is not None else items


def parse_metadata(data: bytes) -> tuple[list[str], int, str, str]:
    """(keywords, bad_keyword_count, title, author) from the SVG's RDF metadata."""
    keywords: list[str] = []
    bad = 0
    subject = _SUBJECT_RE.search(data)
    for raw in _LI_RE.findall(subject.group(1)) if subject else []:
        try:
            text = _unescape(raw.decode("utf-8"))
        except UnicodeDecodeError:
            bad += 1
            continue
        text = " ".join(text.split())
        if text and text not in keywords:
            keywords.append(text)
    title_match = _TITLE_RE.search(data)
    creator_match = _CREATOR_RE.search(data)
    title = _decode_loose(title_match.group(1)) if title_match else ""
    author = _decode_loose(creator_match.group(1)) if creator_match else ""
    # Many artists tag their own name: not something an image shows, so it never becomes a hashtag.
    author_key = _squash(author)
    if author_key:
        keywords = [k for k in keywords if _squash(k) != author_key]
    return keywords, bad, title, author


def keywords_of(item: SourceItem) -> list[str]:
    """The item's keywords without rendering it (for choosing subsets)."""
    return parse_metadata(Path(item.payload).read_bytes())[0]


def copy_items(items: list[SourceItem], target: Path) -> None:
    """Copy the items' files to ``target`` at their relative paths: a smaller root with the same post ids."""
    import shutil

    for item in items:
        (target / item.ref).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.payload, target / item.ref)


def render_item(item: SourceItem, size: int = 256) -> RenderedItem:
    """Parse the keywords and render the SVG on white, aspect kept, centred in a ``size`` square."""
    import cairosvg
    from PIL import Image

    path = Path(item.payload)
    try:
        data = path.read_bytes()
    except OSError as error:
        return RenderedItem(ref=item.ref, error="unreadable", detail=str(error))
    keywords, bad, title, author = parse_metadata(data)
    result = RenderedItem(ref=item.ref, keywords=keywords, title=title, author=author, bad_keywords=bad)
    if not keywords:
        result.error, result.detail = "no_keywords", "no usable <dc:subject> keywords"
        return result
    if bad:  # the XML parser rejects the whole file for one bad byte; render the rest (bad bytes -> U+FFFD)
        data = data.decode("utf-8", errors="replace").encode("utf-8")
    try:
        # No url=: relative references must not make the renderer read other local files.
        png = cairosvg.svg2png(bytestring=data, output_width=size)
        drawn = Image.open(io.BytesIO(png))
        drawn.load()
    except Exception as error:  # cairosvg raises many types (XML, entity, cairo, value errors)
        result.error, result.detail = "render_failed", f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
        return result
    result.image = on_white_square(drawn, size)
    return result


def on_white_square(image, size: int):
    """RGBA/any -> RGB ``size`` x ``size``: scaled to fit, centred, composited on white."""
    from PIL import Image

    rgba = image.convert("RGBA")
    if rgba.width > size or rgba.height > size or max(rgba.size) < size:
        scale = size / max(rgba.width, rgba.height, 1)
        rgba = rgba.resize((max(1, round(rgba.width * scale)), max(1, round(rgba.height * scale))), Image.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    canvas.alpha_composite(rgba, ((size - rgba.width) // 2, (size - rgba.height) // 2))
    return canvas.convert("RGB")


def _squash(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


def _decode_loose(raw: bytes) -> str:
    return " ".join(_unescape(raw.decode("utf-8", errors="replace")).split())[:200]
