"""``pretrain --solver partial``: the cached lower stages (``feature_cache``) and the top trained on the hashtags
(``partial.train_top``), as a pretraining run: one checkpoint of the whole model, which ``transfer --init`` probes
or fine-tunes like any other."""

from __future__ import annotations

import logging
from typing import Any

from tagwatch.errors import ConfigError
from tagwatch.train.effnet import cut_index
from tagwatch.train.feature_cache import load_or_compute
from tagwatch.train.partial import check_partial_arch, train_top

log = logging.getLogger("tagwatch.train")


def pretrain_partial(*, model, cfg, dataset, preset, info, state, store, loop, task, output_dir, settings,
                     resume: dict[str, Any] | None) -> dict[str, Any]:
    check_partial_arch(cfg.arch)
    cut = cut_index(cfg.trainable_from, len(model.backbone.net._blocks))
    if cut >= 0 and not cfg.pretrained:
        raise ConfigError("the partial solver keeps the lower stages frozen: they need the ImageNet weights",
                          hint="add --pretrained, or --trainable-from stem to train the whole network")
    if info.world_size > 1:
        raise ConfigError("the partial solver runs in one process (the cached posts are in its memory)",
                          hint="drop --nproc (the CPU path takes minutes), or use --solver sgd on a cluster")
    cached, where = load_or_compute(backbone=model.backbone, dataset=dataset, preset=preset, cut=cut,
                                    splits={"train": 2}, settings=settings, device=info.device)
    state.config["feature_cache"] = where
    summary = train_top(model=model, cut=cut, cached=cached["train"], task=task, loop=loop, info=info, state=state,
                        store=store, output_dir=output_dir, sampling=cfg.sampling, seed=cfg.seed,
                        shuffle_size=cfg.shuffle_size, resume=resume)
    return {**summary, "solver": "partial", "trainable_from": cfg.trainable_from, "feature_cache": where}
