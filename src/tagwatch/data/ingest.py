"""`tagwatch data ingest`: render a source's items, write images and post records to the posts bucket.

Resumable: one listing of ``posts/<source>/`` says what exists; those items are not rendered again. A post
record is written only after its image, so a record always points at an image that is there. Items that cannot
become posts (an SVG that does not render, no keywords, an empty caption) are logged with the reason, counted
in the report (also written to ``reports/<source>/ingest.json``) and skipped; nothing stops the run. Items skipped
for a reason that will not change (a broken SVG, no keywords) are remembered in that report and not tried again
unless ``retry_skipped``; a render that timed out is tried again on the next run.

Privacy (docs/privacy.md): images are stored without metadata (``strip_metadata``), author names become keyed
pseudonyms (HMAC-SHA256 under ``author_key``), every post carries the training consent its source gives, and an
item whose post is on the erasure list is never written again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import signal
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from threading import BoundedSemaphore
from typing import Any, Callable

from pydantic import SecretStr

from tagwatch.data import posts as store
from tagwatch.data.captions import make_caption, post_rng
from tagwatch.data.sources import SourceItem, get_source
from tagwatch.privacy.consent import source_consent
from tagwatch.privacy.erasures import erased_post_ids
from tagwatch.privacy.minimise import pseudonymise_author, strip_metadata

log = logging.getLogger(__name__)

JPEG_QUALITY = 90
MAX_LISTED_SKIPS = 5000
# Reasons that do not change between runs: such items are not rendered again unless asked (retry_skipped).
PERMANENT_REASONS = frozenset({"no_keywords", "render_failed", "unreadable", "empty_caption"})
EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


@dataclass
class IngestReport:
    source: str
    source_version: str = ""
    listed: int = 0
    already_there: int = 0
    ingested: int = 0
    known_bad: int = 0  # items skipped for a permanent reason in an earlier run and not tried again
    erased: int = 0  # items whose post was deleted for good (on the erasure list): never written again
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_items: list[dict] = field(default_factory=list)
    bad_keywords: int = 0
    posts_total: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RenderOutcome:
    ref: str
    error: str | None = None
    detail: str = ""
    jpeg: bytes = b""
    sha256: str = ""
    pdq: str | None = None
    pdq_quality: int | None = None
    keywords: tuple[str, ...] = ()
    title: str = ""
    author: str = ""
    bad_keywords: int = 0


class _Timeout(BaseException):  # not an Exception: a source's own `except Exception` must not swallow it
    pass


def _on_alarm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise _Timeout()


def render_outcome(item: SourceItem, size: int = 256, timeout_s: int = 30) -> RenderOutcome:
    """Render one item to JPEG and hash it (runs in a worker process; never raises)."""
    use_alarm = timeout_s > 0 and hasattr(signal, "SIGALRM")
    if use_alarm:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(timeout_s)
    try:
        rendered = get_source(item.source).render_item(item, size)
        if rendered.error or rendered.image is None:
            return RenderOutcome(
                ref=item.ref, error=rendered.error or "render_failed", detail=rendered.detail,
                keywords=tuple(rendered.keywords), bad_keywords=rendered.bad_keywords,
            )
        buffer = io.BytesIO()
        rendered.image.save(buffer, "JPEG", quality=JPEG_QUALITY)
        jpeg = strip_metadata(buffer.getvalue())  # Pillow writes none today; the stored bytes must never have any
        pdq, quality = compute_pdq(rendered.image)
        return RenderOutcome(
            ref=item.ref, jpeg=jpeg, sha256=hashlib.sha256(jpeg).hexdigest(), pdq=pdq, pdq_quality=quality,
            keywords=tuple(rendered.keywords), title=rendered.title, author=rendered.author,
            bad_keywords=rendered.bad_keywords,
        )
    except _Timeout:
        return RenderOutcome(ref=item.ref, error="render_timeout", detail=f"took more than {timeout_s}s")
    except Exception as error:  # one bad item must not stop the run; it is reported with its reason
        return RenderOutcome(ref=item.ref, error="render_failed", detail=f"{type(error).__name__}: {error}"[:240])
    finally:
        if use_alarm:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)


def _render_star(args: tuple) -> RenderOutcome:
    return render_outcome(*args)


def compute_pdq(image) -> tuple[str, int]:
    """PDQ hash (64 hex chars) and quality (0-100) of an RGB PIL image."""
    import numpy as np
    import pdqhash

    bits, quality = pdqhash.compute(np.asarray(image.convert("RGB")))
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)


def fake_created_at(seed: int, post_id: str) -> datetime:
    """A plausible, deterministic post time within 2024."""
    return EPOCH + timedelta(seconds=post_rng(seed, "t:" + post_id).randrange(366 * 24 * 3600))


def ingest_source(
    *,
    client: Any,
    bucket: str,
    source: str,
    author_key: SecretStr,
    limit: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    size: int = 256,
    root: Path | None = None,
    render_timeout_s: int = 60,
    retry_skipped: bool = False,
    on_total: Callable[[int], None] | None = None,
    on_advance: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest one source into ``s3://<bucket>/`` (layout in tagwatch.data.posts). Returns the report.

    Args:
        client: a boto3 S3 client.
        bucket: the posts bucket.
        source: openclipart, openmoji, tuxpaint or synthetic (tagwatch.data.sources.SOURCES).
        author_key: the key author pseudonyms are made with (``settings.privacy.author_key``).
        limit: take only the first N items of the source (sorted), e.g. for tests.
        seed: seeds the caption noise (and the synthetic images).
        workers: render processes (default: CPU count).
        size: image side in pixels.
        root: the source's directory (default: its own; openclipart /usr/share/openclipart/svg, openmoji the fetch
            cache, tuxpaint /usr/share/tuxpaint/stamps).
        render_timeout_s: an item that takes longer to render is skipped as ``render_timeout`` (retried next run).
        retry_skipped: also retry items an earlier run skipped for a permanent reason (a broken SVG, no keywords).
        on_total, on_advance: progress callbacks (items to render; items done).
    """
    t0 = time.monotonic()
    module = get_source(source)
    report = IngestReport(source=source, source_version=module.source_version())
    items = module.list_items(root=root, limit=limit, seed=seed)
    report.listed = len(items)
    existing = store.list_post_ids(client, bucket, source)
    todo = [item for item in items if store.make_post_id(source, item.ref) not in existing]
    report.already_there = len(items) - len(todo)
    erased = erased_post_ids(client, bucket)
    report.erased = sum(store.make_post_id(source, item.ref) in erased for item in todo)
    todo = [item for item in todo if store.make_post_id(source, item.ref) not in erased]
    skipped: Counter[str] = Counter()
    if not retry_skipped:
        known = _known_bad(client, bucket, source)
        carried = [item for item in todo if item.ref in known]
        for item in carried:
            entry = known[item.ref]
            skipped[entry["reason"]] += 1
            report.skipped_items.append(entry)
        report.known_bad = len(carried)
        todo = [item for item in todo if item.ref not in known]
    if on_total:
        on_total(len(todo))
    written: dict[str, dict] = {}
    if todo:
        _render_and_upload(
            client=client, bucket=bucket, source=source, author_key=author_key, todo=todo, seed=seed, size=size,
            workers=workers or os.cpu_count() or 1, timeout_s=render_timeout_s,
            report=report, skipped=skipped, written=written, on_advance=on_advance,
        )
    report.skipped = dict(sorted(skipped.items()))
    report.ingested = len(written)
    if written or not _index_is_current(client, bucket, source, len(existing)):
        records = store.load_post_records(client, bucket, source, known=written)
        store.write_index(client, bucket, source, [r for r in records.values() if isinstance(r, dict)])
        report.posts_total = len(records)
    else:
        report.posts_total = len(existing)
    report.seconds = round(time.monotonic() - t0, 3)
    if todo or report.skipped != _previous_counts(client, bucket, source):
        client.put_object(
            Bucket=bucket, Key=store.report_key(source), Body=json.dumps(report.to_json(), indent=1).encode(),
            ContentType="application/json",
        )
    return report


