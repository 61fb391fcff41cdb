"""Hash-bank exchange files: PDQ hashes with their category and action, as hash-sharing programmes trade them.

``tagwatch bank import FILE --bank NAME`` reads CSV (a header row) or JSON (a list of objects, or an object with
``entries``); docs/banks.md documents the fields and tests/fixtures/banks/ holds examples:

  pdq        64 hex digits (256-bit PDQ hash)                       required
  quality    PDQ quality 0-100 of the hashed image                  required; below MIN_QUALITY (50) refused
  category   harm category (terrorism, violent_extremism, ...)      default: the command's --category
  action     remove | review                                        default: the command's --action
  reason     why it is banned (free text)                           default: "imported from FILE"
  source     where it came from (programme, case id)                default: the file name
  added_at   ISO 8601 time it was hashed/shared                     default: now
  entry_id   the sharer's id for the hash                           default: a new one

One bad row never stops an import: it is skipped and counted per reason (with its first line numbers), and the
summary is one line; hashes the bank already holds are not added twice. An import is one bank version
(bank_store.py).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from tagwatch.errors import ConfigError
from tagwatch.moderation.bank import CATEGORY_PATTERN, MIN_QUALITY, BankEntry, new_entry_id
from tagwatch.moderation.bank_store import BankStore

HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class ImportReport:
    bank: str
    read: int = 0
    added: int = 0
    already_held: int = 0
    version: int | None = None  # the bank version written (or current, if nothing was new)
    skipped: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # reason -> line numbers

    def summary(self) -> str:
        """One line: what was added, and each skip reason with its count and first few line numbers."""
        text = (f"bank {self.bank}: {self.added} of {self.read} entries added"
                + (f", {self.already_held} already held" if self.already_held else ""))
        if self.skipped:
            parts = []
            for reason, lines in sorted(self.skipped.items()):
                shown = ", ".join(map(str, lines[:5])) + (", ..." if len(lines) > 5 else "")
                parts.append(f"{reason}: {len(lines)} (line {shown})")
            text += f"; skipped {sum(map(len, self.skipped.values()))}: " + "; ".join(parts)
        return text


def read_exchange_file(path: Path) -> list[tuple[int, dict]]:
    """(line or item number, raw row) for each entry of a CSV or JSON exchange file; ConfigError if unreadable."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}", hint="pass a CSV or JSON exchange file "
                          "(docs/banks.md)") from error
    if text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ConfigError(f"{path} is not valid JSON: {error}", hint="docs/banks.md shows the format") from error
        items = data.get("entries") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ConfigError(f"{path}: expected a list of entries or an object with `entries`",
                              hint="docs/banks.md shows the format")
        return [(n, item if isinstance(item, dict) else {}) for n, item in enumerate(items, start=1)]
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "pdq" not in [f.strip().lower() for f in reader.fieldnames]:
        raise ConfigError(f"{path}: no `pdq` column in the CSV header", hint="first line e.g. "
                          "pdq,quality,category,action,reason,source,added_at (docs/banks.md)")
    return [(reader.line_num, {k.strip().lower(): (v or "").strip() for k, v in row.items() if k})
            for row in reader]


def parse_entry(row: dict, *, category: str, action: str, source: str,
                min_quality: int = MIN_QUALITY) -> BankEntry | str:
    """A BankEntry, or the reason the row is skipped (a short phrase the summary counts)."""
    pdq = str(row.get("pdq") or "").strip().lower()
    if not HEX.match(pdq):
        return "pdq not 64 hex digits"
    try:
        quality = int(str(row.get("quality", "")).strip())
    except ValueError:
        return "quality missing"
    if quality < min_quality:
        return f"quality < {min_quality}"
    row_category = str(row.get("category") or category).strip().lower()
    if not re.match(CATEGORY_PATTERN, row_category):
        return "category not a slug"
    row_action = str(row.get("action") or action).strip().lower()
    if row_action not in ("remove", "review"):
        return "action not remove/review"
    added_at = row.get("added_at") or datetime.now(timezone.utc).isoformat()
    try:
        return BankEntry(entry_id=str(row.get("entry_id") or new_entry_id()), pdq=pdq,
                         reason=str(row.get("reason") or f"imported from {source}"), added_at=added_at,
                         category=row_category, action=row_action, source=str(row.get("source") or source),
                         quality=quality)
    except ValidationError:
        return "invalid field"


def import_bank(store: BankStore, bank: str, path: Path, *, category: str = "other", action: str = "remove",
                min_quality: int = MIN_QUALITY) -> ImportReport:
    """Add the entries of an exchange file to ``bank``; the report says what was added and what was skipped."""
    report = ImportReport(bank=bank)
    entries: list[BankEntry] = []
    for line, row in read_exchange_file(path):
        report.read += 1
        parsed = parse_entry(row, category=category, action=action, source=Path(path).name, min_quality=min_quality)
        if isinstance(parsed, str):
            report.skipped[parsed].append(line)
        else:
            entries.append(parsed)
    if entries:
        written = store.extend(bank, entries, reason=f"import {Path(path).name}")
        report.added, report.version = written.added, written.version
        report.already_held = len(entries) - report.added
    return report
