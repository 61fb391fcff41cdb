"""``caption.spam``: transparent spam heuristics on the caption. Each feature is named, and so is its share.

  feature          value                                       contributes (capped)
  link_shortener   links to a known URL shortener (bit.ly ...)  0.5 if any
  links            links of any kind                            0.15 each, at most 0.3
  hashtag_stuffing hashtags beyond 8                            0.05 each, at most 0.4
  repetition       share of repeated words (>= 6 words), or     (share - 0.3) x 1.0, at most 0.4
                   a run of 4+ identical words or characters    0.3
  bait_phrases     "free followers", "dm me", "link in bio" ... 0.25 each, at most 0.5
  shouting         upper-case share of >= 20 letters, > 0.7     0.15

``spam`` = the sum, capped at 1. Scores carry the total (``spam``) and each non-zero contribution
(``spam.<feature>``), so a policy rule can name one feature (``caption.spam:spam.link_shortener``). The weights are
hand-set, not fitted: no labelled spam captions exist offline (docs/policy.md), hence monitor mode by default.
Bump ``VERSION`` whenever a weight, list or threshold changes: decisions record it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from tagwatch.moderation.events import SignalScore
from tagwatch.moderation.policy import CategoryRule

VERSION = "heuristics-1"
CATEGORY = "spam"
SHORTENERS = frozenset({"bit.ly", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "buff.ly", "cutt.ly",
                        "rebrand.ly", "shorturl.at", "tiny.cc", "rb.gy", "t.ly", "s.id", "lnkd.in", "bl.ink"})
BAIT_PHRASES = ("free followers", "dm me", "dm for", "link in bio", "click the link", "check my profile",
                "earn $", "make money", "work from home", "crypto giveaway", "giveaway", "promo code",
                "whatsapp me", "follow for follow", "f4f", "l4l", "100% free", "limited offer", "act now")
# Every pattern is matched against one whitespace-separated token at a time (at most MAX_TOKEN characters), never
# the whole caption: a hostile 10,000-character caption then costs milliseconds, not the quadratic backtracking
# an unanchored URL pattern does on "a.a.a.a...".
MAX_TOKEN = 200
URL = re.compile(r"(?:https?://)?(?:www\.)?((?:[a-z0-9-]+\.)+[a-z]{2,})(?:[/?#]\S*)?", re.IGNORECASE)
HASHTAG = re.compile(r"#\w+")
WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
CHAR_RUN = re.compile(r"(\S)\1{5,}")


def spam_features(text: str) -> dict[str, float]:
    """Each feature's contribution to the spam score (only those that fired)."""
    lower = text.lower()
    tokens = [t[:MAX_TOKEN] for t in lower.split()]
    hosts = [host for host in map(_link_host, tokens) if host]
    hashtags = sum(len(HASHTAG.findall(t)) for t in tokens)
    words = [w for t in tokens if not t.startswith("#") for w in WORD.findall(t)]
    letters = [c for c in text if c.isalpha()]
    out = {
        "link_shortener": 0.5 if any(h in SHORTENERS for h in hosts) else 0.0,
        "links": min(0.3, 0.15 * len(hosts)),
        "hashtag_stuffing": min(0.4, 0.05 * max(0, hashtags - 8)),
        "repetition": _repetition(words, tokens),
        "bait_phrases": min(0.5, 0.25 * sum(phrase in lower for phrase in BAIT_PHRASES)),
        "shouting": 0.15 if len(letters) >= 20 and sum(c.isupper() for c in letters) / len(letters) > 0.7 else 0.0,
    }
    return {k: round(v, 4) for k, v in out.items() if v > 0}


def _link_host(token: str) -> str | None:
    """The host of a token that is a link (a scheme, www., or a known shortener's host), else None."""
    match = URL.fullmatch(token.strip(".,;:!?()[]\"'"))
    if match is None:
        return None
    host = match.group(1)
    return host if token.startswith(("http", "www")) or host in SHORTENERS else None


def _repetition(words: list[str], tokens: list[str]) -> float:
    share = 0.0
    if len(words) >= 6:
        counts = Counter(words)
        share = sum(n - 1 for n in counts.values()) / len(words)
    runs = any(CHAR_RUN.search(t) for t in tokens) or any(
        words[i] == words[i + 1] == words[i + 2] == words[i + 3] for i in range(len(words) - 3))
    return min(0.4, max(0.0, share - 0.3, 0.3 if runs else 0.0))


class SpamHeuristics:
    name = "caption.spam"
    version = VERSION
    rules = {CATEGORY: CategoryRule(
        mode="monitor", monitor_threshold=0.6, inputs=(f"caption.spam:{CATEGORY}",),
        reason="hand-set heuristics with no labelled captions to calibrate on: recorded and counted, never "
               "actioned until a policy names spam")}

    def score(self, texts: Sequence[str]) -> list[SignalScore]:
        out = []
        for text in texts:
            features = spam_features(text or "")
            total = round(min(1.0, sum(features.values())), 4)
            scores = {CATEGORY: total, **{f"{CATEGORY}.{k}": v for k, v in features.items()}}
            detail = ", ".join(f"{k}+{v:g}" for k, v in features.items())
            out.append(SignalScore(name=self.name, version=self.version, scores=scores, detail=detail))
        return out
