"""`tagwatch bank add|import|list|show|rollback`: hash banks as versioned indexes (moderation/bank_store.py).

Output is plain text on stdout, or JSON with ``--json`` (never through a rich console, which wraps lines when
stdout is not a terminal).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer

from tagwatch.cli_context import cli_settings
from tagwatch.errors import ConfigError

bank_app = typer.Typer(help="Hash banks: PDQ hashes of known-bad images, matched before the model; versioned, "
                            "with an alias consumers follow.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _store(ctx: typer.Context):
    from tagwatch.clients import s3_client
    from tagwatch.moderation.bank_store import BankStore
    from tagwatch.stack import with_stack_endpoints

    settings = with_stack_endpoints(cli_settings(ctx))
    return BankStore(s3_client(settings.s3), settings.s3.buckets.models)


@bank_app.command("add")
def bank_add(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(help="Image file to ban (its PDQ hash is stored, not the image).")],
    reason: Annotated[str, typer.Option(help="Why it is banned; shown in every decision it causes.")],
    bank: Annotated[str, typer.Option(help="Bank name.")] = "default",
    category: Annotated[str, typer.Option(help="Harm category (terrorism, ...: docs/banks.md).")] = "other",
    action: Annotated[str, typer.Option(help="What a match does: remove or review.")] = "remove",
) -> None:
    """Add an image's PDQ hash to a bank as its next version; matching posts (Hamming ≤ 31) take its action."""
    from PIL import Image, UnidentifiedImageError

    try:
        picture = Image.open(image)
        picture.load()
    except (OSError, UnidentifiedImageError) as error:
        raise ConfigError(f"{image} is not a readable image", hint="pass a JPEG/PNG/WEBP file") from error
    if action not in ("remove", "review"):
        raise ConfigError(f"--action {action!r} is not remove or review", hint="--action remove|review")
    entry = _store(ctx).add(bank, picture, reason, category=category, action=action)
    typer.echo(f"added {entry.entry_id} to bank {bank}: pdq {entry.pdq[:16]}… quality {entry.quality} "
               f"{category}/{action} ({reason})")


@bank_app.command("import")
def bank_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV or JSON exchange file (docs/banks.md).")],
    bank: Annotated[str, typer.Option(help="Bank name.")] = "default",
    category: Annotated[str, typer.Option(help="Category of rows that name none.")] = "other",
    action: Annotated[str, typer.Option(help="Action of rows that name none: remove or review.")] = "remove",
) -> None:
    """Import PDQ hashes with category and action from an exchange file (one new version); rows below PDQ quality
    50 are refused."""
    from tagwatch.moderation.bank_import import import_bank

    report = import_bank(_store(ctx), bank, file, category=category, action=action)
    typer.echo(report.summary())  # one plain line
    if report.read and not report.added and not report.already_held:
        raise ConfigError(f"nothing in {file} could be imported", hint="docs/banks.md: pdq (64 hex) and quality >= 50")


@bank_app.command("list")
def bank_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every bank: the version its alias names, entries, when and why it last moved."""
    from tagwatch.moderation.bank_store import ALIAS

    store = _store(ctx)
    rows = []
    for name in store.names():
        versions = store.versions(name)
        record, _, metadata = versions.current()
        if metadata is None:
            legacy = store.legacy(name)
            rows.append({"bank": name, "version": 0 if legacy else None, "entries": len(legacy.entries) if legacy
                         else 0, "updated_at": None, "reason": "legacy banks/<name>.json" if legacy else ""})
        else:
            rows.append({"bank": name, "version": record.version, "entries": metadata.entries,
                         "updated_at": record.updated_at.isoformat(timespec="seconds"), "reason": record.reason})
    if as_json:
        typer.echo(json.dumps(rows))
        return
    typer.echo(f"{'bank':24} {ALIAS:>7} {'entries':>9}  updated                    reason")
    for r in rows:
        typer.echo(f"{r['bank']:24} {str(r['version']):>7} {r['entries']:>9}  {r['updated_at'] or '-':26} "
                   f"{r['reason']}")


@bank_app.command("show")
def bank_show(
    ctx: typer.Context,
    bank: Annotated[str, typer.Argument(help="Bank name.")],
    version: Annotated[Optional[int], typer.Option(help="Summarise this version's entries (default: current).")] = None,
    entries: Annotated[int, typer.Option(help="How many entries to print.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """A bank's versions (time, author, reason, counts; which one the alias names) and one version's entries."""
    store = _store(ctx)
    versions = store.versions(bank)
    record, _, _ = versions.current()
    history = [{"version": m.number, "created_at": m.created_at.isoformat(timespec="seconds"),
                "created_by": m.created_by, "reason": m.reason, "base": m.base_version, "entries": m.entries,
                "added": m.added, "current": record is not None and record.version == m.number}
               for m in versions.list_versions()]
    shown = store.load(bank, version)
    summary = {"version": version if version is not None else (record.version if record else 0),
               "entries": len(shown.entries),
               "by_category_action": dict(Counter(f"{e.category}/{e.action}" for e in shown.entries)),
               "first": [e.model_dump(mode="json") for e in shown.entries[:entries]]}
    if as_json:
        typer.echo(json.dumps({"bank": bank, "alias": record.model_dump(mode="json") if record else None,
                               "versions": history, "shown": summary}))
        return
    if record is not None:
        typer.echo(f"bank {bank}: alias names version {record.version} (earlier: "
                   f"{', '.join(map(str, record.previous)) or 'none'})")
    for h in history:
        typer.echo(f"{'*' if h['current'] else ' '} v{h['version']:<4} {h['created_at']}  {h['entries']:>8} entries "
                   f"(+{h['added']} on v{h['base']})  {h['created_by']}  {h['reason']}")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary["by_category_action"].items())) or "no entries"
    typer.echo(f"version {summary['version']}: {summary['entries']} entries ({counts})")
    for e in shown.entries[:entries]:
        typer.echo(f"  {e.entry_id}  {e.pdq[:16]}…  q{e.quality if e.quality is not None else '?'}  "
                   f"{e.category}/{e.action}  {e.added_at.isoformat(timespec='seconds')}  {e.reason}")


@bank_app.command("rollback")
def bank_rollback(
    ctx: typer.Context,
    bank: Annotated[str, typer.Argument(help="Bank name.")],
    to: Annotated[Optional[int], typer.Option(help="Version to name (default: the one named before).")] = None,
) -> None:
    """Point the bank's alias at an earlier version (its files checked first); consumers load it at their next
    refresh. Versions are never deleted, so a rollback can itself be undone."""
    store = _store(ctx)
    before, _, _ = store.versions(bank).current()
    record = store.rollback(bank, to)
    typer.echo(f"bank {bank}: alias names version {record.version} (was {before.version if before else '-'})")
