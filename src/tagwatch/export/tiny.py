"""A small two-head CNN with the trainer's serving signature: a stand-in model for tests and benchmarks.

Exported and registered like a trained model, it lets the serving path (registry -> Triton -> consumers) run
without a training run (the chaos benchmark, the serving and stream tests).

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


def tiny_model(seed: int = 0) -> TinyTwoHead:
    return TinyTwoHead(seed=seed).eval()


def export_tiny(out_dir, *, model_name: str, seed: int = 0, policy_version: str = "policy-1", images=None):
    """Export ``tiny_model(seed)`` the way `tagwatch model export` does; returns the ExportResult."""
    from tagwatch.export import export_model
    from tagwatch.export.export import load_parity_images
    from tagwatch.preprocess import DEFAULT_PRESET

    if images is None:
        images = load_parity_images(DEFAULT_PRESET, count=8)
    rule = {"remove_threshold": 0.9, "review_threshold": 0.5}
    policy = {"version": policy_version, "categories": {c: rule for c in CATEGORIES}}
    return export_model(tiny_model(seed), out_dir=out_dir, model_name=model_name, labels=LABELS,
                        categories=CATEGORIES, preset=DEFAULT_PRESET, parity_images=images,
                        lineage={"run_id": f"run-{seed}", "manifest_hash": "m" * 64, "vocabulary_version": "v1"},
                        policy=policy, max_batch_size=32, preferred_batch_sizes=(4, 8, 16), max_queue_delay_us=5000)
