"""`tagwatch serve`: run Triton in the foreground on a registry alias (Ctrl+C stops it).

`tagwatch stack up` runs the same server in the background when a `production` model exists.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console

from tagwatch.cli_context import cli_settings

serve_app = typer.Typer(help="Serve a registered model on a local Triton (loopback).", invoke_without_command=True)
err = Console(stderr=True)


@serve_app.callback()
def serve(
    ctx: typer.Context,
    ref: Annotated[str, typer.Option(help="Alias, version number or `latest`.")] = "production",
    http_port: Annotated[Optional[int], typer.Option(help="HTTP port (default settings.triton.http_port).")] = None,
    grpc_port: Annotated[Optional[int], typer.Option(help="gRPC port (default settings.triton.grpc_port).")] = None,
    metrics_port: Annotated[Optional[int], typer.Option(help="Metrics port (default settings.triton.metrics_port).")] = None,
    free_ports: Annotated[bool, typer.Option("--free-ports", help="Pick three free ports.")] = False,
    poll_s: Annotated[float, typer.Option(help="Seconds between alias checks (hot swap on a move).")] = 5.0,
    ort_threads: Annotated[Optional[int], typer.Option(help="ONNX Runtime intra-op threads.")] = None,
) -> None:
    """Verify and load the version, start Triton on 127.0.0.1, hot-swap when the alias moves."""
    if ctx.invoked_subcommand is not None:
        return
    import signal
    import threading

    from tagwatch.serving.server import run_server
    from tagwatch.stack import with_stack_endpoints
    from tagwatch.stack.ports import pick_free_ports

    settings = with_stack_endpoints(cli_settings(ctx))
    ports = pick_free_ports(settings.triton.host, 3) if free_ports else [None, None, None]
    http = http_port or ports[0] or settings.triton.http_port
    grpc = grpc_port or ports[1] or settings.triton.grpc_port
    metrics = metrics_port or ports[2] or settings.triton.metrics_port
    (settings.paths.state_dir / "triton").mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    err.print(f"[dim]•[/] serving {settings.triton.model_name}@{ref}: grpc {settings.triton.host}:{grpc}, "
              f"http {settings.triton.host}:{http}, metrics {settings.triton.host}:{metrics} (Ctrl+C stops)")
    run_server(settings, ref=ref, http_port=http, grpc_port=grpc, metrics_port=metrics, poll_s=poll_s,
               ort_threads=ort_threads or settings.triton.ort_threads, stop_event=stop)


@serve_app.command("check-config")
def check_config(
    ctx: typer.Context,
    url: Annotated[Optional[str], typer.Option(help="Triton HTTP host:port (default the local server's).")] = None,
    ref: Annotated[str, typer.Option(help="Registered version to compare with: alias, number or `latest`.")] = "production",
) -> None:
    """Compare the config a running Triton reports with the version's registered config.pbtxt (exit 5 if they differ).

    Example (a cluster's predictor, port-forwarded): kubectl -n tagwatch port-forward svc/tagwatch-moderation-predictor
    8080:80 & tagwatch serve check-config --url 127.0.0.1:8080 --ref production
    """
    from tagwatch.errors import CheckFailedError
    from tagwatch.registry import open_registry
    from tagwatch.serving.config_check import compare, fetch_served_config, registered_config
    from tagwatch.stack import with_stack_endpoints
    from tagwatch.tensor_contract import VERSION_OUTPUT

    settings = with_stack_endpoints(cli_settings(ctx))
    url = url or f"{settings.triton.host}:{settings.triton.http_port}"
    version, registered = registered_config(open_registry(settings), ref)
    found = compare(fetch_served_config(url, registered.name), registered, extra_outputs=(VERSION_OUTPUT,))
    for line in found:
        err.print(f"[red]✗[/] {line}")
    if found:
        raise CheckFailedError(f"{registered.name} at {url} is not served as version {version}'s config.pbtxt says "
                               f"({len(found)} difference(s))", hint="restart the server on that version")
    err.print(f"[green]✓[/] {registered.name} at {url} is served as version {version}'s config.pbtxt says")
