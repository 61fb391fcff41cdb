"""The training loop shared by pretraining and transfer: flat and readable (torchvision references style).

Exact resume: the model, optimiser, scheduler and per-rank RNG states come from the checkpoint; the data stream
is a pure function of (seed, rank, worker, step), so the stream restarts at ``start_step`` batches; with
``torch.set_num_threads(1)`` on CPU a resumed run's weights are bit-identical to an uninterrupted run's.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from tagwatch.errors import TrainingError
from tagwatch.train.calibrate import measure_ceiling
from tagwatch.train.checkpoint import CheckpointStore, capture_rng_state, restore_rng_state
from tagwatch.train.distributed import DistInfo, all_reduce_max, all_reduce_sum, barrier, gather_objects
from tagwatch.train.losses import compute_loss
from tagwatch.train.optim import create_optimizer, create_scheduler

log = logging.getLogger("tagwatch.train")


@dataclass(frozen=True)
class TrainTask:
    """What is trained: which target tensor, which head, which loss, whether the backbone is frozen."""

    kind: str  # "pretrain" | "probe" | "finetune"
    target: str  # "hashtags" | "categories"
    head: str  # "hashtag" | "category"
    loss: str  # "softmax" | "sigmoid"
    freeze_backbone: bool = False


@dataclass(frozen=True)
class LoopConfig:
    total_steps: int
    batch_size: int  # per rank
    lr: float  # peak LR (already scaled by the global batch)
    warmup_steps: int = 0
    schedule: str = "cosine"
    weight_decay: float = 1e-4
    momentum: float = 0.9
    checkpoint_every: int = 0  # 0: only at the end (and on SIGTERM)
    log_every: int = 10
    num_workers: int = 0
    calibrate_steps: int = 0
    compile: bool = False
    progress: bool = True


@dataclass
class RunState:
    """Everything the checkpoint needs besides the loop's own objects."""

    run_id: str
    model_config: dict[str, Any]
    config: dict[str, Any]
    manifest_hash: str
    vocabulary_version: str
    samples_per_epoch: int
    metrics: dict[str, Any] = field(default_factory=dict)
    review_labels: int = 0  # train samples of the dataset whose categories came from a reviewer (lineage)


_STOP = {"requested": False}


def request_stop(signum: int, frame: Any) -> None:  # SIGTERM from torchrun / the kubelet
    _STOP["requested"] = True


def install_sigterm_handler() -> None:
    signal.signal(signal.SIGTERM, request_stop)


