"""Hashtag training that changes the representation on a CPU: the top of EfficientNet-Lite0 (from block
``trainable_from``) trains on cached activations of the frozen ImageNet lower stages (``feature_cache.py``).

The model trained is the whole ``TagwatchNet``: ``TopNet`` shares its modules (same state_dict keys), feeds the
cached activations into the upper stages and both heads, and goes through the shared loop (``loop.run_training``:
the recipe's loss via ``losses.compute_loss`` - softmax over 1/k targets for hashtags -, SGD Nesterov, cosine
schedule, checkpoints, SIGTERM). Batches come from ``CachedStream``: the existing ``sampling.Resampler`` (square-
root resampling by replication) and seeded ``shuffle_buffer`` over the cached posts, a random view (image or
flip) per replica. A checkpoint is a full model checkpoint: export, serving and ``transfer --init`` read it as any
other. ``trainable_from="stem"`` caches the images themselves and trains the whole network (GPU / cluster).
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import IterableDataset

from tagwatch.train.effnet import upper_modules, upper_stages
from tagwatch.train.evaluate import Predictions
from tagwatch.train.feature_cache import CachedSplit
from tagwatch.train.loop import LoopConfig, TrainTask, run_training
from tagwatch.train.sampling import Resampler, derive_seed, shuffle_buffer

log = logging.getLogger("tagwatch.train")
DEFAULT_TRAINABLE_FROM = "blocks.15"  # the last MBConv block (4x4 at 128 px) + the head conv: ~14 M MACs an image


class TopNet(nn.Module):
    """``model`` from block ``cut`` on: forward(cached activations) -> (hashtag logits, category logits)."""

    def __init__(self, model: nn.Module, cut: int) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.hashtag_head = model.hashtag_head
        self.category_head = model.category_head
        self.num_categories = model.num_categories
        self.cut = cut

    def forward_features(self, inputs: torch.Tensor) -> torch.Tensor:
        return upper_stages(self.backbone, inputs.float(), self.cut)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.forward_features(inputs)
        category_logits = self.category_head(features)
        if self.num_categories == 0:
            category_logits = category_logits[:, :0]
        return self.hashtag_head(features), category_logits


class CachedStream(IterableDataset):
    """Endless train batches over a ``CachedSplit``: {"images": cached activations float32, "hashtags",
    "categories", "keys"}; ``sampling`` "sqrt" or "natural" through ``Resampler``; a pure function of ``seed``
    (``start_batch`` skips what a resumed run already consumed)."""

    def __init__(self, cached: CachedSplit, *, batch_size: int, seed: int, sampling: str, shuffle_size: int = 256,
                 start_batch: int = 0) -> None:
        super().__init__()
        self.cached, self.batch_size, self.seed = cached, batch_size, seed
        self.sampling, self.shuffle_size, self.start_batch = sampling, shuffle_size, start_batch

    def indices(self) -> Iterator[tuple[int, int]]:
        """(post index, view) in stream order, forever."""
        resampler = Resampler(self.sampling, random.Random(derive_seed(self.seed, "cached-resample")))
        views = self.cached.inputs.shape[0]

        def replicated() -> Iterator[tuple[int, int]]:
            epoch = 0
            while True:
                order = list(range(len(self.cached)))
                random.Random(derive_seed(self.seed, "cached-order", epoch)).shuffle(order)
                for index in order:
                    for replica in range(resampler.copies(float(self.cached.weights[index]))):
                        yield index, derive_seed(self.seed, "view", index, epoch, replica) % views
                epoch += 1

        return shuffle_buffer(replicated(), size=self.shuffle_size,
                              rng=random.Random(derive_seed(self.seed, "cached-shuffle")))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        batch: list[tuple[int, int]] = []
        skip = self.start_batch * self.batch_size
        for item in self.indices():
            if skip:
                skip -= 1
                continue
            batch.append(item)
            if len(batch) == self.batch_size:
                index = torch.as_tensor([i for i, _ in batch])
                view = torch.as_tensor([v for _, v in batch])
                yield {"images": self.cached.inputs[view, index].float(), "hashtags": self.cached.hashtags[index],
                       "categories": self.cached.categories[index], "keys": [self.cached.keys[i] for i in index]}
                batch = []


def train_top(*, model: nn.Module, cut: int, cached: CachedSplit, task: TrainTask, loop: LoopConfig, info, state,
              store, output_dir, sampling: str, seed: int, shuffle_size: int = 256,
              resume: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``model``'s top (from block ``cut``) and the task's head on ``cached`` with the shared loop; the
    lower stages stay as they are (they are not in the graph: no gradient, no weight decay, BN stats untouched)."""
    top = TopNet(model, cut)
    loop = replace(loop, num_workers=0, calibrate_steps=0)  # the posts are in memory: workers would only copy them

    def make_dataset(start_batch: int) -> CachedStream:
        return CachedStream(cached, batch_size=loop.batch_size, seed=seed, sampling=sampling,
                            shuffle_size=shuffle_size, start_batch=start_batch)

    return run_training(model=top, task=task, loop=loop, info=info, state=state, store=store,
                        make_dataset=make_dataset, output_dir=output_dir, resume=resume)


