"""Hashtag vocabulary: extraction, normalisation, WordNet canonicalisation, filtering and top-K selection.

Pipeline, per post: ``extract_hashtags(caption)`` -> ``normalise_tag`` (NFKC, '#' stripped, camelCase split,
lowercase, punctuation to '_') -> :class:`Canonicaliser` maps the token to a key: the first (most frequent)
WordNet noun synset of the token or of its base form (``cats`` -> ``cat.n.01``; synonyms such as
``automobile``/``car`` share one), trying a split of joined words (``icecream`` -> ``ice_cream.n.01``) and a
small slang table (``doggo`` -> ``dog``); tokens WordNet does not know stay as themselves.

Over the train split, :func:`build_vocabulary` then counts posts per key, folds rare synsets into a hypernym that
is itself frequent (``puppy.n.01`` -> ``dog.n.01``, within ``fold_depth`` steps), removes stop tags (tags with no
visual meaning: the generic popular tags of captions.py, platform words), too-rare (< ``min_count`` posts) and
too-common (> ``max_doc_fraction`` of posts) keys, and keeps the ``top_k`` most frequent.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from tagwatch.data.captions import GENERIC_TAGS
from tagwatch.data.manifest import Vocabulary, VocabularyLabel, content_hash

HASHTAG_RE = re.compile(r"#([^\s#]+)")

# Tags that say nothing about what the image shows: social-media filler, platform and file-format words.
STOP_TAGS = frozenset(GENERIC_TAGS) | {
    "clipart", "clip_art", "openclipart", "svg", "png", "image", "images", "picture", "pic", "photo", "drawing",
    "illustration", "vector", "graphic", "graphics", "public_domain", "publicdomain", "remix", "media", "file",
    "externalsource", "unsorted", "my", "the", "and", "of", "a", "to", "for", "in", "with", "on", "by", "is",
    "instagram", "insta", "likes", "like", "l4l", "f4f", "selfie", "me", "cool", "nice", "best", "good",
    # openclipart upload metadata rather than picture content ("hash" tags a grab-bag of unrelated uploads)
    "hash", "subject", "unknown", "misc", "other", "stuff",
}

# Internet slang WordNet does not know, mapped to the word it means.
SLANG = {"doggo": "dog", "doge": "dog", "pupper": "puppy", "kitteh": "cat", "kitty": "cat", "birb": "bird"}


def extract_hashtags(caption: str) -> list[str]:
    """Raw hashtags in order of appearance, without the '#' (NFKC first, so full-width '＃' counts too)."""
    return HASHTAG_RE.findall(unicodedata.normalize("NFKC", caption or ""))


def normalise_tag(raw: str) -> str:
    """One raw hashtag -> a lowercase token with words joined by '_' ('' when nothing is left).

    ``#IceCream`` -> ``ice_cream``, ``＃ＤＯＧ`` -> ``dog``, ``#ice-cream`` -> ``ice_cream``.
    """
    text = unicodedata.normalize("NFKC", raw).strip().lstrip("#")
    # camelCase / PascalCase boundaries (not ALLCAPS): "IceCream" -> "Ice_Cream".
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", text)
    text = text.lower()
    text = re.sub(r"[^\w]+", "_", text)
    text = re.sub(r"_+", "_", text).strip("_")
    if not text or text.isdigit() or len(text) < 2:
        return ""
    return text


@dataclass(frozen=True)
class CanonicalTag:
    key: str  # synset name ("dog.n.01") or the token itself when WordNet does not know it
    name: str  # the label's display name: the synset's first lemma ("dog") or the token
    synset: str | None


class Canonicaliser:
    """token -> CanonicalTag via WordNet, memoised (a corpus has a few thousand distinct tokens)."""

    def __init__(self, wordnet: Any) -> None:
        self.wn = wordnet
        self._cache: dict[str, CanonicalTag] = {}

    def canonical(self, token: str) -> CanonicalTag:
        found = self._cache.get(token)
        if found is None:
            found = self._cache[token] = self._lookup(token)
        return found

    def _lookup(self, token: str) -> CanonicalTag:
        word = SLANG.get(token, token)
        synset = self.first_synset(word)
        if synset is None and "_" not in word and len(word) >= 6:
            synset = self._split_joined(word)
        if synset is None:
            return CanonicalTag(key=token, name=token, synset=None)
        return CanonicalTag(key=synset.name(), name=synset.lemmas()[0].name().lower(), synset=synset.name())

    def first_synset(self, word: str) -> Any | None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            synsets = self.wn.synsets(word, pos="n")
        return synsets[0] if synsets else None

    def _split_joined(self, word: str) -> Any | None:
        # "policecar" -> "police_car": the longest-head split WordNet knows as one noun.
        for i in range(len(word) - 3, 2, -1):
            synset = self.first_synset(word[:i] + "_" + word[i:])
            if synset is not None:
                return synset
        return None

    def hypernym_keys(self, key: str, depth: int) -> list[str]:
        """Synset keys up to ``depth`` hypernym steps above ``key``, nearest first (breadth-first)."""
        try:
            start = self.wn.synset(key)
        except Exception:  # not a synset key (a plain token)
            return []
        seen: list[str] = []
        frontier = [start]
        for _ in range(depth):
            frontier = [h for s in frontier for h in s.hypernyms() + s.instance_hypernyms()]
            for h in frontier:
                if h.name() not in seen:
                    seen.append(h.name())
        return seen


@dataclass(frozen=True)
class VocabConfig:
    top_k: int = 1000
    min_count: int = 5
    max_doc_fraction: float = 0.5
    fold_depth: int = 2
    stop_tags: frozenset[str] = STOP_TAGS


@dataclass
class VocabReport:
    """What happened to the tags: the numbers `tagwatch data vocab` prints."""

    posts: int = 0
    raw_tags: int = 0
    distinct_tokens: int = 0
    distinct_keys: int = 0
    stop_tags: int = 0
    folded: dict[str, str] = field(default_factory=dict)
    too_rare: int = 0
    too_common: list[str] = field(default_factory=list)
    beyond_top_k: int = 0


def post_keys(caption: str, canonicaliser: Canonicaliser, stop_tags: frozenset[str] = STOP_TAGS) -> list[str]:
    """The canonical keys of one caption's hashtags, stop tags removed, unique in order."""
    keys: dict[str, None] = {}
    for raw in extract_hashtags(caption):
        token = normalise_tag(raw)
        if not token or token in stop_tags:
            continue
        tag = canonicaliser.canonical(token)
        if tag.name in stop_tags:
            continue
        keys[tag.key] = None
    return list(keys)


