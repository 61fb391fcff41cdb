"""A small two-head CNN with the trainer's serving signature, for export/registry/serving tests.

forward(images [N,3,H,W]) -> (hashtag_logits [N,num_labels], category_scores [N,num_categories] in (0,1)),
the same contract as ``tagwatch.train.models.build_serving_model`` (which lives on the trainer's branch).
"""

from __future__ import annotations

import torch
from torch import nn

LABELS = [f"tag_{i:02d}" for i in range(24)]
CATEGORIES = ["weapons", "violence", "alcohol"]


class TinyTwoHead(nn.Module):
    def __init__(self, num_labels: int = len(LABELS), num_categories: int = len(CATEGORIES), seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.hashtags = nn.Linear(32, num_labels)
        self.categories = nn.Linear(32, num_categories)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.features(images)
        return self.hashtags(z), torch.sigmoid(self.categories(z))


class DriftsWhenExported(TinyTwoHead):
    """Exports a graph that differs from eager by 1e-2: stands in for an op that exports differently."""

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, scores = super().forward(images)
        if torch.onnx.is_in_onnx_export():
            logits = logits + 1e-2
        return logits, scores


def tiny_model(seed: int = 0) -> TinyTwoHead:
    return TinyTwoHead(seed=seed).eval()
