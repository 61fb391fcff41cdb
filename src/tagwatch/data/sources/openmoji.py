"""OpenMoji 17.0.0 (npm ``openmoji``): 4,495 emoji SVGs with human tags, CC BY-SA 4.0.

Fetched once by ``tagwatch data fetch openmoji`` (``make install`` runs it) into
``${XDG_CACHE_HOME:-~/.cache}/tagwatch/sources/openmoji-17.0.0/``: the pinned npm tarball, checked against the
integrity string the npm registry publishes, with only ``data/openmoji.json``, ``color/svg/*.svg`` and the licence
extracted (~23 MB).

One post per emoji of ``data/openmoji.json`` that has a colour SVG, except:

- skin-tone variants (``skintone`` set; 2,030 of them): the same drawing and tags as their base emoji in another
  skin colour, so they would only be near-copies;
- the ``component`` group (skin-tone swatches, hair pieces): not pictures of anything.

Keywords: the emoji's name (``annotation``, the part before any ':', e.g. "kitchen knife", "flag"), then its Unicode
CLDR ``tags`` and OpenMoji's own ``openmoji_tags`` (comma-separated), in that order, without repeats. The name
matters: the CLDR tags of "pill" or "syringe" do not say pill or syringe. Flags' region-code tags ("GA") are dropped.
Title: the annotation. Author: the emoji's designer (``openmoji_author``); the project's attribution is
``ATTRIBUTION``. Derived data (rendered images, datasets that contain them) must be shared alike (CC BY-SA 4.0).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from tagwatch.data.sources import RenderedItem, SourceItem

NAME = "openmoji"
VERSION = "17.0.0"
LICENSE = "CC-BY-SA-4.0"
ATTRIBUTION = ("All emojis designed by OpenMoji - the open-source emoji and icon project "
               "(https://openmoji.org/). License: CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/)")
URL = "https://openmoji.org/"
TRAINING_CONSENT = "granted"  # published by their authors under an open licence that allows reuse
TARBALL_URL = f"https://registry.npmjs.org/openmoji/-/openmoji-{VERSION}.tgz"
# npm view openmoji@17.0.0 dist.integrity (checked against the downloaded tarball's sha512)
INTEGRITY = "sha512-EBnYrNGdcdw+OSXmENeNE1yBNRu6tOraTmoOyUbJkTmvT/+XETp8RZLSJFzD3lrPc5N9CzsyPnRTk0Vp4UaI9w=="
DATA_FILE = "data/openmoji.json"
SVG_DIR = "color/svg"
SKIPPED_GROUPS = frozenset({"component"})
FETCH_COMMAND = "tagwatch data fetch openmoji"
_REGION_CODE = re.compile(r"[A-Z]{2,3}")


def default_root() -> Path:
    from tagwatch.data.sources.download import sources_cache_dir

    return sources_cache_dir() / f"openmoji-{VERSION}"


def source_version() -> str:
    return VERSION


def fetch(target: Path | None = None) -> tuple[Path, bool]:
    """Download and unpack the pinned tarball (idempotent). Returns (directory, whether it fetched now)."""
    from tagwatch.data.sources.download import fetch_tarball

    root = Path(target or default_root())
    fetched = fetch_tarball(url=TARBALL_URL, integrity=INTEGRITY, target=root, wanted=_wanted_member)
    return root, fetched


def _wanted_member(name: str) -> str | None:
    """Tarball member -> where it goes under the root (npm tarballs put everything under ``package/``)."""
    relative = name.split("/", 1)[1] if name.startswith("package/") else None
    if relative is None:
        return None
    if relative in (DATA_FILE, "LICENSE.txt") or (relative.startswith(SVG_DIR + "/") and relative.endswith(".svg")):
        return relative
    return None


def load_entries(root: Path) -> list[dict]:
    """The entries of ``data/openmoji.json`` under ``root``; ConfigError naming the fetch command if absent."""
    path = Path(root) / DATA_FILE
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        from tagwatch.errors import ConfigError

        raise ConfigError(f"OpenMoji is not in {root} ({DATA_FILE} missing)",
                          hint=f"run `{FETCH_COMMAND}` (or `make install`), or pass --source-dir") from error
    except ValueError as error:
        from tagwatch.errors import ConfigError

        raise ConfigError(f"{path} is not valid JSON: {error}", hint=f"remove {root} and run `{FETCH_COMMAND}`") from error
    return entries


def entry_keywords(entry: dict) -> list[str]:
    """The annotation (its part before ':'), CLDR tags, then OpenMoji tags, without repeats (case-insensitive).

    A flag's region code tag ("GA", "GB") is left out: it is not something the picture shows, and WordNet reads such
    codes as other things (GB = sarin)."""
    annotation = " ".join(str(entry.get("annotation") or "").split(":")[0].split())
    keywords: list[str] = [annotation] if annotation else []
    for field in ("tags", "openmoji_tags"):
        for raw in str(entry.get(field) or "").split(","):
            text = " ".join(raw.split())
            if not text or (entry.get("group") == "flags" and _REGION_CODE.fullmatch(text)):
                continue
            if text.lower() not in (k.lower() for k in keywords):
                keywords.append(text)
    return keywords


def is_post(entry: dict) -> bool:
    return not entry.get("skintone") and entry.get("group") not in SKIPPED_GROUPS and bool(entry.get("hexcode"))


def list_items(*, root: Path | None = None, limit: int | None = None, seed: int = 0) -> list[SourceItem]:  # noqa: ARG001
    """One item per base emoji with a colour SVG, sorted by reference (``color/svg/<hexcode>.svg``)."""
    base = Path(root or default_root())
    items = []
    for entry in load_entries(base):
        if not is_post(entry):
            continue
        ref = f"{SVG_DIR}/{entry['hexcode']}.svg"
        path = base / ref
        if not path.is_file():
            continue
        payload = {"path": str(path), "keywords": entry_keywords(entry),
                   "title": " ".join(str(entry.get("annotation") or "").split()),
                   "author": str(entry.get("openmoji_author") or "OpenMoji")}
        items.append(SourceItem(source=NAME, ref=ref, payload=payload))
    items.sort(key=lambda item: item.ref)
    return items[:limit] if limit is not None else items


def keywords_of(item: SourceItem) -> list[str]:
    """The item's keywords without rendering it (for choosing subsets)."""
    return list(item.payload["keywords"])


