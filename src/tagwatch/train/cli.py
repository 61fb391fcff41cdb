"""`tagwatch train pretrain|transfer`: forwards its flags to ``pretrain.main`` / ``transfer.main`` (one argparse
definition, also used by ``python -m tagwatch.train`` under torchrun). ``--nproc N`` launches N local ranks
with torchrun (gloo on CPU), rendezvous on 127.0.0.1 and a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Annotated, Mapping

import typer

from tagwatch.cli_context import cli_settings
from tagwatch.settings import Settings, child_env

train_app = typer.Typer(help="Hashtag pretraining and transfer to moderation categories (PyTorch, DDP).",
                        no_args_is_help=True)
_FORWARD = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
_NPROC_HELP = "Local ranks: >1 relaunches under torchrun (gloo on CPU). Other flags: see --help."


@train_app.command("pretrain", context_settings=_FORWARD, add_help_option=False)
def pretrain_command(ctx: typer.Context, nproc: Annotated[int, typer.Option("--nproc", help=_NPROC_HELP)] = 1) -> None:
    """Pretrain on a dataset's hashtags (flags: `tagwatch train pretrain --help`)."""
    _dispatch(ctx, "pretrain", list(ctx.args), nproc)


@train_app.command("transfer", context_settings=_FORWARD, add_help_option=False)
def transfer_command(ctx: typer.Context, nproc: Annotated[int, typer.Option("--nproc", help=_NPROC_HELP)] = 1) -> None:
    """Linear probe / fine-tune on moderation categories, calibrate thresholds, write policy.json."""
    _dispatch(ctx, "transfer", list(ctx.args), nproc)


def _dispatch(ctx: typer.Context, kind: str, argv: list[str], nproc: int) -> None:
    settings = None
    if "--help" not in argv and "-h" not in argv:
        settings = cli_settings(ctx)  # validated once, redacted logging set up; the trainer runs with them
    if nproc > 1:
        code = launch_torchrun(kind, argv, nproc=nproc, env=child_env(settings) if settings is not None else None)
        if code:
            raise typer.Exit(code)
        return
    run_main(kind, argv, settings=settings)


def run_main(kind: str, argv: list[str], *, settings: Settings | None = None) -> dict:
    """The trainer's ``main(argv)`` in this process, with ``settings`` (default: its own from the environment)."""
    if kind == "pretrain":
        from tagwatch.train.pretrain import main
    else:
        from tagwatch.train.transfer import main
    return main(argv, settings=settings)


def launch_torchrun(kind: str, argv: list[str], *, nproc: int, env: dict[str, str] | None = None) -> int:
    """Run ``python -m tagwatch.train KIND argv`` on ``nproc`` local ranks (a library caller passes
    ``config.to_argv()``). Credentials travel in the inherited environment (TAGWATCH_S3__*), never in argv."""
    return subprocess.call(torchrun_command(kind, argv, nproc=nproc), env=torchrun_env(env))


def torchrun_command(kind: str, argv: list[str], *, nproc: int) -> list[str]:
    """torchrun on this machine: ``nproc`` ranks of ``python -m tagwatch.train KIND argv``, rendezvous on
    127.0.0.1 and a free port."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
            "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "tagwatch.train", kind, *argv]


def torchrun_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with gloo on the loopback interface."""
    return {**(env if env is not None else os.environ), "GLOO_SOCKET_IFNAME": "lo"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_entry(argv: list[str]) -> int:
    """``python -m tagwatch.train KIND ...``: domain errors become one error line + hint and an exit code."""
    from tagwatch.errors import TagwatchError

    if not argv or argv[0] not in ("pretrain", "transfer"):
        print("usage: python -m tagwatch.train {pretrain|transfer} [flags]", file=sys.stderr)
        return 2
    try:
        run_main(argv[0], argv[1:])
    except TagwatchError as error:
        print(f"error: {error.message}", file=sys.stderr)
        if error.hint:
            print(f"hint: {error.hint}", file=sys.stderr)
        return error.exit_code
    return 0
