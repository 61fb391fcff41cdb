"""Linear probe by full-batch L-BFGS on cached features (``transfer --mode probe --probe-solver lbfgs``).

The SGD probe runs the frozen backbone on every step, so on CPU it sees each image a couple of times at most and
its head does not converge. Here the backbone runs once per training image (eval transform: the shared preset, no
augmentation), then a per-category (and per-hashtag) logistic regression (class-balanced with sqrt(neg/pos)
positive weights, L2 ``l2`` on standardised features) is fitted to convergence in seconds. The standardisation is
folded into ``category_head``/``hashtag_head`` so the model, checkpoint, export and serving are unchanged.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

log = logging.getLogger("tagwatch.train")


def extract_features(
    model: nn.Module, batches: Iterable[dict[str, Any]], *, device: str,
    targets: tuple[str, ...] = ("categories", "hashtags"),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(features float32[N, F], {target: float32[N, C]}) with the model in eval mode, no grad. The batches' PDQ
    hashes come along as ``pdq`` (a list) when the batches carry them."""
    model.eval()
    features: list[torch.Tensor] = []
    columns: dict[str, list[torch.Tensor]] = {name: [] for name in targets}
    hashes: list[str | None] = []
    with torch.no_grad():
        for batch in batches:
            features.append(model.forward_features(batch["images"].to(device)).float().cpu())
            for name in targets:
                columns[name].append(torch.as_tensor(batch[name]).float())
            hashes.extend(batch.get("pdq") or [None] * len(batch["images"]))
    out: dict[str, Any] = {name: torch.cat(parts) for name, parts in columns.items()}
    out["pdq"] = hashes
    return torch.cat(features), out