def build_vocabulary(
    *,
    captions: Iterable[str],
    canonicaliser: Canonicaliser,
    version: str = "",
    config: VocabConfig = VocabConfig(),
) -> tuple[Vocabulary, dict[str, str], VocabReport]:
    """The vocabulary of the given (train) captions.

    Returns (vocabulary, key_map, report): ``key_map`` maps every canonical key seen to the key of the label it
    ended in (after folding), so ``labels_for`` can label any post with the same rules.
    """
    report = VocabReport()
    per_post: list[list[str]] = []
    tokens_seen: set[str] = set()
    for caption in captions:
        report.posts += 1
        raws = extract_hashtags(caption)
        report.raw_tags += len(raws)
        for raw in raws:
            token = normalise_tag(raw)
            if token:
                tokens_seen.add(token)
                if token in config.stop_tags:
                    report.stop_tags += 1
        per_post.append(post_keys(caption, canonicaliser, config.stop_tags))
    report.distinct_tokens = len(tokens_seen)
    return vocabulary_from_keysets(Counter(tuple(keys) for keys in per_post), canonicaliser=canonicaliser,
                                   version=version, config=config, report=report)


def vocabulary_from_keysets(
    keysets: Counter[tuple[str, ...]], *, canonicaliser: Canonicaliser, version: str = "",
    config: VocabConfig = VocabConfig(), report: VocabReport | None = None,
) -> tuple[Vocabulary, dict[str, str], VocabReport]:
    """``build_vocabulary`` from counts of posts per set of canonical keys (a post's ``post_keys``; the empty set
    counts too). Counts are additive, so the map tasks of a build count their own posts and the reduce adds them up:
    the result is the one the captions would give in one pass."""
    report = report or VocabReport()
    report.posts = sum(keysets.values())
    counts: Counter[str] = Counter()
    for keys, n in keysets.items():
        for key in keys:
            counts[key] += n
    report.distinct_keys = len(counts)

    key_map = {key: key for key in counts}
    # Fold rare synsets into a frequent hypernym (rarest first, so chains settle on frequent ancestors).
    for key in sorted(counts, key=lambda k: (counts[k], k)):
        if counts[key] >= config.min_count:
            continue
        for parent in canonicaliser.hypernym_keys(key, config.fold_depth):
            if counts.get(parent, 0) >= config.min_count:
                key_map[key] = parent
                report.folded[key] = parent
                break

    label_counts: Counter[str] = Counter()
    for keys, n in keysets.items():
        for key in {key_map[k] for k in keys}:
            label_counts[key] += n
    limit = config.max_doc_fraction * max(report.posts, 1)
    kept: list[tuple[str, int]] = []
    for key, count in sorted(label_counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if count < config.min_count:
            report.too_rare += 1
        elif count > limit:
            report.too_common.append(key)
        else:
            kept.append((key, count))
    report.beyond_top_k = max(0, len(kept) - config.top_k)
    kept = kept[: config.top_k]

    names = _display_names([key for key, _ in kept], canonicaliser)
    aliases: dict[str, set[str]] = {}
    for key, target in key_map.items():
        if key != target:
            aliases.setdefault(target, set()).add(canonicaliser_name(key, canonicaliser))
    labels = [
        VocabularyLabel(
            index=i,
            name=names[key],
            synset=key if _is_synset(key) else None,
            count=count,
            aliases=sorted(aliases.get(key, set()) - {names[key]}),
        )
        for i, (key, count) in enumerate(kept)
    ]
    digest = content_hash([label.model_dump(mode="json") for label in labels])
    vocabulary = Vocabulary(version=version or f"vocab-{digest[:12]}", labels=labels, sha256=digest)
    final = {key: target for key, target in key_map.items() if target in names}
    return vocabulary, final, report


def labels_for(keys: Iterable[str], key_map: dict[str, str], index_of: dict[str, int]) -> list[int]:
    """Sorted unique vocabulary indices of a post's canonical keys."""
    return sorted({index_of[key_map[k]] for k in keys if k in key_map and key_map[k] in index_of})


def label_index(vocabulary: Vocabulary) -> dict[str, int]:
    """canonical key (synset name or plain token) -> label index."""
    return {(label.synset or label.name): label.index for label in vocabulary.labels}


def canonicaliser_name(key: str, canonicaliser: Canonicaliser) -> str:
    if _is_synset(key):
        try:
            return canonicaliser.wn.synset(key).lemmas()[0].name().lower()
        except Exception:
            return key
    return key


def _is_synset(key: str) -> bool:
    return re.fullmatch(r".+\.[nvasr]\.\d\d", key) is not None


def _display_names(keys: list[str], canonicaliser: Canonicaliser) -> dict[str, str]:
    """First lemma per synset; when two labels would share a name, the less frequent keeps its synset name."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for key in keys:
        name = canonicaliser_name(key, canonicaliser)
        names[key] = key if name in used else name
        used.add(names[key])
    return names
