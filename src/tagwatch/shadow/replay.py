"""Replay records through the candidate with the production core, and pair each decision with production's.

Each batch goes through ``moderation.core.moderate_batch`` (the stream's own images -> banks -> model -> policy
path) with the shadow scorer and the candidate's policy; nothing is published and nothing is written to the
ledger: the outcomes stay in memory. Production's decision of each post is read from the ledger.

Every record ends in exactly one bucket of the summary: compared (a ``Pair``), ``no_production_decision`` (the
candidate decided it, production has no ledger record), ``image_unavailable`` (its image could not be fetched or
decoded now), ``dead_letter`` (not a valid post.created event: production dead-lettered it too) or
``duplicate`` (its post was already replayed from an earlier record of the range, e.g. a re-drive).
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tagwatch.errors import PoisonInputError, RetryableError, ServingError
from tagwatch.moderation.core import ImageSource, LoadedImage, Outcome, moderate_batch
from tagwatch.moderation.intake import parse_post
from tagwatch.shadow.diff import Pair, Side

log = logging.getLogger(__name__)

SKIP_REASONS = ("no_production_decision", "image_unavailable", "dead_letter", "duplicate")


@dataclass
class ReplayResult:
    records: int = 0
    pairs: list[Pair] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    image_reasons: Counter = field(default_factory=Counter)  # why images were unavailable (dead-letter reasons)
    candidate_only: Counter = field(default_factory=Counter)  # candidate actions of posts production never decided
    thumbnails: dict[str, bytes] = field(default_factory=dict)  # post_id -> JPEG, for the top changed posts only
    production_versions: Counter = field(default_factory=Counter)  # "model vN / policy P" -> posts

    def summary(self) -> dict:
        return {"records": self.records, "replayed": len(self.pairs) + self.skipped["no_production_decision"],
                "compared": len(self.pairs), "skipped": {r: self.skipped[r] for r in SKIP_REASONS},
                "image_unavailable_reasons": dict(self.image_reasons),
                "candidate_actions_without_production_decision": dict(self.candidate_only)}


class Thumbnailer:
    """An image source that keeps a small JPEG of each image it loads (the replay fetches them anyway)."""

    def __init__(self, source: ImageSource, size: int = 96) -> None:
        self.source, self.size = source, size
        self.kept: dict[str, bytes] = {}

    def __call__(self, post) -> LoadedImage:
        from tagwatch.demo.report import jpeg_thumbnail

        loaded = self.source(post)
        self.kept[post.post_id] = jpeg_thumbnail(loaded.image, self.size)
        return loaded


def replay(records: list, *, scorer, policy, images: ImageSource, banks, preset, ledger, batch_size: int = 64,
           top_k: int = 12, retries: int = 3, on_progress: Callable[[int], None] | None = None,
           workers: int = 8) -> ReplayResult:
    """Decide ``records`` with the candidate and pair each with production's ledger decision."""
    result = ReplayResult(records=len(records))
    seen: set[str] = set()
    top: list[tuple[float, str, Pair]] = []  # a min-heap of the top_k score changes
    thumbs = Thumbnailer(images)
    with ThreadPoolExecutor(workers, thread_name_prefix="shadow-fetch") as fetch, \
            ThreadPoolExecutor(1, thread_name_prefix="shadow-infer") as infer, \
            ThreadPoolExecutor(workers, thread_name_prefix="shadow-ledger") as reads:
        for start in range(0, len(records), batch_size):
            chunk = records[start:start + batch_size]
            posts = []
            for record in chunk:
                try:
                    post = parse_post(record)
                except PoisonInputError:
                    result.skipped["dead_letter"] += 1
                    continue
                if post.post_id in seen:
                    result.skipped["duplicate"] += 1
                    continue
                seen.add(post.post_id)
                posts.append(Outcome(post=post, record=record))
            outcomes = _decide(posts, scorer=scorer, policy=policy, images=thumbs, banks=banks, preset=preset,
                               pools=(fetch, infer), retries=retries) if posts else []
            decided = [o for o in outcomes if o.decision is not None]
            for o in outcomes:
                if o.decision is None:
                    result.skipped["image_unavailable"] += 1
                    result.image_reasons[o.poison.reason if o.poison else "retryable"] += 1
            for outcome, production in zip(decided, reads.map(lambda o: ledger.get(o.post.post_id), decided)):
                if production is None:
                    result.skipped["no_production_decision"] += 1
                    result.candidate_only[outcome.decision.action] += 1
                    continue
                pair = _pair(outcome, production)
                result.pairs.append(pair)
                result.production_versions[f"v{production.model.version} / {production.policy_version}"] += 1
                entry = (pair.score_change, pair.post_id, pair)
                if len(top) < top_k:
                    heapq.heappush(top, entry)
                    result.thumbnails[pair.post_id] = thumbs.kept.get(pair.post_id, b"")
                elif entry[:2] > top[0][:2]:
                    dropped = heapq.heapreplace(top, entry)
                    result.thumbnails.pop(dropped[1], None)
                    result.thumbnails[pair.post_id] = thumbs.kept.get(pair.post_id, b"")
            thumbs.kept.clear()  # only the top changed posts keep theirs
            if on_progress is not None:
                on_progress(min(start + batch_size, len(records)))
    return result


def _decide(posts: list[Outcome], *, scorer, policy, images, banks, preset, pools, retries: int) -> list[Outcome]:
    """``moderate_batch``, again on a transient failure of the model server; the shadow alias must stay put."""
    candidate_version = scorer.version
    for attempt in range(retries + 1):
        fresh = [Outcome(post=o.post, record=o.record) for o in posts]
        try:
            return moderate_batch(fresh, images=images, scorer=scorer, banks=banks, policy=policy, preset=preset,
                                  pools=pools)
        except RetryableError as error:
            if scorer.version != candidate_version:
                raise ServingError(f"the shadow alias moved from version {candidate_version} to {scorer.version} "
                                   "during the run", hint="run one shadow replay at a time") from error
            if attempt == retries:
                raise ServingError(f"the shadow scorer failed {retries + 1} times: {error.message}",
                                   hint="is Triton up? `tagwatch stack status`") from error
            log.warning("shadow batch failed (%s); retrying", error.message)
    raise AssertionError("unreachable")


def _pair(outcome: Outcome, production) -> Pair:
    decision = outcome.decision
    return Pair(
        post_id=decision.post_id, image_uri=outcome.post.image_uri,
        production=Side(production.action, dict(production.scores), list(production.reasons),
                        str(production.model.version), production.policy_version),
        candidate=Side(decision.action, dict(decision.scores), list(decision.reasons), str(decision.model.version),
                       decision.policy_version),
    )