def copy_items(items: list[SourceItem], target: Path, *, root: Path | None = None) -> None:
    """A smaller OpenMoji root at ``target``: the items' SVGs and their entries of ``data/openmoji.json``."""
    import shutil

    base = Path(root or default_root())
    refs = {item.ref for item in items}
    entries = [e for e in load_entries(base) if is_post(e) and f"{SVG_DIR}/{e['hexcode']}.svg" in refs]
    (target / DATA_FILE).parent.mkdir(parents=True, exist_ok=True)
    (target / DATA_FILE).write_text(json.dumps(entries, ensure_ascii=False, indent=1), encoding="utf-8")
    for item in items:
        (target / item.ref).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.payload["path"], target / item.ref)
    if (base / "LICENSE.txt").is_file():
        shutil.copyfile(base / "LICENSE.txt", target / "LICENSE.txt")


def render_item(item: SourceItem, size: int = 256) -> RenderedItem:
    """Render the emoji's SVG on white, centred in a ``size`` square; keywords from the JSON entry."""
    import cairosvg
    from PIL import Image

    from tagwatch.data.sources.openclipart import on_white_square

    payload = item.payload
    result = RenderedItem(ref=item.ref, keywords=list(payload["keywords"]), title=payload["title"],
                          author=payload["author"])
    if not result.keywords:
        result.error, result.detail = "no_keywords", "no annotation, tags or openmoji_tags"
        return result
    try:
        data = Path(payload["path"]).read_bytes()
    except OSError as error:
        result.error, result.detail = "unreadable", str(error)
        return result
    try:
        png = cairosvg.svg2png(bytestring=data, output_width=size)
        drawn = Image.open(io.BytesIO(png))
        drawn.load()
    except Exception as error:  # cairosvg raises many types (XML, cairo, value errors)
        result.error, result.detail = "render_failed", f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
        return result
    result.image = on_white_square(drawn, size)
    return result
