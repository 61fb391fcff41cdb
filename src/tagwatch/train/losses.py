"""Losses of the recipe: softmax cross-entropy against 1/k targets (the paper's default) and per-class sigmoid
binary cross-entropy (its ablation, and the multi-label category loss of transfer)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tagwatch.errors import ConfigError

LOSSES = ("softmax", "sigmoid")


def multi_hot(labels: list[list[int]], num_classes: int) -> torch.Tensor:
    """[N, num_classes] float32 with 1 at each sample's label indices."""
    target = torch.zeros(len(labels), num_classes, dtype=torch.float32)
    for row, indices in enumerate(labels):
        if indices:
            target[row, torch.as_tensor(indices, dtype=torch.long)] = 1.0
    return target


def softmax_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over samples of -sum_j t_j log softmax(z)_j with t = multi-hot / k (k = the image's hashtags).

    Rows without any label contribute zero (they carry no hashtag signal)."""
    counts = targets.sum(dim=1, keepdim=True)
    soft = targets / counts.clamp(min=1.0)
    log_probs = F.log_softmax(logits.float(), dim=1)
    return -(soft * log_probs).sum(dim=1).mean()


def sigmoid_binary_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-class sigmoid BCE, summed over classes and averaged over samples (scale comparable to softmax CE)."""
    per_element = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    return per_element.sum(dim=1).mean()


def compute_loss(name: str, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if name == "softmax":
        return softmax_cross_entropy(logits, targets)
    if name == "sigmoid":
        return sigmoid_binary_cross_entropy(logits, targets)
    raise ConfigError(f"unknown loss {name!r}", hint=f"pick one of: {', '.join(LOSSES)}")
