"""Sources of posts. Each module offers ``list_items(...) -> list[SourceItem]`` (cheap: no file is parsed) and
``render_item(item, size) -> RenderedItem`` (runs in a worker process: parse, render, keywords)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SOURCES = ("openclipart", "synthetic")


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
    from tagwatch.errors import ConfigError

    if name == "openclipart":
        from tagwatch.data.sources import openclipart

        return openclipart
    if name == "synthetic":
        from tagwatch.data.sources import synthetic

        return synthetic
    raise ConfigError(f"unknown source {name!r}", hint=f"pick one of: {', '.join(SOURCES)}")
