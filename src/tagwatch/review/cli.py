"""`tagwatch review serve|add-user|queue`: the reviewer web app, its accounts, and the queue as a table or JSON.

Plain text or JSON to stdout (never a rich console: it wraps lines when stdout is not a terminal). The logic lives
in review/serve.py, review/auth.py and review/queue.py.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from tagwatch.cli_context import cli_settings

review_app = typer.Typer(
    help="Human review: the reviewer web app, its accounts, and the review queue (docs/review.md).\n\n"
         "Example: tagwatch review add-user alice && tagwatch review serve",
    no_args_is_help=True)


def _settings(ctx: typer.Context):
    from tagwatch.stack import with_stack_endpoints

    return with_stack_endpoints(cli_settings(ctx))


@review_app.command("serve")
def serve_command(
    ctx: typer.Context,
    port: Annotated[Optional[int], typer.Option(help="Port on TAGWATCH_HTTP__BIND_HOST (default: review.port, "
                                                     "8700).")] = None,
    feed: Annotated[bool, typer.Option(help="Run the feeder: the app's consumer group on the review topic "
                                            "fills the queue (--no-feed: serve the queue as it is).")] = True,
) -> None:
    """Run the reviewer web app (and the feeder that fills its queue) until SIGTERM / Ctrl-C.

    Binds TAGWATCH_HTTP__BIND_HOST (127.0.0.1 unless set). Sign-in: accounts from `tagwatch review add-user`,
    or an authenticating proxy's header (TAGWATCH_REVIEW__TRUSTED_USER_HEADER). A non-loopback bind needs
    TAGWATCH_REVIEW__SESSION_SECRET.

    Example: tagwatch review serve --port 8700   (then open http://127.0.0.1:8700/)
    """
    from tagwatch.review.serve import serve

    serve(_settings(ctx), port=port, feed=feed)


@review_app.command("add-user")
def add_user(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The reviewer's name (letters, digits, . _ -): their outcomes carry "
                                              "it.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from the first line "
                                                                          "of stdin instead of a prompt.")] = False,
) -> None:
    """Add a reviewer (or set a new password) in the accounts file: scrypt hash with a per-user salt.

    The file is review.accounts_file (default <state_dir>/review-accounts.yaml), written 0600. In a cluster,
    put the file in the Secret tagwatch-review-accounts (docs/review.md).

    Examples: tagwatch review add-user alice
              printf '%s\\n' "$PW" | tagwatch review add-user bob --password-stdin
    """
    from tagwatch.review.auth import Accounts, accounts_path

    settings = cli_settings(ctx)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    path = accounts_path(settings)
    new = Accounts(path).add(name, password)
    sys.stdout.write(f"{'added' if new else 'updated'} reviewer {name} in {path}\n")


@review_app.command("queue")
def queue_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print the pending review items, oldest first, with their lease status.

    Example: tagwatch review queue --json
    """
    from tagwatch.clients import s3_client
    from tagwatch.review.queue import ReviewQueue, utcnow

    settings = _settings(ctx)
    queue = ReviewQueue(s3_client(settings.s3), settings.s3.buckets.ledger, lease_s=settings.review.lease_s)
    now = utcnow()
    rows = []
    for item in queue.pending():
        lease, _ = queue.lease_of(item.request.post_id)
        live = lease is not None and lease.live(now)
        rows.append({"post_id": item.request.post_id, "requested_at": item.request.requested_at.isoformat(),
                     "reasons": list(item.request.reasons), "status": "leased" if live else "available",
                     "reviewer": lease.reviewer if live else None,
                     "expires_in_s": int((lease.expires_at - now).total_seconds()) if live else None})
    if as_json:
        from tagwatch.output import emit_json

        leased = sum(r["status"] == "leased" for r in rows)
        emit_json({"pending": len(rows), "leased": leased, "items": rows}, indent=None)
        return
    if not rows:
        sys.stdout.write("the review queue is empty\n")
        return
    header = f"{'post':<28} {'requested (UTC)':<20} {'status':<10} {'reviewer':<16} expires_in_s  reasons"
    lines = [header] + [
        f"{r['post_id']:<28} {r['requested_at'][:19]:<20} {r['status']:<10} {r['reviewer'] or '-':<16} "
        f"{r['expires_in_s'] if r['expires_in_s'] is not None else '-':>12}  {', '.join(r['reasons'])}"
        for r in rows]
    sys.stdout.write("\n".join(lines) + f"\n{len(rows)} pending\n")
