"""`tagwatch ledger show|redrives`: what the ledger holds for one post (its decision, its history, its re-drives).

Plain text or, with ``--json``, one JSON object on stdout (never a rich console: it wraps when stdout is a pipe).
"""

from __future__ import annotations

from typing import Annotated

import typer

from tagwatch.errors import TagwatchError
from tagwatch.moderation.dlq_cli import _settings, _write

ledger_app = typer.Typer(help="The decision ledger (S3): what it holds for a post.", no_args_is_help=True)


class NoLedgerRecordError(TagwatchError):
    """The ledger has nothing for the post."""


@ledger_app.command("show")
def ledger_show(
    ctx: typer.Context,
    post_id: Annotated[str, typer.Argument(help="The post whose whole ledger history to show.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show a post's whole history: the stream's first decision (written once), then review outcomes and later
    entries, oldest first, and its re-drives. For audit and appeals.

    Examples:
      tagwatch ledger show post-000042
      tagwatch ledger show post-000042 --json | jq '.history[].action'
    """
    from tagwatch.clients import s3_client
    from tagwatch.moderation.claims import ClaimStore
    from tagwatch.moderation.ledger import Ledger, LedgerHistory

    settings = _settings(ctx)
    s3 = s3_client(settings.s3)
    bucket = settings.s3.buckets.ledger
    decision = Ledger(s3, bucket).get(post_id)
    history = LedgerHistory(s3, bucket).entries(post_id)
    claims = ClaimStore(s3, bucket).for_post(post_id)
    if decision is None and not history and not claims:
        raise NoLedgerRecordError(f"the ledger has no record of post {post_id}",
                                  hint="check the id (`tagwatch posts audit` lists decided posts); a post the "
                                       "stream has not decided yet has no record")
    if as_json:
        from tagwatch.output import emit_json

        emit_json({"post_id": post_id, "decision": decision.model_dump(mode="json") if decision else None,
                   "history": [{"kind": kind, **entry} for kind, entry in history],
                   "redrives": [c.model_dump(mode="json") for c in claims]}, indent=None)
        return
    _write(f"post {post_id}")
    if decision is None:
        _write("  decision: none in the ledger")
    else:
        scores = ", ".join(f"{name} {value:.2f}" for name, value in sorted(decision.scores.items()))
        _write(f"  {decision.decided_at.isoformat(timespec='seconds')}  decision  {decision.action}  by model "
               f"{decision.model.name} v{decision.model.version}, policy {decision.policy_version}  ({scores})")
        if decision.reasons:
            _write(f"      reasons: {'; '.join(decision.reasons)}")
    for kind, entry in history:
        if kind == "review":
            categories = ", ".join(entry.get("categories") or []) or "none"
            note = f"  note: {entry['note']}" if entry.get("note") else ""
            _write(f"  {entry['reviewed_at'][:19]}  review    {entry['action']}  by {entry['reviewer']}  "
                   f"categories: {categories}  after {entry['time_to_decision_s']:.0f} s{note}")
        else:
            _write(f"  {kind}: {entry}")
    for c in claims:
        _write(f"  {c.claimed_at.isoformat(timespec='seconds')}  re-drive  of dead letter {c.dead_letter.topic}:"
               f"{c.dead_letter.partition}:{c.dead_letter.offset} ({c.reason}) by {c.claimed_by}")


@ledger_app.command("redrives")
def ledger_redrives(
    ctx: typer.Context,
    post_id: Annotated[str, typer.Argument(help="The post whose re-drives to show.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show a post's re-drive claims (who re-drove which dead letter, when, to which offset) and its decision.

    Example: tagwatch ledger redrives post-000042 --json
    """
    from tagwatch.clients import s3_client
    from tagwatch.moderation.claims import ClaimStore
    from tagwatch.moderation.ledger import Ledger

    settings = _settings(ctx)
    s3 = s3_client(settings.s3)
    claims = ClaimStore(s3, settings.s3.buckets.ledger).for_post(post_id)
    decision = Ledger(s3, settings.s3.buckets.ledger).get(post_id)
    if as_json:
        from tagwatch.output import emit_json

        emit_json({"post_id": post_id, "redrives": [c.model_dump(mode="json") for c in claims],
                   "decision": decision.model_dump(mode="json") if decision else None}, indent=None)
        return
    if not claims:
        _write(f"post {post_id}: never re-driven")
    for c in claims:
        published = (f"published to {c.published.topic}:{c.published.partition}:{c.published.offset}"
                     if c.published else "claimed, not published")
        _write(f"dead letter {c.dead_letter.topic}:{c.dead_letter.partition}:{c.dead_letter.offset} ({c.reason}) "
               f"re-driven by {c.claimed_by} at {c.claimed_at.isoformat(timespec='seconds')}, count {c.redrive_count}, "
               f"{published}")
    _write(f"decision: {decision.action} ({decision.decision_id})" if decision else "decision: none in the ledger")
