"""Moderation categories: the package YAML and its WordNet hypernym closure on real WordNet 3.0."""

from __future__ import annotations

import pytest

from tagwatch.data.categories import CategoryMatcher, load_categories
from tagwatch.data.wordnet import load_wordnet
from tagwatch.errors import ConfigError


@pytest.fixture(scope="module")
def matcher() -> CategoryMatcher:
    categories, _ = load_categories()
    return CategoryMatcher(categories, load_wordnet())


@pytest.mark.parametrize(
    ("keywords", "expected"),
    [
        (["revolver"], ["weapons"]),  # revolver.n.01 -> pistol -> firearm (closure, not in the hashtag list)
        (["grenade"], ["weapons"]),
        (["claymore"], ["weapons"]),  # a sword, two levels under weapon.n.01
        (["stout"], ["alcohol"]),  # stout -> ale? -> beer -> brew -> alcohol
        (["Champagne"], ["alcohol"]),
        (["cigar"], ["tobacco"]),
        (["heroin"], ["drugs"]),
        (["skull", "bottle", "whiskey"], ["violence", "alcohol"]),  # ordered as in the YAML
        (["dog", "tree"], ["other"]),
        (["hardware", "computer"], ["other"]),  # hardware.n.01 is military hardware: excluded in the YAML
        (["shell", "turtle"], ["other"]),
        ([], ["other"]),
    ],
)
def test_post_categories(matcher: CategoryMatcher, keywords: list[str], expected: list[str]) -> None:
    assert matcher.post_categories(keywords) == expected


def test_alcohol_is_not_counted_as_drugs(matcher: CategoryMatcher) -> None:
    # alcohol.n.01 lies under drug_of_abuse.n.01 in WordNet; the drugs category deliberately does not use that root.
    assert matcher.post_categories(["beer"]) == ["alcohol"]


def test_names_include_other() -> None:
    categories, text = load_categories()
    assert categories.names[-1] == "other" and "weapons" in categories.names
    assert "weapons:" in text


def test_unknown_synset_is_a_config_error(tmp_path) -> None:
    path = tmp_path / "cats.yaml"
    path.write_text("version: '9'\ncategories:\n  bad:\n    synsets: [no_such_thing.n.01]\n")
    categories, _ = load_categories(path)
    with pytest.raises(ConfigError, match="no_such_thing"):
        CategoryMatcher(categories, load_wordnet())


def test_invalid_yaml_shape_is_a_config_error(tmp_path) -> None:
    path = tmp_path / "cats.yaml"
    path.write_text("categories: [1, 2]\n")
    with pytest.raises(ConfigError, match="invalid categories file"):
        load_categories(path)


@pytest.mark.parametrize(
    ("keyword", "expected"),
    [  # obvious tags of the OpenMoji / Tux Paint positives, each through the same closure
        ("beer", ["alcohol"]), ("wine", ["alcohol"]), ("cigarette", ["tobacco"]), ("pill", ["drugs"]),
        ("syringe", ["drugs"]), ("knife", ["weapons"]), ("bomb", ["weapons"]), ("blood", ["violence"]),
        ("ammunition", ["weapons"]), ("ashtray", ["tobacco"]),
        # first WordNet senses that are wrong for what carries them (categories.yaml v2 `exclude`)
        ("round", ["other"]), ("slug", ["other"]), ("stiletto", ["other"]), ("dart", ["other"]),
        ("mortar", ["other"]), ("arms", ["other"]), ("bite", ["other"]), ("slash", ["other"]),
        ("sour", ["other"]), ("bitter", ["other"]), ("stinger", ["other"]), ("brew", ["other"]),
    ],
)
def test_new_source_tags(matcher: CategoryMatcher, keyword: str, expected: list[str]) -> None:
    assert matcher.post_categories([keyword]) == expected