def fit_linear_probe(features: torch.Tensor, targets: torch.Tensor, *, l2: float = 1e-3,
                     max_iter: int = 200) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Logistic regression per column of ``targets``: returns (weight [C, F], bias [C], info) for raw features."""
    mean, std = features.mean(0), features.std(0) + 1e-3
    x = (features - mean) / std
    positives = targets.sum(0).clamp(min=1.0)
    pos_weight = ((len(targets) - positives) / positives).clamp(min=1.0).sqrt()
    weight = torch.zeros(x.shape[1], targets.shape[1], requires_grad=True)
    bias = torch.zeros(targets.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(x @ weight + bias, targets, pos_weight=pos_weight)
        loss = loss + l2 * (weight ** 2).sum()
        loss.backward()
        return loss

    final = float(optimizer.step(closure).detach())
    with torch.no_grad():
        raw_weight = (weight / std[:, None]).T.contiguous()  # fold the standardisation into the head
        raw_bias = bias - (mean / std) @ weight
    return raw_weight, raw_bias, {"final_loss": final}


def fit_probe_head(model: nn.Module, batches: Iterable[dict[str, Any]], *, device: str, l2: float,
                   max_iter: int = 200, extra: Iterable[dict[str, Any]] | None = None,
                   crossfit_folds: int = 0, seed: int = 0) -> dict[str, Any]:
    """Extract features once, fit ``category_head`` and ``hashtag_head`` (sigmoid per hashtag, so the served
    hashtag logits are trained too), write them; returns timings and the final losses.

    ``extra``: more batches fitted with ``batches`` (val, when the policy is cross-fitted). ``crossfit_folds`` > 1:
    also return ``calibration`` = out-of-fold category scores of every fitted image (each scored by a head fitted
    without its fold), its targets and which input it came from (0: ``batches``, 1: ``extra``)."""
    tick = time.perf_counter()
    features, targets = extract_features(model, batches, device=device)
    origin = torch.zeros(len(features), dtype=torch.long)
    if extra is not None:
        more, more_targets = extract_features(model, extra, device=device)
        features = torch.cat([features, more])
        targets = {name: torch.cat([targets[name], more_targets[name]]) if name != "pdq"
                   else targets[name] + more_targets[name] for name in targets}
        origin = torch.cat([origin, torch.ones(len(more), dtype=torch.long)])
    extracted = time.perf_counter()
    out: dict[str, Any] = {}
    if crossfit_folds > 1:
        from tagwatch.data.dedup import near_duplicate_groups

        groups = near_duplicate_groups(targets["pdq"])
        out["calibration"] = {"scores": out_of_fold_scores(features, targets["categories"], folds=crossfit_folds,
                                                           l2=l2, max_iter=max_iter, seed=seed,
                                                           groups=groups).numpy(),
                              "targets": targets["categories"].numpy(), "origin": origin.numpy()}
    crossfitted = time.perf_counter()
    losses = {}
    for name, head in (("categories", model.category_head), ("hashtags", model.hashtag_head)):
        weight, bias, info = fit_linear_probe(features, targets[name], l2=l2, max_iter=max_iter)
        with torch.no_grad():
            head.weight.copy_(weight[: head.out_features].to(head.weight.device))
            head.bias.copy_(bias[: head.out_features].to(head.bias.device))
        losses[f"{name}_final_loss"] = info["final_loss"]
    done = time.perf_counter()
    log.info("lbfgs probe: %d images, features in %.1fs, cross-fit in %.1fs, fit in %.1fs, losses %s", len(features),
             extracted - tick, crossfitted - extracted, done - crossfitted, {k: round(v, 4) for k, v in losses.items()})
    return {"images": float(len(features)), "extract_s": extracted - tick, "crossfit_s": crossfitted - extracted,
            "fit_s": done - crossfitted, **losses, **out}


def fold_of(n: int, *, folds: int, seed: int, groups: Any = None) -> torch.Tensor:
    """A cross-fitting fold per image, balanced; every member of a group in the same fold."""
    generator = torch.Generator().manual_seed(seed)
    if groups is None:
        return torch.randperm(n, generator=generator) % folds
    unique, inverse = np.unique(np.asarray(groups), return_inverse=True)
    group_fold = torch.randperm(len(unique), generator=generator) % folds
    return group_fold[torch.as_tensor(inverse)]


def out_of_fold_scores(features: torch.Tensor, targets: torch.Tensor, *, folds: int, l2: float, max_iter: int,
                       seed: int, groups: Any = None) -> torch.Tensor:
    """Sigmoid category scores of each image from a probe fitted on the other folds (cross-fitting): scores the
    final head never trained on, with as many calibration positives as the fitted splits hold. ``groups`` (one id
    per image, e.g. ``dedup.near_duplicate_groups``) keeps each group in one fold: a near-copy in the fitting folds
    would make its twin's score look surer than any new post's, and the policy would under-count review."""
    fold = fold_of(len(features), folds=folds, seed=seed, groups=groups)
    scores = torch.zeros(targets.shape, dtype=torch.float32)
    for k in range(folds):
        held = fold == k
        weight, bias, _ = fit_linear_probe(features[~held], targets[~held], l2=l2, max_iter=max_iter)
        scores[held] = torch.sigmoid(features[held] @ weight.T + bias)
    return scores


def fit_and_save_probe(*, model: nn.Module, dataset, preset, info, state, store, loop, l2: float,
                       resume: bool, crossfit_folds: int = 0, seed: int = 0) -> dict[str, Any]:
    """Fit the heads on cached features of the frozen backbone and write one checkpoint (step 0); the summary
    ``run_training`` would return. One process, no resume (the fit takes seconds). With ``crossfit_folds`` > 1
    the heads are fitted on train + val and the summary carries the out-of-fold ``calibration`` scores."""
    from tagwatch.errors import ConfigError
    from tagwatch.train.data import StreamConfig
    from tagwatch.train.loop import save_checkpoint
    from tagwatch.train.optim import create_optimizer, create_scheduler

    if info.world_size > 1 or resume:
        raise ConfigError("the lbfgs solver runs in one process and cannot resume",
                          hint="drop --nproc/--resume (the fit takes seconds) or use the sgd solver")
    model.to(info.device)
    eval_config = StreamConfig(batch_size=64, train=False)
    batches = dataset.stream(split="train", preset=preset, config=eval_config)
    extra = dataset.stream(split="val", preset=preset, config=eval_config) if crossfit_folds > 1 else None
    fit = fit_probe_head(model, batches, device=info.device, l2=l2, extra=extra, crossfit_folds=crossfit_folds,
                         seed=seed)
    calibration = fit.pop("calibration", None)
    state.metrics.update({"probe_solver": "lbfgs", **fit})
    optimizer = create_optimizer(model, lr=loop.lr, momentum=loop.momentum, weight_decay=loop.weight_decay)
    scheduler = create_scheduler(optimizer, total_steps=max(1, loop.total_steps), warmup_steps=0,
                                 schedule=loop.schedule)
    save_checkpoint(model=model, optimizer=optimizer, scheduler=scheduler, step=0, info=info, state=state, store=store,
                    loop=loop)
    summary = {"steps": 0, "start_step": 0, "stopped_early": False, "world_size": info.world_size,
               "probe_solver": "lbfgs", **fit}
    if calibration is not None:
        summary["calibration"] = calibration
    return summary
