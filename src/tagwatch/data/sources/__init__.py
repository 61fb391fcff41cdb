"""Sources of posts. Each module offers ``list_items(...) -> list[SourceItem]`` (cheap: no file is parsed) and
``render_item(item, size) -> RenderedItem`` (runs in a worker process: parse, render, keywords), ``NAME``,
``source_version()``, and the licence it is under: ``LICENSE`` (an SPDX id), ``ATTRIBUTION`` (the credit line its
licence asks for) and ``URL``; and the training consent its posts carry: ``TRAINING_CONSENT`` or a
``training_consent(post_id)`` function (tagwatch.privacy.consent.source_consent). docs/data.md lists them; the
dataset manifest records them per build."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SOURCES = ("openclipart", "openmoji", "tuxpaint", "synthetic")
# What the demo and the pipeline ingest by default: every real, offline source.
REAL_SOURCES = ("openclipart", "openmoji", "tuxpaint")


@dataclass(frozen=True)
class SourceItem:
    source: str
    ref: str  # stable reference inside the source (a relative path, a seed/index): post_id derives from it
    payload: Any = None  # what render_item needs (a path, generation parameters)


@dataclass
class RenderedItem:
    """What a worker returns: the image (RGB PIL image) and its metadata, or the reason it failed."""

    ref: str
    image: Any = None
    keywords: list[str] = field(default_factory=list)
    title: str = ""
    author: str = ""
    error: str | None = None  # a short reason code, e.g. "render_failed", "no_keywords"
    detail: str = ""
    bad_keywords: int = 0  # keywords dropped because they were not valid UTF-8


def get_source(name: str) -> Any:
    """The module of source ``name`` (ConfigError listing the known ones otherwise)."""
    import importlib

    from tagwatch.errors import ConfigError

    if name not in SOURCES:
        raise ConfigError(f"unknown source {name!r}", hint=f"pick one of: {', '.join(SOURCES)}")
    return importlib.import_module(f"tagwatch.data.sources.{name}")


def parse_sources(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"openclipart,openmoji"`` (or a list, items may hold commas) -> known source names, in order, no repeats."""
    parts = [text] if isinstance(text, str) else list(text)
    names: list[str] = []
    for part in parts:
        for name in str(part).split(","):
            name = name.strip()
            if name and name not in names:
                get_source(name)  # raises on an unknown name
                names.append(name)
    return tuple(names)


def licence_of(name: str) -> dict[str, str | None]:
    """{"license", "attribution", "url"} of a known source; all None for posts of another producer."""
    module = get_source(name) if name in SOURCES else None
    return {key.lower(): getattr(module, key, None) for key in ("LICENSE", "ATTRIBUTION", "URL")}


@dataclass(frozen=True)
class FetchResult:
    source: str
    root: str
    fetched: bool  # True: downloaded now; False: already there (or a Debian package: nothing to fetch)
    note: str = ""


def fetch_sources(names: tuple[str, ...] = REAL_SOURCES) -> list[FetchResult]:
    """Make each source's files present: download the ones that are not Debian packages (``fetch()``), and check
    that the Debian ones are installed (ConfigError with the package to install otherwise). Idempotent."""
    results = []
    for name in names:
        module = get_source(name)
        if hasattr(module, "fetch"):
            root, fetched = module.fetch()
            results.append(FetchResult(name, str(root), fetched, "downloaded and checked" if fetched else "present"))
        elif hasattr(module, "DEFAULT_ROOT"):
            module.list_items(limit=1)  # raises ConfigError naming the Debian package when it is missing
            results.append(FetchResult(name, str(module.DEFAULT_ROOT), False, "Debian package, installed"))
    return results
