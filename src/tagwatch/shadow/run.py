"""One shadow run, end to end: candidate -> shadow scorer -> records of the range -> replay -> diff -> report.

What `tagwatch shadow run` calls (and a pipeline step could): ``run_shadow(settings, ShadowRequest(...))``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tagwatch.errors import ConfigError
from tagwatch.shadow.report import ShadowReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowRequest:
    candidate: str  # MODEL@VERSION
    policy: str | None = None  # a policy.json path; None: the candidate version's own
    start: str | None = None  # --from: offset or time
    end: str | None = None  # --to
    ledger_range: str | None = None  # FROM..TO
    out_dir: Path | None = None  # None: <state_dir>/shadow/<run id>
    batch_size: int = 64
    top_k: int = 12
    quiet_s: float = 2.0
    wait_s: float = 60.0  # for the shadow model to serve the candidate
    upload: bool = True


def replay_range(request: ShadowRequest, settings, ledger):
    from tagwatch.shadow.source import ledger_range, offsets_range

    if request.ledger_range and (request.start or request.end):
        raise ConfigError("--ledger-range cannot be combined with --from/--to", hint="pick one way to name the range")
    if request.ledger_range:
        return ledger_range(ledger, settings.kafka.topics.posts, request.ledger_range)
    if not (request.start or request.end):
        raise ConfigError("no range to replay", hint="give --from/--to (offsets or times) or --ledger-range FROM..TO")
    return offsets_range(request.start, request.end)


def run_shadow(settings, request: ShadowRequest, *, progress: Callable[[str, int, int | None], None] | None = None
               ) -> ShadowReport:
    """Replay the range through the candidate on the shadow scorer and write (and upload) the diff report.

    ``progress(stage, done, total)``: called while reading and replaying."""
    from tagwatch.clients import s3_client
    from tagwatch.moderation.bank_source import BankSource
    from tagwatch.moderation.bank_store import BankStore
    from tagwatch.moderation.core import ImageSource
    from tagwatch.moderation.ledger import Ledger, LedgerHistory
    from tagwatch.preprocess import DEFAULT_PRESET
    from tagwatch.registry import open_registry
    from tagwatch.serving.client import shadow_client_from_settings
    from tagwatch.shadow.candidate import load_policy, parse_candidate, serve_candidate, shadow_scorer
    from tagwatch.shadow.diff import LedgerReviewerOutcomes, diff, top_changed
    from tagwatch.shadow.replay import replay
    from tagwatch.shadow.report import build_report, upload_report, write_report
    from tagwatch.shadow.source import read_range

    t0 = time.monotonic()
    progress = progress or (lambda *_: None)
    registry = open_registry(settings)
    candidate = parse_candidate(request.candidate, registry)
    policy, policy_source = load_policy(registry, candidate, request.policy)
    s3 = s3_client(settings.s3)
    ledger = Ledger(s3, settings.s3.buckets.ledger)
    rng = replay_range(request, settings, ledger)
    records = read_range(settings.kafka, rng, quiet_s=request.quiet_s,
                         on_batch=lambda n: progress("reading", n, None))
    client = shadow_client_from_settings(settings.triton)
    try:
        serve_candidate(registry, candidate, client, alias=settings.triton.shadow_alias, timeout_s=request.wait_s)
        scorer = shadow_scorer(settings, candidate, client)
        banks = BankSource(BankStore(s3, settings.s3.buckets.models), refresh_s=float("inf")).matcher()
        result = replay(records, scorer=scorer, policy=policy, images=ImageSource(s3, settings.s3.buckets.posts),
                        banks=banks, preset=scorer.preset or DEFAULT_PRESET, ledger=ledger,
                        batch_size=request.batch_size, top_k=request.top_k,
                        on_progress=lambda n: progress("replaying", n, len(records)))
    finally:
        client.close()
    created = datetime.now(timezone.utc)
    run_id = uuid.uuid4().hex[:8]
    top = top_changed(result.pairs, request.top_k)
    thumbnails = {p.post_id: result.thumbnails.get(p.post_id) or _thumbnail(s3, p.image_uri) for p in top}
    report = build_report(
        run_id=run_id, created_at=created, model_name=registry.model_name,
        candidate={"version": candidate.version, "ref": candidate.ref, "metadata_sha256": candidate.metadata_sha256,
                   "policy_version": policy.version, "policy_source": policy_source,
                   "triton_model": settings.triton.shadow_name, "triton_url": settings.triton.shadow_address},
        range_={**rng.to_dict(), "topic": settings.kafka.topics.posts}, result=result,
        diff=diff(result.pairs, reviewers=LedgerReviewerOutcomes(
            LedgerHistory(s3, settings.s3.buckets.ledger).review_outcomes())), top=top, seconds=time.monotonic() - t0)
    out_dir = request.out_dir or settings.paths.state_dir / "shadow" / f"{created:%Y%m%dT%H%M%S}-{run_id}"
    report = write_report(report, thumbnails, out_dir)
    if request.upload:
        report = upload_report(s3, settings.s3.buckets.models, report, out_dir)
    return report


def _thumbnail(s3, image_uri: str) -> bytes:
    """A thumbnail the replay did not keep (a tie at the edge of the top changed posts); empty if unavailable."""
    import io

    from PIL import Image

    from tagwatch.demo.report import jpeg_thumbnail, s3_image_fetcher

    try:
        return jpeg_thumbnail(Image.open(io.BytesIO(s3_image_fetcher(s3)(image_uri))), 96)
    except Exception as error:  # noqa: BLE001 - a missing picture must not lose the report
        log.info("no thumbnail for %s: %s", image_uri, type(error).__name__)
        return b""
