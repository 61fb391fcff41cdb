"""Machine-readable output: JSON written as plain text to stdout or to a file, never through a rich Console.

A rich Console wraps at 80 columns when stdout is not a terminal (a pipe, a file, a child process; PLATFORM.md),
so anything a program parses goes through here; rich is for people only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def emit_json(data: Any, *, indent: int | None = 2) -> None:
    """Write ``data`` as JSON (one document, newline-terminated) to plain stdout."""
    sys.stdout.write(json.dumps(data, indent=indent, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as one JSON document to ``path`` atomically (see write_text_atomic)."""
    write_text_atomic(path, json.dumps(data, default=str, ensure_ascii=False) + "\n")


def write_json_lines_atomic(path: Path, rows: Iterable[Any]) -> None:
    """Write each row as one JSON line to ``path`` atomically (see write_text_atomic)."""
    write_text_atomic(path, "".join(json.dumps(row, default=str, ensure_ascii=False) + "\n" for row in rows))


def write_text_atomic(path: Path, text: str) -> None:
    """A reader of ``path`` sees the old file, no file, or the whole new text, never a part.

    The temp file sits in the same directory (same filesystem, so ``os.replace`` is atomic) and is fsynced first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def staged_dir(target: Path, *, prefix: str = ".staging-", replace: bool = True) -> Iterator[Path]:
    """A fresh directory next to ``target`` to fill; when the block ends without an error it becomes ``target`` in
    one rename, and in every case nothing half-written is left behind.

    ``replace``: an existing ``target`` is moved aside (one rename) and deleted, so a reader sees the old or the new
    directory, never a mix. With ``replace=False`` (a content-addressed target, e.g. one model version) a ``target``
    that another process installed while this one was filling its copy wins and this copy is dropped: two
    consumers fetching the same model at once both succeed.
    """
    import errno
    import shutil
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        yield staging
        if replace and target.exists():
            aside = Path(tempfile.mkdtemp(prefix=f"{prefix}old-", dir=target.parent))
            try:
                target.rename(aside / "dir")
            except FileNotFoundError:
                pass  # another writer moved it first
            shutil.rmtree(aside, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or replace:
                raise
            # a concurrent writer installed the same content-addressed target first: theirs is complete
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
