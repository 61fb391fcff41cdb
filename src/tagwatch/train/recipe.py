"""Which recipe produced a model, in a few words the lineage, the registry and the pipeline's report carry."""

from __future__ import annotations

from typing import Any


def recipe_of(*, init: str, pretrain_config: dict[str, Any] | None, mode: str, probe_solver: str) -> dict[str, Any]:
    """``pretrain_config``: the resolved config of the pretraining run ``init`` names (None for ``imagenet`` /
    ``none``). E.g. {"pretrain": "partial", "trainable_from": "blocks.15", "hashtag_loss": "softmax",
    "sampling": "sqrt", "transfer": "probe/lbfgs"}."""
    transfer = f"probe/{probe_solver}" if mode == "probe" else mode
    if pretrain_config is None:
        return {"pretrain": "imagenet only" if init == "imagenet" else "none (from scratch)", "transfer": transfer}
    solver = pretrain_config.get("solver", "sgd")
    out: dict[str, Any] = {"pretrain": solver, "arch": pretrain_config.get("arch"),
                           "imagenet_init": bool(pretrain_config.get("pretrained"))}
    if solver == "partial":
        out["trainable_from"] = pretrain_config.get("trainable_from")
    if solver != "lbfgs":  # the lbfgs hashtag head is a per-tag logistic fit: no loss or sampling choice
        out.update(hashtag_loss=pretrain_config.get("loss"), sampling=pretrain_config.get("sampling"),
                   steps=pretrain_config.get("steps"))
    out["transfer"] = transfer
    return out
