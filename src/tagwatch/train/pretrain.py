"""`tagwatch train pretrain` / `python -m tagwatch.train pretrain` / torchrun entry: hashtag pretraining.

``main(argv)`` parses flags into a frozen ``PretrainConfig``, sets up the run and calls the library; it runs the
same in one process (tests), under torchrun (gloo/nccl) and in a Kubeflow Trainer TrainJob.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tagwatch.errors import CheckpointError
from tagwatch.settings import Settings
from tagwatch.train.data import StreamConfig
from tagwatch.train.distributed import barrier, init_distributed, shutdown_distributed
from tagwatch.train.evaluate import hashtag_metrics, predict
from tagwatch.train.loop import LoopConfig, RunState, TrainTask, install_sigterm_handler, run_training, write_json
from tagwatch.train.models import ARCHS, create_model, model_config
from tagwatch.train.optim import SCHEDULES, scaled_lr
from tagwatch.train import runtime

log = logging.getLogger("tagwatch.train")


@dataclass(frozen=True)
class PretrainConfig:
    dataset: str
    arch: str = "tiny_cnn"
    width: int = 16
    image_size: int = 128
    pretrained: bool = False
    loss: str = "softmax"
    solver: str = "sgd"
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
    compile: bool = False
    device: str = "auto"
    threads: int = 0
    progress: bool = True
    evaluate: bool = True
    synthetic_labels: int = 16


def build_parser(prog: str = "tagwatch train pretrain") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Pretrain on hashtags (softmax CE over 1/k targets, sqrt sampling, "
                                "SGD Nesterov, linear LR scaling). Runs under torchrun for DDP.")
    p.add_argument("--dataset", required=True, help="NAME/VERSION under s3://<buckets.datasets>/, or synthetic:N (in memory)")
    p.add_argument("--arch", default="tiny_cnn", choices=ARCHS)
    p.add_argument("--width", type=int, default=16, help="tiny_cnn base width")
    p.add_argument("--image-size", type=int, default=128, help="crop size; 128/224 use the named presets")
    p.add_argument("--pretrained", action="store_true", help="ImageNet init, offline: efficientnet_lite0 from its "
                   "wheel, torchvision archs from the local torch hub cache")
    p.add_argument("--loss", default="softmax", choices=("softmax", "sigmoid"))
    p.add_argument("--solver", default="sgd", choices=("sgd", "lbfgs"),
                   help="sgd: train the whole network; lbfgs: keep the (ImageNet) backbone frozen and fit the hashtag "
                   "head by L-BFGS on features computed once per train image - minutes of CPU instead of hours, "
                   "one process, no resume")
    p.add_argument("--probe-l2", type=float, default=1e-3, help="lbfgs: L2 on the standardised-feature weights")
    p.add_argument("--sampling", default="sqrt", choices=("sqrt", "natural"))
    p.add_argument("--batch-size", type=int, default=32, help="per rank")
    p.add_argument("--steps", type=int, default=0, help="total optimiser steps (or use --epochs)")
    p.add_argument("--epochs", type=float, default=0.0, help="epochs of the train split, converted to steps")
    p.add_argument("--base-lr", type=float, default=0.1, help="LR per 256 images (linear scaling rule)")
    p.add_argument("--lr", type=float, default=0.0, help="absolute peak LR (overrides --base-lr scaling)")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--schedule", default="cosine", choices=SCHEDULES)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--workers", type=int, default=2, help="data-loader worker processes per rank")
    p.add_argument("--shuffle-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=0, help="steps between checkpoints (0: end and SIGTERM only)")
    p.add_argument("--checkpoint-root", default=None, help="s3://bucket[/prefix] or a local dir (default s3://<buckets.checkpoints>)")
    p.add_argument("--run-id", default=None)
    p.add_argument("--resume", default=None, help="'latest' (this run id) or a checkpoint URI")
    p.add_argument("--output-dir", default=None, help="local metrics dir (default <state_dir>/runs/<run_id>)")
    p.add_argument("--calibrate-steps", type=int, default=5, help="synthetic steps measuring the throughput ceiling (0: off)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=0, help="torch threads per rank (0: torch's default)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--no-evaluate", dest="evaluate", action="store_false", help="skip val mAP at the end")
    p.add_argument("--synthetic-labels", type=int, default=16)
    return p


def parse_config(argv: list[str] | None) -> PretrainConfig:
    return PretrainConfig(**vars(build_parser().parse_args(argv)))


def main(argv: list[str] | None = None, *, settings: Settings | None = None) -> dict:
    """Pretrain; returns the summary metrics (rank 0's view; the same numbers on every rank)."""
    cfg = parse_config(argv)
    runtime.set_cpu_threads(requested=cfg.threads, workers=cfg.workers, device=cfg.device)
    info = init_distributed(device=cfg.device)
    try:
        return _pretrain(cfg, info, settings)
    finally:
        shutdown_distributed()


def _pretrain(cfg: PretrainConfig, info, settings: Settings | None) -> dict:
    settings = runtime.resolve_settings(settings)
    runtime.configure_rank_logging(info, settings)
    install_sigterm_handler()
    run_id = runtime.agree_run_id(info, cfg.run_id, kind="pretrain")
    runtime.seed_everything(cfg.seed)
    dataset = runtime.open_dataset(cfg.dataset, settings=settings, synthetic_labels=cfg.synthetic_labels, seed=cfg.seed)
    preset = runtime.preset_for(cfg.image_size)
    global_batch = cfg.batch_size * info.world_size
    train_samples = dataset.split_samples("train")
    steps = cfg.steps or max(1, math.ceil(cfg.epochs * train_samples / global_batch))
    lr = cfg.lr or scaled_lr(base_lr=cfg.base_lr, global_batch=global_batch)
    create_kwargs = {"width": cfg.width} if cfg.arch == "tiny_cnn" else {}
    model = create_model(cfg.arch, dataset.manifest.num_labels, num_categories=len(dataset.manifest.category_names),
                         pretrained=cfg.pretrained, **create_kwargs)
    store = runtime.checkpoint_store(cfg.checkpoint_root, run_id, settings)
    resume = None
    if cfg.resume:
        resume = store.load("latest") if cfg.resume == "latest" else _load_uri(cfg.resume, settings)
        if resume["manifest_hash"] != dataset.manifest.content_hash:
            raise CheckpointError(f"checkpoint {run_id} was trained on other data (manifest hash differs)",
                                  hint="resume with the same --dataset, or start a new run id")
        stream = resume.get("stream", {})
        if stream.get("world_size") != info.world_size or stream.get("num_workers") != cfg.workers:
            log.warning("resuming with a different world size or worker count: the data order will not match exactly")
    resolved = {**asdict(cfg), "run_id": run_id, "steps": steps, "lr": lr, "global_batch": global_batch,
                "world_size": info.world_size, "dataset_uri": dataset.uri, "preset": preset.to_dict()}
    state = runtime_state(run_id=run_id, cfg=cfg, dataset=dataset, preset=preset, resolved=resolved,
                          create_kwargs=create_kwargs)
    output_dir = Path(cfg.output_dir) if cfg.output_dir else runtime.default_output_dir(settings, run_id)
    if info.is_main:
        write_json(output_dir / "config.json", resolved)
        log.info("pretrain %s: %s on %s, %d steps, global batch %d, lr %.4f, %d rank(s)", run_id, cfg.arch, dataset.uri,
                 steps, global_batch, lr, info.world_size)

    def make_dataset(start_batch: int):
        return dataset.stream(split="train", preset=preset, config=StreamConfig(
            batch_size=cfg.batch_size, seed=cfg.seed, rank=info.rank, world_size=info.world_size, sampling=cfg.sampling,
            shuffle_size=cfg.shuffle_size, train=True, start_batch=start_batch))

    loop = LoopConfig(total_steps=steps, batch_size=cfg.batch_size, lr=lr, warmup_steps=cfg.warmup_steps,
                      schedule=cfg.schedule, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
                      checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every, num_workers=cfg.workers,
                      calibrate_steps=cfg.calibrate_steps if resume is None else 0, compile=cfg.compile,
                      progress=cfg.progress)
    task = TrainTask(kind="pretrain", target="hashtags", head="hashtag", loss=cfg.loss)
    if cfg.solver == "lbfgs":
        from tagwatch.train.probe_fit import fit_and_save_probe

        summary = fit_and_save_probe(model=model, dataset=dataset, preset=preset, info=info, state=state, store=store,
                                     loop=loop, l2=cfg.probe_l2, resume=resume is not None)
    else:
        summary = run_training(model=model, task=task, loop=loop, info=info, state=state, store=store,
                               make_dataset=make_dataset, output_dir=output_dir, resume=resume, image_size=preset.crop)
    if cfg.evaluate and not summary["stopped_early"] and info.is_main:
        val = dataset.stream(split="val", preset=preset, config=StreamConfig(batch_size=64, train=False))
        summary.update({f"val_{k}": v for k, v in hashtag_metrics(predict(model, val, device=info.device),
                                                                   duplicates=dataset.duplicates()).items()})
    summary.update({"run_id": run_id, "checkpoint": store.uri(f"step-{summary['steps']:07d}.pt")})
    if info.is_main:
        write_json(output_dir / "summary.json", summary)
        store.put_json("metrics.json", summary)
        log.info("done: %s", {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()})
    barrier(info)
    return summary


def runtime_state(*, run_id, cfg, dataset, preset, resolved, create_kwargs) -> RunState:
    return RunState(
        run_id=run_id,
        model_config=model_config(arch=cfg.arch, num_labels=dataset.manifest.num_labels,
                                  num_categories=len(dataset.manifest.category_names), preset=preset.to_dict(),
                                  **create_kwargs),
        config=resolved, manifest_hash=dataset.manifest.content_hash,
        vocabulary_version=dataset.manifest.vocabulary_version, samples_per_epoch=dataset.split_samples("train"))


def _load_uri(uri: str, settings) -> dict:
    from tagwatch.train.checkpoint import load_checkpoint_uri

    return load_checkpoint_uri(uri, s3=settings.s3)
