"""Throughput ceiling: a few training steps on synthetic tensors already on the device (no decoding, no I/O)
with a throw-away copy of the model and optimiser. The ratio of real-data img/s to this ceiling is the SLO
(goal >= 0.9); a low ratio with a high data-wait fraction says the input pipeline is the bottleneck."""

from __future__ import annotations

import copy
import time
from contextlib import nullcontext

import torch
from torch import nn

from tagwatch.train.distributed import DistInfo, all_reduce_max, all_reduce_sum
from tagwatch.train.losses import compute_loss


def measure_ceiling(
    model: nn.Module, *, info: DistInfo, batch_size: int, image_size: int, num_targets: int, loss: str,
    steps: int = 5, warmup: int = 2, channels_last: bool = False, autocast_dtype: torch.dtype | None = None,
    head: str = "hashtag",
) -> dict[str, float]:
    """Global img/s of forward+backward+SGD step on synthetic data. Leaves ``model`` and all RNGs untouched."""
    probe = copy.deepcopy(model).train()
    if info.distributed:
        probe = nn.parallel.DistributedDataParallel(probe)
    optimizer = torch.optim.SGD([p for p in probe.parameters() if p.requires_grad], lr=1e-6, momentum=0.9)
    generator = torch.Generator(device="cpu").manual_seed(1234)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator).to(info.device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    targets = (torch.rand(batch_size, num_targets, generator=generator) < 0.1).float().to(info.device)
    autocast = torch.autocast(device_type="cuda", dtype=autocast_dtype) if autocast_dtype else nullcontext()
    elapsed = 0.0
    for index in range(warmup + steps):
        _synchronize(info)
        start = time.perf_counter()
        with autocast:
            hashtag_logits, category_logits = probe(images)
            logits = hashtag_logits if head == "hashtag" else category_logits
            value = compute_loss(loss, logits, targets)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        _synchronize(info)
        if index >= warmup:
            elapsed += time.perf_counter() - start
    # Ranks run in lock-step, so global img/s = sum of per-rank img/s over the slowest rank's time.
    images_done = all_reduce_sum(info, [float(batch_size * steps)])[0]
    slowest = all_reduce_max(info, elapsed)
    del probe, optimizer
    return {"ceiling_img_s": images_done / max(slowest, 1e-9), "calibration_steps": float(steps),
            "calibration_s": slowest}


def _synchronize(info: DistInfo) -> None:
    if info.device.startswith("cuda"):
        torch.cuda.synchronize()
