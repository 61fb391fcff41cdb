"""Moderation categories (a versioned YAML in the package, overridable) and their WordNet closure.

A post's categories come from its original keywords: a keyword belongs to a category when its normalised form
is one of the category's ``hashtags`` or its first noun synset is, or lies below (hypernym closure), one of the
category's ``synsets``, unless it is in the category's ``exclude`` list (a first WordNet sense that is wrong for
this corpus: "hardware" is first military hardware in WordNet, computer hardware in openclipart). Posts in no
category get the ``other`` category.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tagwatch.data.vocab import normalise_tag
from tagwatch.errors import ConfigError


class Category(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = ""
    synsets: list[str] = Field(default_factory=list)
    hashtags: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(
        default_factory=list, description="keywords that never count, whatever WordNet's first sense says"
    )
    severity: float = Field(default=1.0, ge=0, description="weight of this category's recall when the policy "
                            "shares the review budget (train/operating_points.py)")


class Categories(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    other: str = "other"
    categories: dict[str, Category]

    @property
    def names(self) -> list[str]:
        return [*self.categories, self.other]


def default_categories_text() -> str:
    return resources.files("tagwatch.data").joinpath("categories.yaml").read_text(encoding="utf-8")


def load_categories(path: Path | None = None) -> tuple[Categories, str]:
    """The categories and the exact YAML text they came from (the build copies that text next to the shards)."""
    try:
        text = Path(path).read_text(encoding="utf-8") if path else default_categories_text()
    except OSError as error:
        raise ConfigError(f"cannot read categories file {path}: {error}", hint="pass an existing YAML file") from error
    try:
        return Categories.model_validate(yaml.safe_load(text)), text
    except Exception as error:
        raise ConfigError(
            f"invalid categories file {path or '(package default)'}: {' '.join(str(error).split())[:300]}",
            hint="see src/tagwatch/data/categories.yaml for the expected shape",
        ) from error


class CategoryMatcher:
    """Keywords -> category names, with WordNet hypernym closure (memoised per keyword)."""

    def __init__(self, categories: Categories, wordnet: Any) -> None:
        self.categories = categories
        self.wn = wordnet
        self._cache: dict[str, frozenset[str]] = {}
        self._roots = {name: set(c.synsets) for name, c in categories.categories.items()}
        self._tags = {name: {normalise_tag(t) for t in c.hashtags} for name, c in categories.categories.items()}
        self._exclude = {name: {normalise_tag(t) for t in c.exclude} for name, c in categories.categories.items()}
        for name, roots in self._roots.items():
            for root in roots:
                try:
                    wordnet.synset(root)
                except Exception as error:
                    raise ConfigError(
                        f"category {name!r} names {root!r}, which is not a WordNet 3.0 synset",
                        hint="use names such as weapon.n.01 (check with nltk: wn.synset(name))",
                    ) from error

    def keyword_categories(self, keyword: str) -> frozenset[str]:
        token = normalise_tag(keyword)
        if not token:
            return frozenset()
        found = self._cache.get(token)
        if found is None:
            found = self._cache[token] = self._match(token)
        return found

    def _match(self, token: str) -> frozenset[str]:
        hits = {name for name, tags in self._tags.items() if token in tags}
        synsets = self.wn.synsets(token, pos="n")
        if synsets:
            first = synsets[0]
            closure = {first.name()} | {
                s.name() for s in first.closure(lambda s: s.hypernyms() + s.instance_hypernyms())
            }
            hits |= {name for name, roots in self._roots.items() if closure & roots}
        return frozenset(name for name in hits if token not in self._exclude[name])

    def post_categories(self, keywords: Iterable[str]) -> list[str]:
        """Sorted category names of a post; ``[other]`` when none applies."""
        found: set[str] = set()
        for keyword in keywords:
            found |= self.keyword_categories(keyword)
        order = list(self.categories.categories)
        return sorted(found, key=order.index) if found else [self.categories.other]
