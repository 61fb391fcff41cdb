"""What pretraining and transfer share: the ``TrainConfig`` fields, the argparse flags that set them, and the argv
that parses back to a config.

A config is built once: from flags at the edge (``Config.from_argv``: the CLI, torchrun's ranks, a TrainJob's
container) or directly by a library caller (the pipeline steps). Flags are defined once per field; their
defaults come from the dataclass (``with_config_defaults``), and the argv handed to torchrun or a TrainJob is
derived from the same parser (``TrainConfig.to_argv``), so no flag list is written twice.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, fields
from typing import Any, TypeVar

C = TypeVar("C", bound="TrainConfig")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The fields of every training run; ``PretrainConfig`` and ``TransferConfig`` add their own and override a
    default where theirs differs (sampling, calibrate_steps)."""

    dataset: str | None = None
    arch: str = "tiny_cnn"
    width: int = 16
    image_size: int = 128
    probe_l2: float = 1e-3
    sampling: str = "sqrt"
    batch_size: int = 32
    steps: int = 0
    epochs: float = 0.0
    base_lr: float = 0.1
    lr: float = 0.0
    warmup_steps: int = 0
    schedule: str = "cosine"
    weight_decay: float = 1e-4
    momentum: float = 0.9
    workers: int = 2
    shuffle_size: int = 256
    seed: int = 0
    checkpoint_every: int = 0
    checkpoint_root: str | None = None
    run_id: str | None = None
    resume: str | None = None
    output_dir: str | None = None
    calibrate_steps: int = 5
    log_every: int = 10
    device: str = "auto"
    threads: int = 0
    progress: bool = True
    synthetic_labels: int = 16

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        """The flags of this kind of run (each subclass returns its module's ``build_parser()``)."""
        raise NotImplementedError

    @classmethod
    def from_argv(cls: type[C], argv: list[str] | None) -> C:
        return cls(**vars(cls.parser().parse_args(argv)))

    def to_argv(self) -> list[str]:
        """The flags that parse back to this config (``from_argv(cfg.to_argv()) == cfg``), defaults left out: what
        torchrun's ranks and a TrainJob's container are started with."""
        return argv_of(self, self.parser())


def add_train_flags(parser: argparse.ArgumentParser, *, notes: dict[str, str] | None = None) -> None:
    """The flags of every ``TrainConfig`` field but ``--dataset`` (its help differs per kind). ``notes``: text
    appended to a flag's help, by field name (e.g. transfer's "only with --init none")."""
    from tagwatch.train.models import ARCHS
    from tagwatch.train.optim import SCHEDULES

    notes = notes or {}

    def flag(name: str, help: str | None = None, **kwargs: Any) -> None:
        dest = name.removeprefix("--").replace("-", "_")
        text = "; ".join(t for t in (help, notes.get(kwargs.get("dest", dest))) if t) or None
        parser.add_argument(name, help=text, **kwargs)

    flag("--arch", choices=ARCHS)
    flag("--width", "tiny_cnn base width", type=int)
    flag("--image-size", "crop size; 128/224 use the named presets", type=int)
    flag("--probe-l2", "lbfgs: L2 on the standardised-feature weights", type=float)
    flag("--sampling", choices=("sqrt", "natural"))
    flag("--batch-size", "per rank", type=int)
    flag("--steps", "total optimiser steps (or use --epochs)", type=int)
    flag("--epochs", "epochs of the train split, converted to steps", type=float)
    flag("--base-lr", "LR per 256 images (linear scaling rule)", type=float)
    flag("--lr", "absolute peak LR (overrides --base-lr scaling)", type=float)
    flag("--warmup-steps", type=int)
    flag("--schedule", choices=SCHEDULES)
    flag("--weight-decay", type=float)
    flag("--momentum", type=float)
    flag("--workers", "data-loader worker processes per rank", type=int)
    flag("--shuffle-size", type=int)
    flag("--seed", type=int)
    flag("--checkpoint-every", "steps between checkpoints (0: end and SIGTERM only)", type=int)
    flag("--checkpoint-root", "s3://bucket[/prefix] or a local dir (default s3://<buckets.checkpoints>)")
    flag("--run-id")
    flag("--resume", "'latest' (this run id) or a checkpoint URI")
    flag("--output-dir", "local metrics dir (default <state_dir>/runs/<run_id>)")
    flag("--calibrate-steps", "synthetic steps measuring the throughput ceiling (0: off)", type=int)
    flag("--log-every", type=int)
    flag("--device", choices=("auto", "cpu", "cuda"))
    flag("--threads", "torch threads per rank (0: torch's default)", type=int)
    flag("--no-progress", dest="progress", action="store_false")
    flag("--synthetic-labels", type=int)


def with_config_defaults(parser: argparse.ArgumentParser, config: type[TrainConfig]) -> argparse.ArgumentParser:
    """Every flag's default is its field's default in ``config`` (written once, in the dataclass)."""
    defaults = {f.name: f.default for f in fields(config) if f.default is not MISSING}
    parser.set_defaults(**{a.dest: defaults[a.dest] for a in parser._actions if a.dest in defaults})
    return parser


def argv_of(config: TrainConfig, parser: argparse.ArgumentParser) -> list[str]:
    """``config`` as the flags of ``parser`` (argparse keeps no public list of its actions: ``_actions``)."""
    argv: list[str] = []
    for action in parser._actions:
        if not action.option_strings or not hasattr(config, action.dest):
            continue
        value, option = getattr(config, action.dest), action.option_strings[-1]
        if value == action.default and not action.required:
            continue
        if action.nargs == 0:  # store_true / store_false: the flag says the non-default value
            if value == action.const:
                argv.append(option)
            continue
        argv.append(f"{option}={value}")
    return argv
