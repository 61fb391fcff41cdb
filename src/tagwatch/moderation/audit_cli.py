"""`tagwatch posts audit`: read a run back and check it (moderation/audit.py). Exit 1 when a check fails.

The report goes to stdout as plain text or, with ``--json``, as one JSON object (never through a rich console,
which wraps lines when stdout is not a terminal).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tagwatch.cli_context import cli_settings
from tagwatch.errors import ConfigError


def read_post_ids(text: str) -> set[str]:
    """Post ids from ``--ids-out``'s JSON lines ({"post_id": ...}) or from plain lines of ids."""
    ids = set()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            row = json.loads(line)
            if not isinstance(row.get("post_id"), str):
                raise ValueError(f"line {number} has no post_id")
            ids.add(row["post_id"])
        else:
            ids.add(line)
    return ids


def audit(
    ctx: typer.Context,
    ids: Annotated[Optional[Path], typer.Option(help="File of the published post ids, one per line "
                                                "(the JSON lines `tagwatch posts publish --ids-out` writes, or one id per line); default: every post on the topic.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as one JSON object.")] = False,
    quiet: Annotated[float, typer.Option(help="A topic is read until no record arrived for this many seconds.")] = 2.0,
) -> None:
    """Audit the stream: lost posts, ledger records vs the first decision event, commits past undecided records."""
    from tagwatch.moderation.readback import audit_stream
    from tagwatch.stack import with_stack_endpoints

    expected = None
    if ids is not None:
        try:
            expected = read_post_ids(ids.read_text())
        except OSError as error:
            raise ConfigError(f"cannot read {ids}: {error.strerror}", hint="pass the file --ids-out wrote") from error
        except ValueError as error:
            raise ConfigError(f"{ids} is not a list of post ids: {error}",
                              hint="pass the JSON lines `posts publish --ids-out` wrote, or one post id per line") from error
    settings = with_stack_endpoints(cli_settings(ctx))
    report = audit_stream(settings, expected=expected, quiet_s=quiet)
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict()) + "\n")
    else:
        sys.stdout.write(render(report) + "\n")
    if not report.ok:
        raise typer.Exit(1)


def render(report) -> str:
    lines = [
        f"posts: {report.posts_seen} seen" + (f" of {report.posts_expected} expected" if report.posts_expected is not None else "")
        + f" ({report.records_seen} records)",
        f"decided: {report.decided}; dead-lettered: {report.dead_lettered} {report.dead_letters_by_reason}",
        f"lost: {report.lost}; unhandled records: {report.unhandled_records}",
        f"acknowledged but not on the topic (the broker's loss): {report.not_on_topic}; "
        f"offsets missing inside the topic's log: {report.topic_gaps}",
        f"ledger: {report.ledger_records} records, {report.ledger_missing} missing, "
        f"{report.ledger_mismatches} differ from the first decision event",
        f"decision events: {report.decision_events} ({report.duplicate_events} duplicates, "
        f"{report.conflicting_decision_ids} posts with conflicting ids)",
        f"commit violations: {report.commit_violations}; committed {report.to_dict()['committed']}",
    ]
    for title, sample in (("lost", report.lost_sample), ("not on the topic", report.not_on_topic_sample),
                          ("topic gap", report.topic_gap_sample), ("ledger mismatch", report.ledger_mismatch_sample),
                          ("conflicting ids", report.conflicting_sample),
                          ("commit violation", report.commit_violation_sample)):
        lines.extend(f"  {title}: {json.dumps(item)}" for item in sample)
    lines.append("OK" if report.ok else "FAILED")
    return "\n".join(lines)
