"""Models for export/registry/serving tests: the library's tiny stand-in, plus one that drifts when exported."""

from __future__ import annotations

import torch

from tagwatch.export.tiny import CATEGORIES, LABELS, TinyTwoHead, export_tiny, tiny_model

__all__ = ["CATEGORIES", "LABELS", "DriftsWhenExported", "TinyTwoHead", "export_tiny", "tiny_model"]


class DriftsWhenExported(TinyTwoHead):
    """Exports a graph that differs from eager by 1e-2: stands in for an op that exports differently."""

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, scores = super().forward(images)
        if torch.onnx.is_in_onnx_export():
            logits = logits + 1e-2
        return logits, scores