def _previous_report(client: Any, bucket: str, source: str) -> dict:
    try:
        return json.loads(client.get_object(Bucket=bucket, Key=store.report_key(source))["Body"].read())
    except Exception:  # no earlier report, or an unreadable one: treat as none
        return {}


def _known_bad(client: Any, bucket: str, source: str) -> dict[str, dict]:
    """ref -> skipped entry of items an earlier run skipped for a permanent reason."""
    entries = _previous_report(client, bucket, source).get("skipped_items", [])
    return {e["ref"]: e for e in entries if e.get("reason") in PERMANENT_REASONS}


def _previous_counts(client: Any, bucket: str, source: str) -> dict:
    return _previous_report(client, bucket, source).get("skipped", {})


def _index_is_current(client: Any, bucket: str, source: str, listed: int) -> bool:
    try:
        head = client.head_object(Bucket=bucket, Key=store.index_key(source))
    except Exception:
        return listed == 0
    return head.get("ContentLength", 0) > 0 or listed == 0


def _render_and_upload(
    *, client, bucket, source, author_key, todo, seed, size, workers, timeout_s, report, skipped, written, on_advance
) -> None:
    in_flight = BoundedSemaphore(64)
    module = get_source(source)
    futures: list[Future] = []

    def upload(post: store.Post, jpeg: bytes) -> None:
        try:
            client.put_object(
                Bucket=bucket, Key=store.image_key(source, post.image_sha256), Body=jpeg, ContentType="image/jpeg"
            )
            client.put_object(
                Bucket=bucket, Key=store.post_key(source, post.post_id),
                Body=post.model_dump_json().encode("utf-8"), ContentType="application/json",
            )
        finally:
            in_flight.release()

    def handle(outcome: RenderOutcome) -> None:
        report.bad_keywords += outcome.bad_keywords
        if outcome.error:
            _skip(report, skipped, outcome.ref, outcome.error, outcome.detail)
            return
        post_id = store.make_post_id(source, outcome.ref)
        caption = make_caption(keywords=list(outcome.keywords), post_id=post_id, title=outcome.title, seed=seed)
        if not caption.strip():
            _skip(report, skipped, outcome.ref, "empty_caption", "no hashtag survived")
            return
        post = store.Post(
            post_id=post_id, author_id=pseudonymise_author(author_key, source, outcome.author),
            created_at=fake_created_at(seed, post_id), caption=caption,
            image_uri=f"s3://{bucket}/{store.image_key(source, outcome.sha256)}", image_sha256=outcome.sha256,
            source=source, source_ref=outcome.ref, keywords=list(outcome.keywords), pdq=outcome.pdq,
            pdq_quality=outcome.pdq_quality, training_consent=source_consent(module, post_id),
        )
        in_flight.acquire()
        futures.append(uploads.submit(upload, post, outcome.jpeg))
        written[post_id] = post.model_dump(mode="json")

    tasks = [(item, size, timeout_s) for item in todo]
    with ThreadPoolExecutor(8) as uploads:
        if workers <= 1:
            results = map(_render_star, tasks)
            _consume(results, handle, on_advance)
        else:
            # forkserver: workers do not inherit the progress bar's or boto3's threads.
            with multiprocessing.get_context("forkserver").Pool(workers) as pool:
                _consume(pool.imap_unordered(_render_star, tasks, chunksize=4), handle, on_advance)
        for future in futures:
            future.result()  # an upload that failed after its retries fails the run (rerun resumes)


def _consume(results, handle, on_advance) -> None:
    for outcome in results:
        handle(outcome)
        if on_advance:
            on_advance(1)


def _skip(report: IngestReport, skipped: Counter, ref: str, reason: str, detail: str) -> None:
    skipped[reason] += 1
    log.debug("skipped %s: %s (%s)", ref, reason, detail)  # one summary at the end, the list in the report
    if len(report.skipped_items) < MAX_LISTED_SKIPS:
        report.skipped_items.append({"ref": ref, "reason": reason, "detail": detail})
