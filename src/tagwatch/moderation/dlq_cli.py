"""`tagwatch dlq list|show|redrive`: dead letters read back and re-driven.

Everything goes to stdout as plain text or, with ``--json``, as JSON (never through a rich console, which wraps
lines when stdout is not a terminal). The logic is in moderation/dlq.py, claims.py and redrive.py.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from tagwatch.cli_context import cli_settings
from tagwatch.errors import TagwatchError

dlq_app = typer.Typer(help="Dead letters: list, show and re-drive them to the posts topic.", no_args_is_help=True)

QuietOption = Annotated[float, typer.Option(
    help="The DLQ topic is read until no record arrived for this many seconds.")]


def _settings(ctx: typer.Context):
    from tagwatch.stack import with_stack_endpoints

    return with_stack_endpoints(cli_settings(ctx))


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    reason: Annotated[Optional[str], typer.Option(help="Only this reason (e.g. image_missing).")] = None,
    since: Annotated[Optional[str], typer.Option(help="Only dead-lettered since: 30m, 2h, 7d or an ISO time.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    quiet: QuietOption = 2.0,
) -> None:
    """List the dead letters on the DLQ topic, with a count by reason.

    Columns: DLQ partition:offset, reason, post id, attempts, first/last seen, redrives (the original's
    tagwatch-redrive-count) and redriven (this dead letter's claim: where it was re-published).

    Example: tagwatch dlq list --reason image_missing --since 2h
    """
    from tagwatch.clients import s3_client
    from tagwatch.moderation.claims import ClaimStore
    from tagwatch.moderation.dlq import count_by_reason, parse_since, read_dead_letters, select, valid_reason

    chosen_reason = valid_reason(reason) if reason is not None else None
    since_at = parse_since(since) if since is not None else None
    settings = _settings(ctx)
    entries = select(read_dead_letters(settings.kafka, quiet_s=quiet), reason=chosen_reason, since=since_at)
    store = ClaimStore(s3_client(settings.s3), settings.s3.buckets.ledger)
    claims = store.for_topic(settings.kafka.topics.dead_letter) if entries else {}
    rows = [_row(e, claims.get((e.partition, e.offset))) for e in entries]
    summary = count_by_reason(entries)
    if as_json:
        from tagwatch.output import emit_json

        emit_json({"topic": settings.kafka.topics.dead_letter, "total": len(rows), "by_reason": summary,
                   "dead_letters": rows}, indent=None)
        return
    if not rows:
        _write(f"no dead letters on {settings.kafka.topics.dead_letter}"
               + (f" with reason {chosen_reason}" if chosen_reason else "") + (f" since {since}" if since else ""))
        return
    _write(_table(rows))
    _write(f"{len(rows)} dead letter(s): " + ", ".join(f"{r} {n}" for r, n in summary.items()))


def _row(entry, claim) -> dict:
    from tagwatch.moderation.dlq import redrive_count

    letter = entry.letter
    try:
        count = None if entry.by_reference else redrive_count(entry.embedded_original().headers)
    except (ValueError, UnicodeDecodeError):
        count = None
    redriven = None
    if claim is not None:
        redriven = {"published": claim.published.model_dump() if claim.published else None,
                    "claimed_by": claim.claimed_by, "claimed_at": claim.claimed_at.isoformat()}
    return {"partition": entry.partition, "offset": entry.offset, "reason": letter.reason, "post_id": entry.post_id,
            "attempts": letter.attempts, "first_seen": letter.first_seen.isoformat(),
            "last_seen": letter.last_seen.isoformat(), "redrive_count": count, "by_reference": entry.by_reference,
            "redriven": redriven}


def _table(rows: list[dict]) -> str:
    def redriven(row) -> str:
        claim = row["redriven"]
        if claim is None:
            return "-"
        published = claim["published"]
        return f"-> {published['partition']}:{published['offset']}" if published else "claimed, not published"

    header = ("dlq", "reason", "post_id", "attempts", "first_seen", "last_seen", "redrives", "redriven")
    cells = [header] + [(f"{r['partition']}:{r['offset']}", r["reason"], r["post_id"] or "?", str(r["attempts"]),
                         r["first_seen"][:19], r["last_seen"][:19],
                         "?" if r["redrive_count"] is None else str(r["redrive_count"]), redriven(r)) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


@dlq_app.command("show")
def dlq_show(
    ctx: typer.Context,
    wanted: Annotated[str, typer.Argument(metavar="OFFSET_OR_POST_ID",
                                          help="PARTITION:OFFSET or OFFSET on the DLQ topic, or a post id.")],
    quiet: QuietOption = 2.0,
) -> None:
    """Show dead letters decoded as JSON: the envelope, the original headers as text, the original value parsed.

    A bare OFFSET matching on several partitions, or a post dead-lettered more than once, prints one JSON
    document per dead letter.

    Example: tagwatch dlq show 0:17   (or: tagwatch dlq show post-000042)
    """
    from tagwatch.clients import s3_client
    from tagwatch.moderation.dlq import describe, find, load_original, read_dead_letters
    from tagwatch.output import emit_json

    settings = _settings(ctx)
    found = find(read_dead_letters(settings.kafka, quiet_s=quiet), wanted)
    if not found:
        raise TagwatchError(f"no dead letter at {wanted!r} and none of a post {wanted!r} on "
                            f"{settings.kafka.topics.dead_letter}", hint="see `tagwatch dlq list`")
    s3 = s3_client(settings.s3)
    for entry in found:
        emit_json(describe(entry, load_original(s3, entry)))


@dlq_app.command("redrive")
def dlq_redrive(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="Re-drive the dead letters of this reason (e.g. image_missing).")],
    since: Annotated[Optional[str], typer.Option(help="Only dead-lettered since: 30m, 2h, 7d or an ISO time.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List what would be re-driven; claim and publish nothing.")] = False,
    max_redrives: Annotated[int, typer.Option(
        min=1, help="A record re-driven this many times already stays dead.")] = 3,
    stale_claim_s: Annotated[float, typer.Option(
        min=0, help="A claim left unpublished this long (its run died) is taken over by this run.")] = 900.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    quiet: QuietOption = 2.0,
) -> None:
    """Publish each matching dead letter's original record (byte for byte) to the posts topic again, with its
    tagwatch-redrive-count header raised by one. Fix the cause first (e.g. upload the missing images).

    Each dead letter is claimed in the ledger bucket first (redrives/...), so concurrent runs never re-drive one
    twice. Exit 1 if any publish failed (its claim is released; run again). A run killed between claiming and
    publishing leaves its claims unpublished; after --stale-claim-s one later run takes each over (a conditional
    PUT: never two).

    Example: tagwatch dlq redrive --reason image_missing --since 2h --dry-run
    """
    from tagwatch.moderation.dlq import parse_since, valid_reason
    from tagwatch.moderation.redrive import redrive

    chosen_reason = valid_reason(reason)
    since_at = parse_since(since) if since is not None else None
    report = redrive(_settings(ctx), reason=chosen_reason, since=since_at, dry_run=dry_run,
                     max_redrives=max_redrives, quiet_s=quiet, stale_claim_s=stale_claim_s)
    if as_json:
        from tagwatch.output import emit_json

        emit_json(report.to_dict(), indent=None)
    else:
        _write(_render(report))
    if not report.ok:
        raise typer.Exit(1)


def _render(report) -> str:
    if report.selected == 0:
        return f"no dead letters with reason {report.reason} to re-drive (nothing done)"
    lines = []
    for o in report.outcomes:
        where = f" -> {o.published['partition']}:{o.published['offset']}" if o.published else ""
        count = f" count {o.redrive_count}" if o.redrive_count is not None else ""
        detail = f" ({o.detail})" if o.detail else ""
        lines.append(f"{o.dlq_partition}:{o.dlq_offset} {o.post_id or '?'}: {o.status}{count}{where}{detail}")
    counts = report.to_dict()["counts"]
    lines.append(f"{report.selected} selected{' (dry run)' if report.dry_run else ''}: "
                 + ", ".join(f"{status} {n}" for status, n in counts.items()))
    return "\n".join(lines)
