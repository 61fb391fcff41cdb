"""Hashtag normalisation and canonicalisation against the real WordNet 3.0 files (Debian wordnet-base)."""

from __future__ import annotations

import pytest

from tagwatch.data.vocab import (
    Canonicaliser,
    VocabConfig,
    build_vocabulary,
    extract_hashtags,
    label_index,
    labels_for,
    normalise_tag,
    post_keys,
)
from tagwatch.data.wordnet import lexnames_text, load_wordnet


@pytest.fixture(scope="module")
def canonicaliser() -> Canonicaliser:
    return Canonicaliser(load_wordnet())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("#Dog", "dog"),
        ("IceCream", "ice_cream"),
        ("ice-cream", "ice_cream"),
        ("＃ＤＯＧ", "dog"),  # full-width: NFKC folds it
        ("DOGS", "dogs"),  # all caps is not camelCase
        ("#2024", ""),
        ("x", ""),
        ("__", ""),
    ],
)
def test_normalise_tag(raw: str, expected: str) -> None:
    assert normalise_tag(raw) == expected


def test_extract_hashtags_reads_fullwidth_and_ignores_text() -> None:
    assert extract_hashtags("new drawing: a dog #Dog #cute＃cat no#tag") == ["Dog", "cute", "cat", "tag"]
    assert extract_hashtags("") == []


def test_lexnames_is_the_45_line_wordnet_file() -> None:
    lines = lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[44] == "44\tadj.ppl\t3" and lines[5] == "05\tnoun.animal\t1"


@pytest.mark.parametrize(
    ("token", "key", "name"),
    [
        ("cats", "cat.n.01", "cat"),  # plural -> base form (morphy)
        ("dog", "dog.n.01", "dog"),
        ("automobile", "car.n.01", "car"),  # synonyms share a synset
        ("car", "car.n.01", "car"),
        ("icecream", "ice_cream.n.01", "ice_cream"),  # joined words split where WordNet knows the compound
        ("doggo", "dog.n.01", "dog"),  # slang table
        ("puppies", "puppy.n.01", "puppy"),
    ],
)
def test_canonical_real_wordnet(canonicaliser: Canonicaliser, token: str, key: str, name: str) -> None:
    tag = canonicaliser.canonical(token)
    assert (tag.key, tag.name, tag.synset) == (key, name, key)


def test_unknown_token_stays_itself(canonicaliser: Canonicaliser) -> None:
    tag = canonicaliser.canonical("kwaakwaa")
    assert (tag.key, tag.name, tag.synset) == ("kwaakwaa", "kwaakwaa", None)


def test_post_keys_drop_stop_tags_and_merge_variants(canonicaliser: Canonicaliser) -> None:
    keys = post_keys("my pet #Dogs #dog #doggo #photooftheday #love #Automobile", canonicaliser)
    assert keys == ["dog.n.01", "car.n.01"]


def _corpus() -> list[str]:
    # 12 posts: dog frequent, puppy rare (folds into dog: puppy.n.01's hypernym), cat frequent,
    # "clipart" a stop tag, "zzyzx" too rare, "thing" on every post (too common at max_doc_fraction 0.9).
    captions = []
    for i in range(12):
        tags = ["#thing", "#clipart"]
        if i < 6:
            tags.append("#dog" if i % 2 else "#Dogs")
        if i >= 6:
            tags.append("#cats")
        if i == 11:
            tags.append("#puppy")
        if i == 0:
            tags.append("#zzyzx")
        captions.append(" ".join(tags))
    return captions


def test_build_vocabulary_folds_filters_and_counts(canonicaliser: Canonicaliser) -> None:
    config = VocabConfig(min_count=3, max_doc_fraction=0.9, top_k=10)
    vocabulary, key_map, report = build_vocabulary(captions=_corpus(), canonicaliser=canonicaliser, config=config)
    by_name = {label.name: label for label in vocabulary.labels}
    assert set(by_name) == {"dog", "cat"}
    assert by_name["dog"].count == 7  # 6 dog posts + the puppy post folded into dog
    assert by_name["dog"].aliases == ["puppy"]
    assert by_name["dog"].synset == "dog.n.01"
    assert report.folded == {"puppy.n.01": "dog.n.01"}
    assert "thing.n.01" in report.too_common
    assert report.too_rare >= 1  # zzyzx
    assert report.stop_tags == 12  # clipart on every post
    assert [label.index for label in vocabulary.labels] == list(range(len(vocabulary.labels)))
    # Labels of a new post follow the same rules.
    index_of = label_index(vocabulary)
    keys = post_keys("#puppy #cat #zzyzx", canonicaliser)
    assert labels_for(keys, key_map, index_of) == sorted([by_name["dog"].index, by_name["cat"].index])


def test_vocabulary_hash_is_stable_and_top_k_applies(canonicaliser: Canonicaliser) -> None:
    config = VocabConfig(min_count=3, max_doc_fraction=0.9, top_k=1)
    first, _, report = build_vocabulary(captions=_corpus(), canonicaliser=canonicaliser, config=config)
    second, _, _ = build_vocabulary(captions=_corpus(), canonicaliser=canonicaliser, config=config)
    assert first.sha256 == second.sha256 and first.version == second.version
    assert [label.name for label in first.labels] == ["dog"]
    assert report.beyond_top_k == 1
