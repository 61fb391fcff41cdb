"""Optimiser and schedule of the recipe: SGD with Nesterov momentum 0.9, weight decay (not on BN/bias),
LR = base_lr x global_batch / 256, linear warm-up, then step or cosine decay (timm-style explicit factories)."""

from __future__ import annotations

import math

import torch
from torch import nn

from tagwatch.errors import ConfigError

SCHEDULES = ("cosine", "step", "constant")


def scaled_lr(*, base_lr: float, global_batch: int) -> float:
    """Linear scaling rule (Goyal et al.): 0.1 per 256 images."""
    return base_lr * global_batch / 256.0


def create_optimizer(
    model: nn.Module, *, lr: float, momentum: float = 0.9, weight_decay: float = 1e-4, nesterov: bool = True,
    params: list[nn.Parameter] | None = None,
) -> torch.optim.SGD:
    """SGD; 1-D parameters (BN scales, biases) get no weight decay."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if params is not None:
        wanted = {id(p) for p in params}
        named = [(n, p) for n, p in named if id(p) in wanted]
    decay = [p for _, p in named if p.ndim > 1]
    no_decay = [p for _, p in named if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, schedule: str, step_milestones: tuple[float, ...] = (0.3, 0.6, 0.9), gamma: float = 0.1) -> float:
    """Multiplier of the peak LR at ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if schedule == "step":
        return gamma ** sum(progress >= m for m in step_milestones)
    raise ConfigError(f"unknown schedule {schedule!r}", hint=f"pick one of: {', '.join(SCHEDULES)}")


def create_scheduler(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int, schedule: str
) -> torch.optim.lr_scheduler.LambdaLR:
    lr_factor(0, total_steps=total_steps, warmup_steps=warmup_steps, schedule=schedule)  # validate the name early
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, total_steps=total_steps, warmup_steps=warmup_steps, schedule=schedule),
    )