def ignore_sigterm(worker_id: int) -> None:
    """Data workers outlive a SIGTERM to their process group, so the rank can finish its step and checkpoint;
    the rank shuts them down on exit, and they exit on their own if the rank dies."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def run_training(
    *, model: nn.Module, task: TrainTask, loop: LoopConfig, info: DistInfo, state: RunState,
    store: CheckpointStore, make_dataset: Callable[[int], IterableDataset], output_dir: Path,
    resume: dict[str, Any] | None = None, image_size: int = 128,
) -> dict[str, Any]:
    """Train ``model`` in place for ``loop.total_steps`` steps; return the run's summary metrics."""
    on_gpu = info.device.startswith("cuda")
    model.to(info.device)
    if on_gpu:
        model.to(memory_format=torch.channels_last)
    _set_trainable(model, task)
    optimizer = create_optimizer(model, lr=loop.lr, momentum=loop.momentum, weight_decay=loop.weight_decay)
    scheduler = create_scheduler(optimizer, total_steps=loop.total_steps, warmup_steps=loop.warmup_steps,
                                 schedule=loop.schedule)
    start_step = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        start_step = int(resume["step"])
        rng = resume.get("rng") or []
        if len(rng) == info.world_size:
            restore_rng_state(rng[info.rank])
        log.info("resumed %s at step %d", state.run_id, start_step)
    ddp: nn.Module = nn.parallel.DistributedDataParallel(model) if info.distributed else model
    if loop.compile:
        ddp = torch.compile(ddp)
    autocast_dtype = torch.bfloat16 if on_gpu else None
    autocast = (lambda: torch.autocast(device_type="cuda", dtype=autocast_dtype)) if autocast_dtype else nullcontext

    ceiling: dict[str, float] = {}
    if loop.calibrate_steps > 0:
        num_targets = model.hashtag_head.out_features if task.head == "hashtag" else model.category_head.out_features
        ceiling = measure_ceiling(model, info=info, batch_size=loop.batch_size, image_size=image_size,
                                  num_targets=num_targets, loss=task.loss, steps=loop.calibrate_steps,
                                  channels_last=on_gpu, autocast_dtype=autocast_dtype, head=task.head)
        log.info("throughput ceiling (synthetic, %d rank(s)): %.1f img/s", info.world_size, ceiling["ceiling_img_s"])

    loader = DataLoader(make_dataset(start_step), batch_size=None, num_workers=loop.num_workers,
                        pin_memory=on_gpu, prefetch_factor=4 if loop.num_workers else None,
                        worker_init_fn=ignore_sigterm if loop.num_workers else None)
    batches = iter(loader)
    metrics_file = output_dir / "metrics.jsonl"
    if info.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
    window = _Window()
    steady = _Window()
    progress = _make_progress(info, loop, start_step)
    step = start_step
    last_loss = float("nan")
    try:
        while step < loop.total_steps:
            tick = time.perf_counter()
            batch = next(batches)
            waited = time.perf_counter() - tick
            ddp.train()
            if task.freeze_backbone:
                model.backbone.eval()
            images = batch["images"].to(info.device, non_blocking=True)
            if on_gpu:
                images = images.contiguous(memory_format=torch.channels_last)
            targets = batch[task.target].to(info.device, non_blocking=True)
            with autocast():
                hashtag_logits, category_logits = ddp(images)
                logits = hashtag_logits if task.head == "hashtag" else category_logits
                loss = compute_loss(task.loss, logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            last_loss = float(loss.detach())
            if on_gpu:
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - tick
            window.add(last_loss, len(batch["keys"]), waited, elapsed)
            if step - start_step > 2:  # leave worker start-up out of the steady-state figures
                steady.add(last_loss, len(batch["keys"]), waited, elapsed)
            stop, bad = all_reduce_sum(info, [float(_STOP["requested"]), float(last_loss != last_loss)])
            if bad:
                raise TrainingError(f"non-finite loss at step {step}", hint="lower --lr or check the data")
            if step % loop.log_every == 0 or step == loop.total_steps:
                row = window.reduce(info, step=step, lr=scheduler.get_last_lr()[0], ceiling=ceiling)
                if info.is_main:
                    with metrics_file.open("a") as out:
                        out.write(json.dumps(row) + "\n")
                    if progress is None:
                        log.info("step %d/%d loss %.4f %.1f img/s wait %.0f%%", step, loop.total_steps, row["loss"],
                                 row["img_s"], 100 * row["data_wait_fraction"])
                window = _Window()
            if progress is not None:
                progress[0].update(progress[1], completed=step, description=f"loss {last_loss:.3f}")
            due = loop.checkpoint_every and step % loop.checkpoint_every == 0
            if due or stop or step == loop.total_steps:
                save_checkpoint(model=model, optimizer=optimizer, scheduler=scheduler, step=step, info=info,
                                state=state, store=store, loop=loop)
            if stop:
                log.warning("SIGTERM: checkpointed at step %d, stopping", step)
                break
    finally:
        if progress is not None:
            progress[0].stop()
        del batches
    summary = steady.reduce(info, step=step, lr=scheduler.get_last_lr()[0], ceiling=ceiling)
    summary.update({"final_loss": last_loss, "steps": step, "start_step": start_step, "stopped_early": step < loop.total_steps,
                    "world_size": info.world_size, **{k: v for k, v in ceiling.items()}})
    state.metrics.update(summary)
    return summary


def save_checkpoint(*, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, step: int, info: DistInfo,
                    state: RunState, store: CheckpointStore, loop: LoopConfig) -> str | None:
    rng_states = gather_objects(info, capture_rng_state())
    uri = None
    if info.is_main:
        checkpoint = {
            "format": 1,
            "model": model.state_dict(),
            "model_config": state.model_config,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "epoch": step * loop.batch_size * info.world_size / max(1, state.samples_per_epoch),
            "stream": {"batches_per_rank": step, "world_size": info.world_size, "num_workers": loop.num_workers},
            "rng": rng_states,
            "config": state.config,
            "manifest_hash": state.manifest_hash,
            "vocabulary_version": state.vocabulary_version,
            "review_labels": state.review_labels,
            "run_id": state.run_id,
            "metrics": state.metrics,
            "torch_version": torch.__version__,
        }
        uri = store.save(checkpoint)
        log.info("checkpoint %s", uri)
    barrier(info)
    return uri


def _set_trainable(model: nn.Module, task: TrainTask) -> None:
    for name, parameter in model.named_parameters():
        if name.startswith("hashtag_head."):
            parameter.requires_grad_(task.head == "hashtag")
        elif name.startswith("category_head."):
            parameter.requires_grad_(task.head == "category")
        else:
            parameter.requires_grad_(not task.freeze_backbone)


class _Window:
    def __init__(self) -> None:
        self.loss = self.samples = self.wait = self.time = 0.0
        self.steps = 0

    def add(self, loss: float, samples: int, wait: float, seconds: float) -> None:
        self.loss += loss
        self.samples += samples
        self.wait += wait
        self.time += seconds
        self.steps += 1

    def reduce(self, info: DistInfo, *, step: int, lr: float, ceiling: dict[str, float]) -> dict[str, Any]:
        loss, samples, wait, steps = all_reduce_sum(info, [self.loss, self.samples, self.wait, float(self.steps)])
        slowest = all_reduce_max(info, self.time)
        img_s = samples / slowest if slowest > 0 else 0.0
        row = {"step": step, "loss": loss / max(steps, 1), "lr": lr, "img_s": img_s,
               "data_wait_fraction": (wait / info.world_size) / slowest if slowest > 0 else 0.0,
               "images": int(samples), "seconds": slowest}
        if ceiling.get("ceiling_img_s"):
            row["achieved_over_ceiling"] = img_s / ceiling["ceiling_img_s"]
        return row


def _make_progress(info: DistInfo, loop: LoopConfig, start_step: int):
    if not (info.is_main and loop.progress and sys.stderr.isatty()):
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn())
    progress.start()
    return progress, progress.add_task("training", total=loop.total_steps, completed=start_step)


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))


def config_dict(obj: Any) -> dict[str, Any]:
    return asdict(obj)
