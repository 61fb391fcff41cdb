"""Keep a long-running consumer's resident memory flat (glibc only; elsewhere these are no-ops).

A consumer allocates and frees tens of MB per batch (fetched records, decoded images, preprocessed arrays) from
about twenty threads (fetch, inference, ledger, delivery, Kafka's own). glibc gives each thread an arena of its
own up to 8 per core and rarely returns freed pages to the system, so RSS drifts up and down with whichever
arenas were last busy (a 100,000-post soak measured 244 -> 373 -> 295 MB). Two arenas and a periodic
``malloc_trim`` keep it level at no measurable cost per batch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter number


def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc has it, musl and macOS do not
        return libc
    except (OSError, AttributeError):
        return None


class MemoryKeeper:
    def __init__(self, *, arenas: int = 2, trim_every_s: float = 10.0) -> None:
        self._libc = _libc()
        self.trim_every_s = trim_every_s
        self._trimmed_at = time.monotonic()
        if self._libc is not None and arenas > 0:
            self._libc.mallopt(M_ARENA_MAX, arenas)

    def maybe_trim(self) -> None:
        """Give freed heap pages back to the system, at most every ``trim_every_s``."""
        if self._libc is None or time.monotonic() - self._trimmed_at < self.trim_every_s:
            return
        self._libc.malloc_trim(0)
        self._trimmed_at = time.monotonic()
