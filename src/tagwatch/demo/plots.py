"""The demo's figures (matplotlib, Agg): training curves, hashtag Zipf plot, the stream's PR curves and confusion
matrix against the held-out labels, an operating-point plot per acting category, post-to-decision latency and
decisions over time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

ACTIONS = ("allow", "review", "remove")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    _pyplot().close(figure)
    return path


def read_metrics_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def plot_training_curves(runs: dict[str, Path], *, path: Path) -> Path:
    """Loss (and LR) against step for each run's metrics.jsonl, one panel per run."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.4), squeeze=False)
    for axis, (name, metrics_file) in zip(axes[0], runs.items(), strict=True):
        rows = read_metrics_jsonl(metrics_file)
        steps = [r["step"] for r in rows]
        axis.plot(steps, [r["loss"] for r in rows], marker=".", label="loss")
        axis.set_xlabel("step")
        axis.set_ylabel("training loss")
        axis.set_title(name, fontsize=10)
        if rows and "lr" in rows[0]:
            twin = axis.twinx()
            twin.plot(steps, [r["lr"] for r in rows], color="grey", linestyle=":", label="lr")
            twin.set_ylabel("learning rate", color="grey")
    return _save(figure, path)


def plot_zipf(counts: list[int], *, path: Path) -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    ranked = sorted((c for c in counts if c > 0), reverse=True)
    axis.loglog(range(1, len(ranked) + 1), ranked, marker=".", linestyle="none")
    axis.set_xlabel("rank")
    axis.set_ylabel("train posts with the hashtag")
    axis.set_title(f"hashtag rank-frequency ({len(ranked)} labels)", fontsize=10)
    return _save(figure, path)


def plot_zipf_of_dataset(settings, *, dataset: str, path: Path) -> Path:
    from tagwatch.train.data import load_manifest

    name, _, version = dataset.partition("/")
    _, vocabulary = load_manifest(s3=settings.s3, bucket=settings.s3.buckets.datasets, name=name, version=version)
    return plot_zipf([label.count for label in vocabulary.labels], path=path)


def plot_stream_pr_curves(scores: np.ndarray, labels: np.ndarray, categories: list[str], *, path: Path,
                          thresholds: dict[str, dict[str, float | None]] | None = None) -> Path:
    """Per category: precision-recall of the scores the stream decided with, against the held-out labels."""
    from tagwatch.train.evaluate import average_precision, precision_recall_curve

    plt = _pyplot()
    figure, axes = plt.subplots(1, len(categories), figsize=(3.6 * len(categories), 3.4), squeeze=False)
    for c, name in enumerate(categories):
        axis = axes[0][c]
        s, y = scores[:, c], labels[:, c].astype(bool)
        if y.any():
            precision, recall, cuts = precision_recall_curve(s, y)
            axis.plot(recall, precision, drawstyle="steps-post")
            axis.axhline(y.mean(), linestyle=":", color="grey", label=f"chance {y.mean():.3f}")
            for key, marker in (("remove", "rv"), ("review", "o")):
                threshold = (thresholds or {}).get(name, {}).get(key)
                at = np.flatnonzero(cuts >= threshold) if threshold is not None else np.array([], int)
                if len(at):
                    axis.plot(recall[at.max()], precision[at.max()], marker, label=key)
            axis.legend(loc="lower left", fontsize=7)
            title = f"{name}: AP {average_precision(s, y):.2f}, {int(y.sum())} pos"
        else:
            title = f"{name}: no positives"
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("recall")
        axis.set_ylabel("precision")
        axis.set_xlim(0, 1.02)
        axis.set_ylim(0, 1.02)
    return _save(figure, path)