@torch.no_grad()
def top_features(model: nn.Module, cached: CachedSplit, cut: int, *, view: int = 0,
                 batch_size: int = 256) -> torch.Tensor:
    """float32[N, F]: the pooled features the heads see, for one view of ``cached`` (eval mode)."""
    top = TopNet(model, cut).eval()
    return torch.cat([top.forward_features(cached.inputs[view, start:start + batch_size])
                      for start in range(0, len(cached), batch_size)])


def predict_cached(model: nn.Module, cached: CachedSplit, cut: int) -> Predictions:
    """``evaluate.predict`` on cached activations (view 0: the images as the preset makes them)."""
    features = top_features(model, cached, cut)
    with torch.no_grad():
        hashtag_logits = model.hashtag_head(features).numpy()
        category_scores = torch.sigmoid(model.category_head(features)[:, :model.num_categories]).numpy()
    return Predictions(list(cached.keys), hashtag_logits, category_scores, cached.hashtags.numpy(),
                       cached.categories.numpy())


def fit_category_probe(model: nn.Module, cached: CachedSplit, cut: int, *, l2: float) -> dict[str, float]:
    """The lbfgs probe (``probe_fit.fit_linear_probe``) of the category head on the top's features of the
    train posts, both views; written into ``model.category_head``."""
    from tagwatch.train.probe_fit import fit_linear_probe

    views = cached.inputs.shape[0]
    features = torch.cat([top_features(model, cached, cut, view=v) for v in range(views)])
    targets = cached.categories.repeat(views, 1)
    weight, bias, info = fit_linear_probe(features, targets, l2=l2)
    head = model.category_head
    with torch.no_grad():
        head.weight.copy_(weight[: head.out_features])
        head.bias.copy_(bias[: head.out_features])
    return info


def reinit_top(model: nn.Module, cut: int, *, seed: int) -> None:
    """Random init (the modules' own ``reset_parameters``) of everything ``train_top`` trains: the from-scratch
    baseline on the same frozen lower stages."""
    torch.manual_seed(seed)
    for module in [*upper_modules(model.backbone, cut), model.hashtag_head, model.category_head]:
        for sub in module.modules():
            if hasattr(sub, "reset_parameters"):  # conv, linear, batch norm (running stats too)
                sub.reset_parameters()


def rare_tags(train_hashtags: torch.Tensor, *, share: float = 1 / 3) -> np.ndarray:
    """Indices of the ``share`` least frequent tags of the train split (ties by index)."""
    counts = train_hashtags.sum(0).numpy()
    order = np.argsort(counts, kind="stable")
    return order[: max(1, int(round(share * len(counts))))]


def lower_bound_scores(scores: np.ndarray, targets: np.ndarray, keys: list[str], duplicates: set[str]) -> np.ndarray:
    """Scores where each duplicate's true labels get the lowest score (counted wrong, as ``hashtag_metrics``)."""
    dup = np.array([k in duplicates for k in keys], dtype=bool)
    lowered = scores.copy()
    if dup.any():
        lowered[dup] = np.where(targets[dup] > 0, -1e9, lowered[dup])
    return lowered


def check_partial_arch(arch: str) -> None:
    from tagwatch.errors import ConfigError

    if arch != "efficientnet_lite0":
        raise ConfigError(f"the partial solver splits efficientnet_lite0 at a block, not {arch}",
                          hint="use --arch efficientnet_lite0 --pretrained, or --solver sgd")

