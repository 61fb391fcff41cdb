"""`tagwatch pipeline compile | run`: write the Kubeflow IR YAML; run a pipeline locally with kfp.local."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from tagwatch.cli_context import cli_settings
from tagwatch.output import emit_json

pipeline_app = typer.Typer(help="Kubeflow pipelines: compile the IR YAML, run locally with kfp.local.",
                           no_args_is_help=True)
out = Console()
err = Console(stderr=True)


@pipeline_app.command("compile")
def compile_command(
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", help="Directory for <name>.yaml (default: ./pipelines/compiled under the current directory; "
                      "from the repository root that is the committed IR).")] = None,
    readmes: Annotated[bool, typer.Option(help="Also regenerate each component's README.md next to its source "
                                               "(a developer's step, in a checkout).")] = False,
) -> None:
    """Compile pretrain_and_deploy and transfer_only to KFP IR YAML (upload them in the Kubeflow UI).

    The pipelines ship inside the tagwatch package: this works from a wheel or the image, not only a checkout."""
    from tagwatch.pipeline.compile import compile_all, write_readmes

    for path in compile_all(out_dir):
        out.print(f"[green]compiled[/] {path}")
    if readmes:
        out.print(f"component READMEs: {len(write_readmes())} written")


def _parse_params(values: list[str]) -> dict:
    params = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: use NAME=VALUE")
        try:
            params[key.replace("-", "_")] = json.loads(raw)
        except ValueError:
            params[key.replace("-", "_")] = raw
    return params


@pipeline_app.command("run")
def run_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="pretrain_and_deploy or transfer_only.")],
    local_run: Annotated[bool, typer.Option("--local", help="Run here with kfp.local on the embedded stack.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Synthetic data, tiny model, tens of steps (~1 min).")] = False,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="NAME=VALUE pipeline parameter "
                                                        "(repeatable), e.g. -p pretrain_steps=50")] = None,
    pipeline_root: Annotated[Optional[Path],
                             typer.Option(help="Artifacts dir (default <state_dir>/pipelines).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run a pipeline. Only --local exists here: on Kubeflow, upload the IR from `tagwatch pipeline compile`."""
    from tagwatch.errors import PipelineError
    from tagwatch.pipeline.local import FULL_PARAMS, QUICK_PARAMS, run_local_pipeline
    from tagwatch.pipeline.local import check_stack
    from tagwatch.stack import with_stack_endpoints

    if not local_run:
        raise PipelineError("only local runs start from this CLI",
                            hint="add --local, or upload the IR `tagwatch pipeline compile` writes in the Kubeflow UI")
    params = _parse_params(param or [])
    if name == "pretrain_and_deploy":
        params = {**(QUICK_PARAMS if quick else FULL_PARAMS), **params}
    settings = cli_settings(ctx)
    check_stack(settings)  # before the endpoints default to the embedded stack's
    settings = with_stack_endpoints(settings)
    t0 = time.monotonic()

    def on_event(event: dict) -> None:
        extra = f" ({event['error']})" if event.get("error") else ""
        err.print(f"[dim]{time.monotonic() - t0:6.1f}s[/] {event['step']}: {event['event']}{extra}")

    result = run_local_pipeline(settings, pipeline=name, params=params, pipeline_root=pipeline_root, on_event=on_event)
    if as_json:
        emit_json(result.to_dict())
        return
    table = Table(title=f"{result.pipeline}: {result.run_name}")
    table.add_column("task")
    table.add_column("wall s", justify="right")
    for step, seconds in result.task_seconds.items():
        table.add_row(step, f"{seconds:.1f}")
    table.add_row("[b]total (with kfp.local overhead)[/]", f"{result.wall_seconds:.1f}")
    out.print(table)
    gate = result.gate
    out.print(f"gate: {'promote' if gate['promote'] else 'keep production'} ({gate['reason']})")
    if result.version is not None:
        out.print(f"registered {result.model_name} version {result.version}"
                  + (f", alias {result.alias}" if result.alias else ""))
    for label, path in result.artifacts.items():
        out.print(f"  {label:16s} {path}")