def plot_stream_confusion(confusion: dict[str, list[list[int]]], *, path: Path) -> Path:
    """Per category: actual negative/positive x the stream's flag for that category (none/review/remove)."""
    plt = _pyplot()
    names = list(confusion)
    figure, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        counts = np.array(confusion[name])
        axis.imshow(counts, cmap="Blues")
        for (row, column), value in np.ndenumerate(counts):
            axis.text(column, row, str(value), ha="center", va="center")
        axis.set_xticks(range(3), ["none", "review", "remove"])
        axis.set_yticks(range(2), ["neg", "pos"])
        axis.set_title(name, fontsize=9)
    return _save(figure, path)


def plot_latency(latencies_ms: list[float], *, path: Path) -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3.4))
    values = np.asarray(latencies_ms, dtype=float)
    if len(values):
        axis.hist(values, bins=40, color="tab:blue")
        for q, style in ((50, "--"), (99, ":")):
            v = float(np.percentile(values, q))
            axis.axvline(v, color="black", linestyle=style, label=f"p{q} {v:.0f} ms")
        axis.legend(fontsize=8)
    axis.set_xlabel("post created -> decision (ms)")
    axis.set_ylabel("posts")
    axis.set_title("post-to-decision latency", fontsize=10)
    return _save(figure, path)


def plot_throughput(decided_at_s: list[float], *, path: Path) -> Path:
    """Decisions per second over time (seconds since the first post was published)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3.4))
    values = np.sort(np.asarray(decided_at_s, dtype=float))
    if len(values):
        edges = np.arange(0, max(values.max(), 1.0) + 1.0, 1.0)
        counts, _ = np.histogram(values, bins=edges)
        axis.bar(edges[:-1], counts, width=1.0, align="edge", color="tab:green")
    axis.set_xlabel("seconds since the first post was published")
    axis.set_ylabel("decisions / s")
    axis.set_title("stream throughput", fontsize=10)
    return _save(figure, path)


def plot_operating_point(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None, *, name: str,
                         entry: dict[str, Any], budget: float | None, path: Path) -> Path:
    """One acting category on the holdout: its PR curve (precision population-weighted, as reported), the chosen
    review and remove points and the point where it alone would spend the whole review budget, each with its
    precision and recall CIs as error bars; the prevalence (chance precision) as a dotted line."""
    from tagwatch.demo.holdout import weighted_pr_curve

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.2, 4.0))
    labels = np.asarray(labels, dtype=bool)
    if labels.any():
        precision, recall, _ = weighted_pr_curve(scores, labels, weights)
        axis.plot(np.r_[0.0, recall], np.r_[precision[0], precision], drawstyle="steps-post", color="tab:blue",
                  label="PR curve (holdout)")
    if entry.get("chance") is not None:
        axis.axhline(entry["chance"], linestyle=":", color="grey", label=f"chance {entry['chance']:.3f}")
    budget_label = "budget point" + (f" ({100 * budget:.0f} % of posts)" if budget is not None else "")
    for key, marker, colour, label in (("review", "o", "tab:orange", "review point"),
                                       ("remove", "v", "tab:red", "remove point"),
                                       ("budget", "s", "tab:green", budget_label)):
        point = entry.get("points", {}).get(key)
        if not point or point["precision"]["value"] is None or point["recall"]["value"] is None:
            continue
        p, r = point["precision"], point["recall"]
        axis.errorbar(r["value"], p["value"], fmt=marker, color=colour, capsize=3, label=label,
                      xerr=[[max(0.0, r["value"] - r["low"])], [max(0.0, r["high"] - r["value"])]],
                      yerr=[[max(0.0, p["value"] - p["low"])], [max(0.0, p["high"] - p["value"])]])
    ap = entry.get("ap", {}).get("value")
    axis.set_title(f"{name}: {entry.get('positives', 0)} positives, AP "
                   + ("–" if ap is None else f"{ap:.2f}"), fontsize=10)
    axis.set_xlabel("recall (held-out positives)")
    axis.set_ylabel("precision" + (" (natural traffic est.)" if weights is not None else " (as sampled)"))
    axis.set_xlim(0, 1.02)
    axis.set_ylim(0, 1.02)
    axis.legend(loc="lower left", fontsize=7)
    return _save(figure, path)
