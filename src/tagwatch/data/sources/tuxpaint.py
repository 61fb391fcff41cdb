"""Tux Paint stamps (Debian ``tuxpaint-stamps-default``): ~950 PNG/SVG stamps, GPL-2.0-or-later.

Each stamp is an image (``NAME.png`` and/or ``NAME.svg``) with ``NAME.txt`` beside it, in a tree of category
folders (``animals/mammals/``, ``food/dessert/``, ``military/ammunition/``, ``medical/`` ...). The ``.txt`` file's
first line is the English description ("A long sword."); the lines after it are translations (``de.utf8=...``),
which are not used. Sound files (``.ogg``/``.wav``) and stamp options (``.dat``) are not used either.

One post per stamp:

- the image is the SVG when there is one, else the PNG (what Tux Paint itself shows);
- ``*_mirror`` / ``*_flip`` images are left out: Tux Paint's pre-drawn mirrored variants of another stamp;
- keywords: the folder names below the stamps root, from the top (``military``, ``ammunition``; digits and
  punctuation split off, so ``00_symbols`` is ``symbols``), then the content words of the English description
  in order (lowercased, possessive "'s" and English stop words dropped: "A long sword." -> ``long``, ``sword``),
  without repeats. A stamp without a ``.txt`` (17 of them, cartoon Tux poses) uses the words of its file name.
- title: the English description; author: the Tux Paint project (per-stamp authors are not recorded).

The same WordNet category closure as every source applies downstream (``sword`` -> weapons, ``syringe`` -> drugs).
"""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

from tagwatch.data.sources import RenderedItem, SourceItem

NAME = "tuxpaint"
PACKAGE = "tuxpaint-stamps-default"
DEFAULT_ROOT = Path("/usr/share/tuxpaint/stamps")
LICENSE = "GPL-2.0-or-later"
ATTRIBUTION = ("Tux Paint stamps (c) 2002-2022 Bill Kendrick and the Tux Paint contributors "
               "(https://tuxpaint.org/), GPL-2.0-or-later; from Debian's tuxpaint-stamps-default")
URL = "https://tuxpaint.org/"
TRAINING_CONSENT = "granted"  # published by their authors under an open licence that allows reuse
AUTHOR = "Tux Paint"
IMAGE_SUFFIXES = (".svg", ".png")  # preference order
VARIANT_SUFFIXES = ("_mirror", "_flip")
STOP_WORDS = frozenset("""
a an the and or but nor of in on at to for from by with without into onto over under up down out off as is are was
were be been being it its it's this that these those there here he she they them his her their our your my we you i
me us who whom which what when where why how than then so too very can could will would should may might must do
does did done has have had not no yes all any some each every one two three also just only like such about after
before again more most other own same named called make makes made s t
""".split())
_WORD_RE = re.compile(r"[a-z]+")


def source_version() -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", PACKAGE], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def list_items(*, root: Path | None = None, limit: int | None = None, seed: int = 0) -> list[SourceItem]:  # noqa: ARG001
    """One item per stamp under ``root`` (SVG preferred over PNG), sorted by relative path."""
    base = Path(root or DEFAULT_ROOT)
    if not base.is_dir():
        from tagwatch.errors import ConfigError

        raise ConfigError(f"Tux Paint stamps directory {base} not found",
                          hint=f"apt-get install {PACKAGE} (`make sysdeps`), or pass --source-dir")
    chosen: dict[Path, Path] = {}
    for suffix in reversed(IMAGE_SUFFIXES):  # later suffixes overwrite: the preferred one wins
        for path in base.rglob(f"*{suffix}"):
            if path.is_file() and not path.stem.endswith(VARIANT_SUFFIXES):
                chosen[path.with_suffix("")] = path
    items = [SourceItem(source=NAME, ref=str(p.relative_to(base)), payload=str(p)) for p in chosen.values()]
    items.sort(key=lambda item: item.ref)
    return items[:limit] if limit is not None else items


def read_description(text: str) -> str:
    """The English description: the first non-empty line that is not a ``lang.utf8=`` translation."""
    for line in text.splitlines():
        line = " ".join(line.split())
        if line and not re.match(r"^[A-Za-z_@]+\.utf-?8\s*=", line, re.I):
            return line
    return ""


def content_words(text: str) -> list[str]:
    """Lowercase words of ``text`` without stop words, possessives or numbers, in order, without repeats."""
    text = text.lower().replace("\u2019", "'").replace("'s ", " ").replace("'s.", ".")
    words: list[str] = []
    for word in _WORD_RE.findall(text):
        if len(word) > 1 and word not in STOP_WORDS and word not in words:
            words.append(word)
    return words


def stamp_keywords(ref: str, description: str) -> list[str]:
    """Folder words (top down) then description words; the file name's words when there is no description."""
    parts = Path(ref).parts
    words: list[str] = []
    for folder in parts[:-1]:
        words += [w for w in _WORD_RE.findall(folder.lower()) if len(w) > 1 and w not in words]
    text = description or Path(parts[-1]).stem.replace("_", " ").replace("-", " ")
    words += [w for w in content_words(text) if w not in words]
    return words


def parse_stamp(path: Path, ref: str) -> tuple[list[str], str]:
    """(keywords, title) of the stamp whose image is ``path``."""
    try:
        description = read_description(path.with_suffix(".txt").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        description = ""
    return stamp_keywords(ref, description), description


def keywords_of(item: SourceItem) -> list[str]:
    """The item's keywords without rendering it (for choosing subsets)."""
    return parse_stamp(Path(item.payload), item.ref)[0]


def copy_items(items: list[SourceItem], target: Path) -> None:
    """Copy the stamps (image and description) to ``target`` at their relative paths."""
    import shutil

    for item in items:
        image = Path(item.payload)
        (target / item.ref).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, target / item.ref)
        if image.with_suffix(".txt").is_file():
            shutil.copyfile(image.with_suffix(".txt"), (target / item.ref).with_suffix(".txt"))


def render_item(item: SourceItem, size: int = 256) -> RenderedItem:
    """Render the stamp (SVG with cairosvg, PNG with Pillow) on white, centred in a ``size`` square."""
    from PIL import Image

    from tagwatch.data.sources.openclipart import on_white_square

    path = Path(item.payload)
    keywords, title = parse_stamp(path, item.ref)
    result = RenderedItem(ref=item.ref, keywords=keywords, title=title, author=AUTHOR)
    if not keywords:
        result.error, result.detail = "no_keywords", "no folder, description or file-name words"
        return result
    try:
        data = path.read_bytes()
    except OSError as error:
        result.error, result.detail = "unreadable", str(error)
        return result
    try:
        if path.suffix == ".svg":
            import cairosvg

            data = cairosvg.svg2png(bytestring=data, output_width=size)
        drawn = Image.open(io.BytesIO(data))
        drawn.load()
    except Exception as error:  # cairosvg / Pillow raise many types
        result.error, result.detail = "render_failed", f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
        return result
    result.image = on_white_square(drawn, size)
    return result
