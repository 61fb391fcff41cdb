"""The `tagwatch` command line: builds Settings at the edge, calls library functions, renders with rich."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from tagwatch import __version__
from tagwatch.cli_context import CliContext, cli_context, cli_settings
from tagwatch.errors import TagwatchError
from tagwatch.k8s.cli import manifests_app
from tagwatch.moderation.bank_cli import bank_app
from tagwatch.moderation.cli import moderate, posts_app
from tagwatch.registry.cli import model_app
from tagwatch.serving.cli import serve_app
from tagwatch.output import emit_json

HELP = (
    "tagwatch: pretrain image classifiers on the hashtags people write, then screen every new post.\n\n"
    "Kubeflow pipelines train and register the model, Triton serves it, Kafka consumers decide allow/review/remove."
)

app = typer.Typer(help=HELP, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
config_app = typer.Typer(help="Show the resolved configuration.", no_args_is_help=True)
stack_app = typer.Typer(
    help="The embedded local platform: SeaweedFS (S3) and Tansu (Kafka) on 127.0.0.1.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
app.add_typer(stack_app, name="stack")
from tagwatch.data.cli import data_app  # noqa: E402
app.add_typer(data_app, name="data")
from tagwatch.privacy.cli import delete as posts_delete  # noqa: E402
from tagwatch.privacy.cli import lineage as data_lineage  # noqa: E402
data_app.command("lineage")(data_lineage)
app.add_typer(manifests_app, name="manifests")
app.add_typer(posts_app, name="posts")
from tagwatch.moderation.audit_cli import audit  # noqa: E402
posts_app.command("audit")(audit)
posts_app.command("delete")(posts_delete)
app.add_typer(bank_app, name="bank")
from tagwatch.moderation.dlq_cli import dlq_app  # noqa: E402
from tagwatch.moderation.ledger_cli import ledger_app  # noqa: E402
app.add_typer(dlq_app, name="dlq")
app.add_typer(ledger_app, name="ledger")
from tagwatch.shadow.cli import shadow_app  # noqa: E402
app.add_typer(shadow_app, name="shadow")
app.command("moderate")(moderate)
from tagwatch.train.cli import train_app  # noqa: E402
app.add_typer(train_app, name="train")
app.add_typer(model_app, name="model")
from tagwatch.registry.policy_cli import policy_app  # noqa: E402
app.add_typer(policy_app, name="policy")
app.add_typer(serve_app, name="serve")
from tagwatch.pipeline.cli import pipeline_app  # noqa: E402
app.add_typer(pipeline_app, name="pipeline")
from tagwatch.review.cli import review_app  # noqa: E402
app.add_typer(review_app, name="review")

out = Console()
err = Console(stderr=True)
log = logging.getLogger("tagwatch.cli")


def _version(value: bool) -> None:
    if value:
        out.print(f"tagwatch {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Optional[Path], typer.Option("--config", "-c", help="YAML settings file (env vars and flags override it).")
    ] = None,
    state_dir: Annotated[
        Optional[Path],
        typer.Option("--state-dir", help="Where the embedded stack keeps data, logs and its state file."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Hands the global flags down to every sub-command (``tagwatch.cli_context``); Settings are built there."""
    state = cli_context(ctx)
    state.config, state.state_dir, state.verbose = config, state_dir, verbose


