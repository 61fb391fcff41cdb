"""Fetch a pinned, integrity-checked tarball into a cache directory (sources that are not Debian packages).

Plain https through urllib (no npm needed). The tarball's bytes must match a Subresource-Integrity string pinned in
the repository (``sha512-<base64>``, the form the npm registry publishes in ``dist.integrity``); only the members a
source needs are extracted, into a temporary directory renamed into place, so the target is complete or absent.
A second call finds the ``.fetched`` marker and does nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from tagwatch.errors import ConfigError
from tagwatch.output import staged_dir

log = logging.getLogger(__name__)
MARKER = ".fetched"


def sources_cache_dir() -> Path:
    """Where fetched sources live: ``${XDG_CACHE_HOME:-~/.cache}/tagwatch/sources``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "tagwatch" / "sources"


def sri_digest(data: bytes, algorithm: str = "sha512") -> str:
    """The Subresource-Integrity string of ``data`` (npm's ``dist.integrity``)."""
    return f"{algorithm}-" + base64.b64encode(hashlib.new(algorithm, data).digest()).decode()


def is_fetched(target: Path, integrity: str) -> bool:
    try:
        return json.loads((target / MARKER).read_text()).get("integrity") == integrity
    except (OSError, ValueError):
        return False


def fetch_tarball(
    *, url: str, integrity: str, target: Path, wanted: Callable[[str], str | None], timeout_s: float = 120.0,
    opener: Callable[[str, float], bytes] | None = None,
) -> bool:
    """Download ``url``, check it against ``integrity``, extract the members ``wanted`` maps to a relative path.

    Args:
        url: the tarball's https URL.
        integrity: the pinned ``sha512-...`` string; a download that does not match is refused.
        target: the directory to fill (created; replaced only when complete).
        wanted: member name -> relative path to write it at, or None to leave it out.
        timeout_s: network timeout.
        opener: (url, timeout) -> bytes; the default uses urllib (tests pass a local reader).

    Returns True when it fetched, False when ``target`` already held this integrity.
    """
    if is_fetched(target, integrity):
        return False
    data = (opener or _download)(url, timeout_s)
    got = sri_digest(data, integrity.split("-", 1)[0])
    if got != integrity:
        raise ConfigError(f"{url} does not match its pinned integrity (got {got[:30]}..., want {integrity[:30]}...)",
                          hint="a corrupted or changed download: retry; if it persists the pin needs review")
    with staged_dir(target, prefix=f".{target.name}-") as staging:
        count = _extract(data, staging, wanted)
        (staging / MARKER).write_text(json.dumps({"url": url, "integrity": integrity, "files": count}) + "\n")
    log.info("fetched %s: %d files into %s", url, count, target)
    return True


def _download(url: str, timeout_s: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - a pinned https URL
            return response.read()
    except (urllib.error.URLError, OSError) as error:
        raise ConfigError(f"cannot download {url}: {error}",
                          hint="needs https to the npm registry once; or copy the cache directory from a machine "
                               "that has it") from error


def _extract(data: bytes, into: Path, wanted: Callable[[str], str | None]) -> int:
    import io

    count = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive:
            if not member.isfile():
                continue
            relative = wanted(member.name)
            if relative is None:
                continue
            path = (into / relative).resolve()
            if into.resolve() not in path.parents:  # a member that would land outside the target
                raise ConfigError(f"tarball member {member.name!r} escapes the target", hint="the pin needs review")
            path.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            path.write_bytes(source.read() if source else b"")
            count += 1
    return count
