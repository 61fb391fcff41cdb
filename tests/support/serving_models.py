"""Models for export/registry/serving tests: the library's tiny stand-in, plus one that drifts when exported."""

from __future__ import annotations

import torch

from tagwatch.export.tiny import CATEGORIES, LABELS, TinyTwoHead, export_tiny, tiny_model

__all__ = ["CATEGORIES", "LABELS", "DriftsWhenExported", "TinyTwoHead", "export_tiny", "serve_tiny_model", "tiny_model"]


def serve_tiny_model(base, env: dict[str, str], export_dir):
    """Start the stack of ``base`` (settings) with ``env``, register the tiny model as `production` and start it
    again so its Triton serves that model; the settings with the stack's endpoints. The caller stops the stack."""
    from tagwatch.clients import s3_client
    from tagwatch.registry import ModelRegistry
    from tagwatch.stack import with_stack_endpoints
    from tests.conftest import run_cli

    up = run_cli("stack", "up", env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    settings = with_stack_endpoints(base)
    registry = ModelRegistry(s3_client(settings.s3), bucket=settings.s3.buckets.models,
                             model_name=settings.triton.model_name)
    registry.register(export_tiny(export_dir, model_name=settings.triton.model_name).out_dir, alias="production")
    up = run_cli("stack", "up", env=env)
    assert up.returncode == 0 and "started triton" in up.stdout, up.stdout + up.stderr
    return with_stack_endpoints(base)


class DriftsWhenExported(TinyTwoHead):
    """Exports a graph that differs from eager by 1e-2: stands in for an op that exports differently."""

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, scores = super().forward(images)
        if torch.onnx.is_in_onnx_export():
            logits = logits + 1e-2
        return logits, scores
