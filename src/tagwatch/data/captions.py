"""The caption noise model: an image's keywords become a caption that looks like a real post.

Mahajan et al. (2018) trained on what people write, not on curated labels, so the captions here carry the same
kinds of noise, each at a documented rate and drawn from a generator seeded by ``(seed, post_id)`` (the same
post always gets the same caption):

* dropped tags: each keyword is kept with probability ``keep`` (0.8); at least one survives;
* multi-word keywords are joined ("ice cream" -> ``#icecream``), camel-cased (``#IceCream``, 30 %) or
  snake-cased (``#ice_cream``, 20 %);
* case variants: ``#Dog`` (15 %), ``#DOG`` (5 %);
* plural variants: ``#dogs`` (10 %);
* misspellings: two adjacent letters swapped or one letter dropped (3 %, words of 5+ letters);
* generic popular tags (``#love #photooftheday ...``) drawn at Zipfian rates (weight 1/rank^1.1), on average
  ~1.5 per post; they carry no visual meaning and the vocabulary's stoplist removes them;
* a short free-text lead ("new drawing: <title>") half of the time, and tags in shuffled order.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

GENERIC_TAGS = (
    "love", "instagood", "photooftheday", "art", "beautiful", "happy", "cute", "picoftheday", "follow",
    "like4like", "instadaily", "fun", "repost", "nofilter", "followme", "style", "tbt", "amazing", "design",
    "creative", "mood", "weekend", "vibes", "inspiration", "today", "new", "share", "daily", "wow", "myart",
)

LEADS = (
    "new drawing: {title}", "{title}", "made this today - {title}", "check out my {title}!", "{title} :)",
    "just finished {title}", "sharing {title} with you all",
)


@dataclass(frozen=True)
class CaptionNoise:
    """Rates of each kind of noise (see the module docstring)."""

    keep: float = 0.8
    camel: float = 0.3
    snake: float = 0.2
    capitalised: float = 0.15
    upper: float = 0.05
    plural: float = 0.10
    misspell: float = 0.03
    generic_mean: float = 1.5
    lead: float = 0.5
    zipf_exponent: float = 1.1


def post_rng(seed: int, post_id: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{post_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def make_caption(
    *, keywords: list[str], post_id: str, title: str = "", seed: int = 0, noise: CaptionNoise = CaptionNoise()
) -> str:
    """A caption with hashtags derived from ``keywords``; deterministic in (seed, post_id, keywords, title)."""
    rng = post_rng(seed, post_id)
    words = [k for k in (" ".join(k.split()) for k in keywords) if k]
    if not words:
        return ""
    kept = [w for w in words if rng.random() < noise.keep] or [rng.choice(words)]
    tags = [_noisy_hashtag(w, rng, noise) for w in kept]
    tags = [t for t in tags if t]
    tags.extend(_generic_tags(rng, noise))
    rng.shuffle(tags)
    hashtags = " ".join("#" + t for t in dict.fromkeys(tags))
    lead = ""
    if title.strip() and rng.random() < noise.lead:
        lead = rng.choice(LEADS).format(title=" ".join(title.split())[:80]) + " "
    return (lead + hashtags).strip()


def _noisy_hashtag(keyword: str, rng: random.Random, noise: CaptionNoise) -> str:
    parts = [p for p in re.split(r"[^\w]+", keyword) if p]
    if not parts:
        return ""
    if len(parts) > 1:
        roll = rng.random()
        if roll < noise.camel:
            return "".join(p[:1].upper() + p[1:].lower() for p in parts)
        if roll < noise.camel + noise.snake:
            return "_".join(p.lower() for p in parts)
        word = "".join(p.lower() for p in parts)
    else:
        word = parts[0].lower()
    if len(word) >= 3 and not word.endswith("s") and rng.random() < noise.plural:
        word += "s"
    if len(word) >= 5 and rng.random() < noise.misspell:
        word = _misspell(word, rng)
    roll = rng.random()
    if roll < noise.upper:
        return word.upper()
    if roll < noise.upper + noise.capitalised:
        return word[:1].upper() + word[1:]
    return word


def _misspell(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    if rng.random() < 0.5:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i + 1 :]


def _generic_tags(rng: random.Random, noise: CaptionNoise) -> list[str]:
    weights = [1.0 / (rank + 1) ** noise.zipf_exponent for rank in range(len(GENERIC_TAGS))]
    # A geometric count with the configured mean: p(stop) = 1 / (1 + mean).
    count = 0
    while rng.random() > 1.0 / (1.0 + noise.generic_mean) and count < 8:
        count += 1
    return rng.choices(GENERIC_TAGS, weights=weights, k=count)
