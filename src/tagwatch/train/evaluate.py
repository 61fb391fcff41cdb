"""Evaluation: predictions over a split with the shared preprocessing preset, hashtag mAP, per-category AP,
precision/recall curves, and (in ``report``) PNG plots plus a JSON of every figure.

"Lower bound" numbers count every eval image listed as a near-duplicate of a train image (the data build's
dedup report) as wrong, as Mahajan et al. do; "raw" numbers take the predictions as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset


@dataclass
class Predictions:
    keys: list[str]
    hashtag_logits: np.ndarray  # [N, L]
    category_scores: np.ndarray  # [N, C] sigmoid
    hashtag_targets: np.ndarray  # [N, L] multi-hot
    category_targets: np.ndarray  # [N, C] multi-hot


@torch.no_grad()
def predict(model: nn.Module, dataset: IterableDataset, *, device: str = "cpu") -> Predictions:
    """Run the (unwrapped) model over one eval pass of ``dataset`` (batches from ShardStream in eval mode)."""
    was_training = model.training
    model.eval()
    keys: list[str] = []
    parts: dict[str, list[np.ndarray]] = {"h": [], "c": [], "ht": [], "ct": []}
    for batch in DataLoader(dataset, batch_size=None, num_workers=0):
        hashtag_logits, category_logits = model(batch["images"].to(device))
        parts["h"].append(hashtag_logits.float().cpu().numpy())
        parts["c"].append(torch.sigmoid(category_logits.float()).cpu().numpy())
        parts["ht"].append(batch["hashtags"].numpy())
        parts["ct"].append(batch["categories"].numpy())
        keys.extend(batch["keys"])
    model.train(was_training)
    stack = {k: np.concatenate(v) if v else np.zeros((0, 0), dtype=np.float32) for k, v in parts.items()}
    return Predictions(keys, stack["h"], stack["c"], stack["ht"], stack["ct"])


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Non-interpolated AP (the mean of precision at each positive's rank); NaN when there is no positive."""
    labels = labels.astype(bool)
    positives = int(labels.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = labels[order]
    cumulative = np.cumsum(hits)
    precision_at_hit = cumulative[hits] / (np.flatnonzero(hits) + 1)
    return float(precision_at_hit.sum() / positives)


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
    """Mean AP over classes that have at least one positive; also returns how many classes that was."""
    aps = [average_precision(scores[:, j], targets[:, j]) for j in range(targets.shape[1])]
    valid = [a for a in aps if a == a]
    return (float(np.mean(valid)) if valid else float("nan")), len(valid)


def chance_map(targets: np.ndarray) -> float:
    """Expected mAP of random scores: each class's AP is about its positive rate."""
    rates = [targets[:, j].mean() for j in range(targets.shape[1]) if targets[:, j].any()]
    return float(np.mean(rates)) if rates else float("nan")


def precision_recall_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, threshold) at every distinct score, thresholds descending (predict positive if >=)."""
    labels = labels.astype(bool)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, hits = scores[order], labels[order]
    distinct = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1] if len(scores) else np.array([], int)
    true_pos = np.cumsum(hits)[distinct]
    predicted = distinct + 1
    precision = true_pos / predicted
    recall = true_pos / max(int(labels.sum()), 1)
    return precision, recall, sorted_scores[distinct]


def top1_accuracy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Share of images whose top-scoring hashtag is one of theirs (images with at least one label)."""
    has = targets.sum(axis=1) > 0
    if not has.any():
        return float("nan")
    top = logits[has].argmax(axis=1)
    return float(targets[has][np.arange(int(has.sum())), top].mean())


def hashtag_metrics(predictions: Predictions, *, duplicates: set[str] | None = None) -> dict[str, float]:
    """Hashtag mAP and top-1 (raw) and their lower bounds (duplicates scored as misses), plus chance levels."""
    logits, targets = predictions.hashtag_logits, predictions.hashtag_targets
    raw_map, classes = mean_average_precision(logits, targets)
    out = {"hashtag_map": raw_map, "hashtag_map_classes": classes, "hashtag_top1": top1_accuracy(logits, targets),
           "chance_hashtag_map": chance_map(targets),
           "chance_hashtag_top1": float(np.mean([(t.sum() / t.size) for t in targets])) if len(targets) else float("nan"),
           "images": len(predictions.keys)}
    dup = np.array([k in (duplicates or set()) for k in predictions.keys], dtype=bool)
    lowered = logits.copy()
    if dup.any():  # a duplicate's true labels get the lowest score: counted wrong
        lowered[dup] = np.where(targets[dup] > 0, -1e9, lowered[dup])
    out["hashtag_map_lower_bound"] = mean_average_precision(lowered, targets)[0]
    out["hashtag_top1_lower_bound"] = top1_accuracy(lowered, targets)
    out["duplicates_counted_wrong"] = int(dup.sum())
    return out