# -- config ------------------------------------------------------------------------------------------
@config_app.command("show")
def config_show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print the resolved settings (secrets masked) and where each value can be set."""
    settings = cli_settings(ctx)
    data = settings.redacted()
    if as_json:
        emit_json(data)
        return
    table = Table(title="tagwatch settings", show_lines=False)
    table.add_column("setting")
    table.add_column("value")
    table.add_column("env var", style="dim")
    for key, value in _flatten(data):
        table.add_row(key, str(value), "TAGWATCH_" + key.upper().replace(".", "__"))
    out.print(table)


def _flatten(data: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, name + "."))
        else:
            rows.append((name, value))
    return rows


# -- stack -------------------------------------------------------------------------------------------
@stack_app.command("up")
def stack_up(
    ctx: typer.Context,
    free_ports: Annotated[
        bool, typer.Option("--free-ports", help="Pick free ports (kept in the state file) instead of the fixed ones.")
    ] = False,
    s3_port: Annotated[Optional[int], typer.Option(help="S3 port on 127.0.0.1 (default 8333).")] = None,
    kafka_port: Annotated[Optional[int], typer.Option(help="Kafka port on 127.0.0.1 (default 9092).")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Seconds to wait for each service's health.")] = None,
) -> None:
    """Start SeaweedFS and Tansu (idempotent), wait until healthy, create buckets and topics; Triton too once a
    `production` model exists. Exit 4 if a service that was due to start did not (the others stay up)."""
    from tagwatch.stack import Stack

    settings = cli_settings(
        ctx, stack={"free_ports": free_ports or None, "s3_port": s3_port, "kafka_port": kafka_port, "start_timeout_s": timeout}
    )
    result = Stack(settings).up(report=lambda msg: err.print(f"[dim]•[/] {msg}"))
    state = result.state
    assert state is not None
    if result.started:
        out.print(f"[green]stack up[/] in {result.seconds:.1f}s: started {', '.join(result.started)}")
    else:
        out.print(f"[green]stack already running[/] ({', '.join(result.already_running)})")
    out.print(f"  S3     {state.s3_endpoint()}")
    out.print(f"  Kafka  {state.kafka_bootstrap()}")
    if "triton" in state.services:
        out.print(f"  Triton {state.services['triton'].endpoint}")
    out.print(f"  state  {settings.paths.stack_file}")
    result.raise_for_failures()  # a service that was due to start and did not: exit 4 (no model yet is no failure)


@stack_app.command("down")
def stack_down(ctx: typer.Context) -> None:
    """Stop every stack process this state dir started, each with its whole process group (SIGTERM, then
    SIGKILL after the stop timeout), including what is left of a service whose main process died."""
    from tagwatch.stack import Stack

    settings = cli_settings(ctx)
    t0 = time.monotonic()
    outcomes = Stack(settings).down(report=lambda msg: err.print(f"[dim]•[/] {msg}"))
    if not outcomes:
        out.print("stack was not running")
        return
    out.print(f"[green]stack down[/] in {time.monotonic() - t0:.1f}s")


@stack_app.command("restart")
def stack_restart(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="seaweedfs, tansu or triton.")],
    kill: Annotated[
        bool, typer.Option("--kill", help="SIGKILL the service's process group instead of SIGTERM (chaos tests).")
    ] = False,
) -> None:
    """Stop one service (its whole process group) and start it again on the same ports; wait until healthy.

    The other services keep running. Exit 4 if it does not come back healthy.

    Example, what a crash looks like: tagwatch stack restart triton --kill
    """
    from tagwatch.stack import Stack

    settings = cli_settings(ctx)
    result = Stack(settings).restart(service, kill=kill, report=lambda msg: err.print(f"[dim]•[/] {msg}"))
    out.print(f"[green]{result.name} restarted[/] in {result.seconds:.1f}s (pid {result.pid}, was {result.stopped})")
    out.print(f"  {result.endpoint}")


@stack_app.command("status")
def stack_status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show each service: running, healthy, PID, endpoint, version, uptime, CPUs. Exit 4 if any is down."""
    from tagwatch.stack import Stack

    settings = cli_settings(ctx)
    rows = Stack(settings).status()
    for r in rows:
        if r.orphans_stopped:
            err.print(f"[yellow]note:[/] {r.name}'s main process had died; what was left of its process group: "
                      f"{r.orphans_stopped}", highlight=False, soft_wrap=True)
    if as_json:
        emit_json([{**r.__dict__, "log_file": str(r.log_file)} for r in rows])
    else:
        table = Table(title=f"tagwatch stack ({settings.paths.state_dir})")
        for column in ("service", "state", "pid", "endpoint", "version", "uptime", "cpus", "log"):
            table.add_column(column)
        for r in rows:
            state = "[green]healthy[/]" if r.healthy else ("[yellow]unhealthy[/]" if r.running else (
                "[dim]off[/]" if r.optional else "[red]stopped[/]"))
            uptime = f"{r.uptime_s:.0f}s" if r.uptime_s is not None else "-"
            cpus = ",".join(map(str, r.cpus)) if r.cpus else ("all" if r.running else "-")
            table.add_row(r.name, state, str(r.pid or "-"), r.endpoint, r.version, uptime, cpus, str(r.log_file))
        out.print(table)
    if not all(r.healthy for r in rows if r.running or not r.optional):
        raise typer.Exit(4)


@stack_app.command("logs")
def stack_logs(
    ctx: typer.Context,
    service: Annotated[Optional[str], typer.Argument(help="seaweedfs or tansu (default: all).")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines from the end.")] = 40,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl+C stops).")] = False,
) -> None:
    """Print the end of the stack's log files."""
    from tagwatch.stack import Stack
    from tagwatch.stack.process import tail

    settings = cli_settings(ctx)
    files = Stack(settings).log_files()
    if service is not None and service not in files:
        raise TagwatchError(f"no service named {service!r}", hint=f"pick one of: {', '.join(files)}")
    chosen = {service: files[service]} if service else files
    redactor = cli_context(ctx).redactor
    for name, path in chosen.items():
        out.rule(f"{name} — {path}")
        for line in tail(path, lines):
            out.print(redactor.redact(line), markup=False, highlight=False)
    if follow:
        _follow(chosen, redactor)


