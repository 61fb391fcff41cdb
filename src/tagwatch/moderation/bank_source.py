"""Which banks match the next batch: each bank's alias version, reloaded only when its alias moves.

Before each batch the consumer asks ``BankSource.matcher()``. At most every ``refresh_s`` seconds it lists the
bank names and GETs each bank's alias (one small object per bank; bank_store.py); a bank is loaded again only
when its alias record changed (or it appeared, or it went). The first load is done in the caller's thread (no
batch is decided without the banks); later ones in a background thread while the previous matcher keeps
matching, and the new matcher is swapped in whole once every changed bank is loaded (a 1M-entry bank takes
seconds: benchmarks/bank_match.py). Loaded segments are kept (bank_segments.SegmentCache): an alias move that
appended a delta loads only the delta (milliseconds), a compaction or a rollback loads what it names anew. An S3 error on the first load is a RetryableError (the batch waits); on a
later one it is logged and tried again at the next refresh.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tagwatch.errors import RetryableError, TagwatchError
from tagwatch.moderation.bank import DEFAULT_THRESHOLD, BankMatcher, IndexedBank
from tagwatch.moderation.bank_segments import SegmentCache
from tagwatch.moderation.bank_store import ALIAS, BankStore

log = logging.getLogger(__name__)


class BankSource:
    def __init__(self, store: BankStore, *, refresh_s: float, threshold: int = DEFAULT_THRESHOLD,
                 background: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.refresh_s, self.threshold = store, refresh_s, threshold
        self.background, self.clock = background, clock
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._seen: dict[str, bytes | None] = {}  # bank name -> the alias record its loaded version came from
        self._loaded: dict[str, IndexedBank] = {}
        self._matcher: BankMatcher | None = None
        self._loading: threading.Thread | None = None
        self.segments = SegmentCache()  # segments loaded, by (bank, segment version); .loads counts S3 reads
        self.reloads = 0  # matchers swapped in (the first load included)

    def matcher(self) -> BankMatcher:
        """The matcher for the next batch (starts a reload when an alias moved; never waits for one but the first)."""
        with self._lock:
            if self._matcher is None:
                self._reload(self._poll(), first=True)
            elif self.clock() - self._checked_at >= self.refresh_s and not self._busy():
                try:
                    changed = self._poll()
                except RetryableError as error:
                    log.warning("hash banks not refreshed (%s); matching with the banks loaded before", error)
                    changed = None
                if changed is not None:
                    if self.background:
                        self._loading = threading.Thread(target=self._reload, args=(changed,), daemon=True,
                                                         name="bank-reload")
                        self._loading.start()
                    else:
                        self._reload(changed)
            return self._matcher

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background reload in progress (tests, shutdown)."""
        loading = self._loading
        if loading is not None:
            loading.join(timeout)

    def _busy(self) -> bool:
        return self._loading is not None and self._loading.is_alive()

    def _poll(self) -> tuple[dict[str, bytes | None], set[str]] | None:
        """(banks whose alias record differs from the loaded one: name -> the record now, banks gone); None if
        nothing changed."""
        def read():
            return {name: self.store.versions(name).alias_bytes(ALIAS) for name in self.store.names()}

        now = _guarded(read)
        self._checked_at = self.clock()
        changed = {name: raw for name, raw in now.items() if name not in self._seen or self._seen[name] != raw}
        gone = set(self._seen) - set(now)
        return (changed, gone) if changed or gone or self._matcher is None else None

    def _reload(self, diff: tuple[dict[str, bytes | None], set[str]], first: bool = False) -> None:
        changed, gone = diff
        t0 = time.monotonic()
        loaded = {name: bank for name, bank in self._loaded.items() if name not in gone}
        try:
            for name in changed:
                loaded[name] = _guarded(lambda name=name: self.store.load_indexed(name, cache=self.segments))
        except Exception as error:  # noqa: BLE001 - a bank that cannot load must not stop the matching
            if first and isinstance(error, RetryableError):
                raise
            if first and isinstance(error, TagwatchError):  # a damaged version: a rollback mends it, keep asking
                raise RetryableError(f"hash bank unusable: {error.message}") from error
            if first:
                raise
            log.error("hash banks %s not reloaded (%s); matching with the banks loaded before",
                      ", ".join(sorted(changed)), getattr(error, "message", None) or repr(error))
            return
        self._seen = {**{n: r for n, r in self._seen.items() if n not in gone}, **changed}
        self._loaded = loaded
        self.segments.keep({(b.name, p.version) for b in loaded.values() for p in b.parts})
        self._matcher = BankMatcher([loaded[n] for n in sorted(loaded)], self.threshold)
        self.reloads += 1
        log.info("hash banks loaded in %.1f s: %s", time.monotonic() - t0,
                 ", ".join(f"{b.name}@{b.version} ({len(b.entries)})" for b in self._matcher.banks) or "none")


def _guarded(read):
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return read()
    except (BotoCoreError, ClientError) as error:
        raise RetryableError(f"hash banks unreadable: {type(error).__name__}") from error
