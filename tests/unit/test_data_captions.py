"""The caption noise model: deterministic per (seed, post_id), and each kind of noise really occurs."""

from __future__ import annotations

from tagwatch.data.captions import GENERIC_TAGS, make_caption
from tagwatch.data.vocab import extract_hashtags

KEYWORDS = ["dog", "ice cream", "red balloon", "park", "summer"]


def test_same_seed_same_caption_other_seed_other_caption() -> None:
    first = make_caption(keywords=KEYWORDS, post_id="p-1", title="a dog", seed=7)
    assert first == make_caption(keywords=KEYWORDS, post_id="p-1", title="a dog", seed=7)
    others = {make_caption(keywords=KEYWORDS, post_id="p-1", title="a dog", seed=s) for s in range(8, 20)}
    assert len(others - {first}) >= 10


def test_empty_keywords_give_empty_caption() -> None:
    assert make_caption(keywords=[], post_id="p-1") == ""
    assert make_caption(keywords=["  ", ""], post_id="p-1") == ""


def test_noise_kinds_occur_at_plausible_rates() -> None:
    captions = [make_caption(keywords=KEYWORDS, post_id=f"p-{i}", title="t", seed=1) for i in range(600)]
    tags = [extract_hashtags(c) for c in captions]
    assert all(t for t in tags)  # at least one keyword always survives
    lowered = [{t.lower() for t in ts} for ts in tags]
    kept_dog = sum(("dog" in s) or ("dogs" in s) for s in lowered) / len(tags)
    assert 0.6 < kept_dog < 0.9  # keep rate 0.8 (misspellings take a little)
    generic = sum(any(t in GENERIC_TAGS for t in s) for s in lowered) / len(tags)
    assert 0.4 < generic < 0.8  # geometric count with mean 1.5: P(>=1) = 0.6
    flat = [t for ts in tags for t in ts]
    assert any(t == "IceCream" for t in flat) and any(t == "ice_cream" for t in flat) and "icecream" in flat
    assert any(t.isupper() for t in flat) and any(t[:1].isupper() and t[1:].islower() for t in flat)
    assert "dogs" in flat  # plural variant
    known = {"dog", "dogs", "park", "parks", "summer", "summers", "icecream", "icecreams", "redballoon"}
    assert any(t.lower() not in known and t.lower() not in GENERIC_TAGS and "_" not in t
               and t not in {"IceCream", "RedBalloon"} and not t.lower().startswith("redballoon")
               and not t.lower().startswith("icecream") for t in flat)  # some misspelling
    # Zipf: the most popular generic tag is used more than the tenth.
    counts = {g: flat.count(g) for g in GENERIC_TAGS}
    assert counts[GENERIC_TAGS[0]] > counts[GENERIC_TAGS[9]]