def _follow(files: dict[str, Path], redactor) -> None:
    offsets = {name: path.stat().st_size if path.exists() else 0 for name, path in files.items()}
    while True:
        for name, path in files.items():
            if not path.exists():
                continue
            with open(path, "rb") as handle:
                handle.seek(offsets[name])
                chunk = handle.read()
                offsets[name] = handle.tell()
            for line in chunk.decode("utf-8", errors="replace").splitlines():
                out.print(f"{name}| {redactor.redact(line)}", markup=False, highlight=False)
        time.sleep(0.5)


@stack_app.command("check")
def stack_check(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: every check's name, ok, seconds, detail.")] = False,
) -> None:
    """Round trips: S3 put/get/delete and a Kafka produce/consume. Prints OK or what failed (exit 5)."""
    from tagwatch.errors import CheckFailedError
    from tagwatch.output import emit_json
    from tagwatch.stack import run_checks, with_stack_endpoints

    settings = with_stack_endpoints(cli_settings(ctx))
    results = run_checks(settings)
    redactor = cli_context(ctx).redactor
    failed = [r.name for r in results if not r.ok]
    if as_json:
        emit_json({"ok": not failed, "checks": [{"name": r.name, "ok": r.ok, "seconds": round(r.seconds, 3),
                                                  "detail": redactor.redact(r.detail)} for r in results]})
    else:
        _print_checks(settings, results, redactor)
    if failed:
        raise CheckFailedError(
            f"{len(failed)} check(s) failed: {', '.join(failed)}",
            hint="is the stack up? `tagwatch stack status`, then `tagwatch stack logs`",
        )
    if not as_json:
        out.print("[green]OK[/]")


def _print_checks(settings, results, redactor) -> None:
    table = Table(title=f"stack check (S3 {settings.s3.endpoint_url}, Kafka {settings.kafka.bootstrap_servers})")
    for column in ("check", "result", "time", "detail"):
        table.add_column(column)
    for r in results:
        table.add_row(
            r.name, "[green]OK[/]" if r.ok else "[red]FAIL[/]", f"{r.seconds:.2f}s", redactor.redact(r.detail)
        )
    out.print(table)


# -- demo --------------------------------------------------------------------------------------------
@app.command("demo")
def demo(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option("--quick", help="The ≤5-minute variant (a corpus subset, a tiny model).")] = False,
    report_dir: Annotated[Path, typer.Option("--report-dir", help="Where index.html, summary.json and figures go.")] = Path(
        "tagwatch-report"),
    fresh: Annotated[bool, typer.Option("--fresh", help="Retrain even if a model of the same config is registered.")] = False,
    consumers: Annotated[int, typer.Option("--consumers", min=1, help="Moderation consumer processes.")] = 2,
    rate: Annotated[Optional[float], typer.Option(help="Publish at most this many posts/s (default: a burst).")] = None,
) -> None:
    """The whole product end to end on the embedded stack: ingest, train, serve, moderate, report."""
    from tagwatch.demo.run import run_demo

    settings = cli_settings(ctx)  # its child processes get these settings in their env (tagwatch.settings.child_env)
    run_demo(settings, quick=quick, report_dir=report_dir, fresh=fresh, consumers=consumers, rate=rate, console=out)


# -- entry point -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """Console-script entry: domain errors become one `error:` line, one `hint:` line and an exit code."""
    context = CliContext()  # the root callback fills it; kept here for the error lines below
    try:
        app(args=argv, prog_name="tagwatch", obj=context)
    except TagwatchError as error:
        _print_error(context, error.message, error.hint)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as error:  # a bug or an unmapped failure: still one line, the traceback only with -v
        _print_error(
            context, f"unexpected {type(error).__name__}: {' '.join(str(error).split())[:500]}",
            "rerun with -v for the traceback; please report it if it looks like a tagwatch bug",
        )
        sys.exit(1)


def _print_error(context: CliContext, message: str, hint: str | None) -> None:
    err.print(f"[bold red]error:[/] {context.redactor.redact(message)}", highlight=False, soft_wrap=True)
    if hint:
        err.print(f"[bold]hint:[/] {context.redactor.redact(hint)}", highlight=False, soft_wrap=True)
    if context.verbose:
        import traceback

        err.print(context.redactor.redact(traceback.format_exc()), markup=False, highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
