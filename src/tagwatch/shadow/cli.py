"""`tagwatch shadow run`: replay real posts through a candidate beside production, without emitting decisions.

The logic is in tagwatch.shadow.run; this prints a progress bar (stderr), then one summary line and the report's
paths (stdout), or the report as JSON with ``--json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tagwatch.cli_context import cli_settings

shadow_app = typer.Typer(help="Shadow replay: a candidate model/policy decides real posts beside production.",
                         no_args_is_help=True)


@shadow_app.command("run")
def shadow_run(
    ctx: typer.Context,
    candidate: Annotated[str, typer.Option(help="MODEL@VERSION: the registry's model name and a version number or "
                                                "alias (e.g. tagwatch-moderation@7).")],
    policy: Annotated[Optional[str], typer.Option(help="policy:REF (a registered policy version: number or alias, "
                                                       "calibrated for the candidate) or a policy.json file "
                                                       "(default: the candidate version's own).")] = None,
    start: Annotated[Optional[str], typer.Option("--from", help="First offset (every partition) or time: ISO 8601 "
                                                              "or 30m/2h/7d ago.")] = None,
    end: Annotated[Optional[str], typer.Option("--to", help="End offset or time (exclusive).")] = None,
    ledger_range: Annotated[Optional[str], typer.Option(
        help="FROM..TO: the posts whose production decisions were recorded in this window (TO empty: now).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Report directory (default: <state dir>/shadow/<time>-<run id>).")] = None,
    top: Annotated[int, typer.Option(min=0, help="Changed posts shown with thumbnails.")] = 12,
    batch_size: Annotated[int, typer.Option(min=1, help="Posts per replay batch.")] = 64,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the shadow model to serve the candidate.")] = 60.0,
    upload: Annotated[bool, typer.Option(help="Upload the report to s3://<models>/reports/shadow/.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Replay a range of post.created records through a candidate and write the decision-diff report.

    The candidate is served by the same Triton as production under its own model name (settings.triton.shadow_name,
    alias `shadow`); decisions are compared with the ledger's; nothing is published and the ledger is not written.

    Example: tagwatch shadow run --candidate tagwatch-moderation@7 --ledger-range 2h..

    Example: tagwatch shadow run --candidate tagwatch-moderation@candidate --from 0 --to 500 --policy p.json

    Exit codes: 3 bad input (not MODEL@VERSION, another model's name, an unreadable policy, no range);
    11 unknown version or alias; 13 the candidate's served config differs from the shadow model's, or Triton
    unavailable; 16 the range holds no post.created record.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tagwatch.output import emit_json
    from tagwatch.shadow.run import ShadowRequest, run_shadow
    from tagwatch.stack import with_stack_endpoints

    settings = with_stack_endpoints(cli_settings(ctx))
    request = ShadowRequest(candidate=candidate, policy=policy, start=start, end=end, ledger_range=ledger_range,
                            out_dir=out, batch_size=batch_size, top_k=top, wait_s=wait, upload=upload)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as bars:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done, total=total)

        report = run_shadow(settings, request, progress=progress)
    if as_json:
        emit_json(report.model_dump(mode="json"), indent=None)
        return
    s = report.summary
    skipped = ", ".join(f"{n} {r}" for r, n in s["skipped"].items() if n) or "none skipped"
    changes = ", ".join(f"{t} {n}" for t, n in report.transitions.items() if t.split("->")[0] != t.split("->")[1])
    print(f"{report.model_name} v{report.candidate['version']}: {s['records']} records, {s['compared']} compared, "
          f"{report.changed} changed ({changes or 'no change'}); {skipped}")
    for name, path in report.files.items():
        print(f"{name}: {path}")
