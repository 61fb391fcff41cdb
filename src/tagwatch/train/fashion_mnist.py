"""Fashion-MNIST as the second transfer target (``tagwatch train transfer --target fashion-mnist``).

The images come from the Debian package ``dataset-fashion-mnist`` (IDX files under
/usr/share/datasets/fashion-mnist, read with NumPy; nothing is downloaded). Each 28x28 grayscale image goes
through THE preprocessing preset (``preprocess_image``: RGB, resize, centre crop, mean/std) at the
checkpoint's image size, so the backbone sees inputs exactly as in pretraining and serving.

Single-label, 10 classes, softmax cross-entropy on the category head (10 outputs). Arms, as for the
moderation transfer: ``--mode probe`` (frozen backbone, BN statistics too, only the head trains),
``--mode finetune`` (everything trains), and ``--init none`` (from scratch, the baseline). Train on a seeded
subset of the official train split (``--train-samples``), evaluate on a seeded subset of the official test
split (``--eval-samples``). Writes metrics.json (top-1, per-class accuracy, confusion counts), confusion.png,
config.json and model.pt (state_dict + model_config) under the output dir. Single process only.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from tagwatch.errors import CheckpointError, ConfigError
from tagwatch.preprocess import Preset, preprocess_image

log = logging.getLogger("tagwatch.train")

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally .gz) as a uint8 array: magic 0x0000 08 NDIM, NDIM big-endian int32 sizes, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ConfigError(f"{path} is not a uint8 IDX file", hint="reinstall the dataset-fashion-mnist package")
    ndim = data[3]
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape))
    if len(data) - offset != expected:
        raise ConfigError(f"{path}: {len(data) - offset} bytes of data, header says {expected}",
                          hint="the file is truncated; reinstall the dataset-fashion-mnist package")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise ConfigError(f"Fashion-MNIST file {stem}(.gz) not found under {root}",
                      hint="apt-get install dataset-fashion-mnist (see sysdeps.txt), or pass --fashion-mnist-dir")


def load_split(split: str, *, root: Path = DEFAULT_ROOT, limit: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N,28,28], labels int64 [N]) of the official ``train`` or ``test`` split; ``limit`` > 0
    takes a seeded random subset of that size (sorted by index, so runs with the same seed see the same images)."""
    if split not in _FILES:
        raise ConfigError(f"unknown Fashion-MNIST split {split!r}", hint="use 'train' or 'test'")
    images = read_idx(_find(root, _FILES[split][0]))
    labels = read_idx(_find(root, _FILES[split][1])).astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise ConfigError(f"Fashion-MNIST {split}: {images.shape} images vs {labels.shape} labels",
                          hint="reinstall the dataset-fashion-mnist package")
    if 0 < limit < len(labels):
        index = np.sort(np.random.default_rng(seed).choice(len(labels), size=limit, replace=False))
        images, labels = images[index], labels[index]
    return images, labels


def to_inputs(images: np.ndarray, preset: Preset) -> torch.Tensor:
    """Grayscale uint8 [N,28,28] -> float32 [N,3,crop,crop] through THE preset (RGB, resize, crop, mean/std)."""
    return torch.from_numpy(np.stack([preprocess_image(Image.fromarray(image, mode="L"), preset) for image in images]))


def build_model(cfg: Any, *, s3: Any) -> tuple[nn.Module, dict[str, Any], Preset, dict[str, Any] | None]:
    """The TagwatchNet with a 10-way category head: from ``cfg.init`` (backbone weights) or from scratch."""
    from tagwatch.train.checkpoint import load_checkpoint_uri
    from tagwatch.train.models import create_model, create_model_from_config, model_config
    from tagwatch.train.runtime import preset_for

    num_classes = len(CLASS_NAMES)
    if cfg.init not in ("none", "imagenet"):
        pretrained = load_checkpoint_uri(cfg.init, s3=s3)
        config = {**pretrained["model_config"], "num_categories": num_classes}
        model = create_model_from_config(config)
        weights = {k: v for k, v in pretrained["model"].items() if not k.startswith("category_head.")}
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if unexpected or any(not k.startswith("category_head.") for k in missing):
            raise CheckpointError(f"checkpoint {cfg.init} does not fit its own model_config",
                                  hint="was it written by another tagwatch version?")
        preset = Preset.from_dict(config["preset"])
        parent = {"run_id": pretrained["run_id"], "checkpoint": cfg.init, "manifest_hash": pretrained["manifest_hash"]}
        return model, config, preset, parent
    kwargs = {"width": cfg.width} if cfg.arch == "tiny_cnn" else {}
    preset = preset_for(cfg.image_size)
    # No hashtag vocabulary here: a 1-output hashtag head keeps the TagwatchNet shape (it is not trained).
    config = model_config(arch=cfg.arch, num_labels=1, num_categories=num_classes, preset=preset.to_dict(), **kwargs)
    if cfg.init == "imagenet":
        model = create_model(cfg.arch, 1, num_categories=num_classes, pretrained=True, **kwargs)
        return model, config, preset, {"imagenet": cfg.arch}
    return create_model_from_config(config), config, preset, None


def train_classifier(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, mode: str, steps: int,
                     batch_size: int, lr: float, momentum: float = 0.9, weight_decay: float = 1e-4, seed: int = 0,
                     device: str = "cpu") -> dict[str, Any]:
    """SGD + cosine on softmax cross-entropy of the category head. ``probe``: backbone frozen (no grads, BN in
    eval mode so its running statistics stay the pretrained ones); the head starts at zero."""
    model.to(device)
    probe = mode == "probe"
    if probe:
        nn.init.zeros_(model.category_head.weight)
        nn.init.zeros_(model.category_head.bias)
    for param in model.backbone.parameters():
        param.requires_grad_(not probe)
    for param in model.hashtag_head.parameters():
        param.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    cursor, losses, started = 0, [], time.perf_counter()
    model.train()
    if probe:
        model.backbone.eval()
    for _ in range(steps):
        if cursor + batch_size > len(order):
            order, cursor = torch.randperm(len(labels), generator=generator), 0
        batch = order[cursor:cursor + batch_size]
        cursor += batch_size
        _, logits = model(inputs[batch].to(device))
        loss = nn.functional.cross_entropy(logits, labels[batch].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    tail = losses[-max(1, steps // 10):]
    return {"steps": steps, "lr": lr, "first_loss": losses[0] if losses else None,
            "final_loss": float(np.mean(tail)) if tail else None, "seconds": time.perf_counter() - started,
            "trainable_params": sum(p.numel() for p in params)}


@torch.no_grad()
def predict_classes(model: nn.Module, inputs: torch.Tensor, *, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    model.eval()
    chunks = [model(inputs[i:i + batch_size].to(device))[1].argmax(dim=1).cpu() for i in range(0, len(inputs), batch_size)]
    return torch.cat(chunks).numpy()


def classification_metrics(predicted: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Top-1, per-class accuracy (recall) and the confusion counts (rows: true class, columns: predicted)."""
    num_classes = len(CLASS_NAMES)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {name: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
                 for i, name in enumerate(CLASS_NAMES)}
    return {"top1": float((predicted == labels).mean()) if len(labels) else None, "chance_top1": 1 / num_classes,
            "images": int(len(labels)), "per_class_accuracy": per_class, "class_names": CLASS_NAMES,
            "confusion": confusion.tolist()}


def plot_confusion_matrix(confusion: list[list[int]], *, class_names: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.array(confusion)
    figure, axis = plt.subplots(figsize=(7, 6))
    axis.imshow(counts, cmap="Blues")
    for (row, column), value in np.ndenumerate(counts):
        axis.text(column, row, str(value), ha="center", va="center", fontsize=7)
    axis.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right", fontsize=8)
    axis.set_yticks(range(len(class_names)), class_names, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)


def run_fashion_transfer(cfg: Any, *, settings: Any = None) -> dict[str, Any]:
    """The whole arm for one TransferConfig: load, preprocess, train, evaluate, write the report."""
    from tagwatch.train import runtime
    from tagwatch.train.loop import write_json
    from tagwatch.train.report import clean_json

    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise ConfigError("--target fashion-mnist runs in a single process", hint="drop --nproc")
    settings = runtime.resolve_settings(settings)
    runtime.seed_everything(cfg.seed)
    device = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    root = Path(cfg.fashion_mnist_dir) if cfg.fashion_mnist_dir else DEFAULT_ROOT
    run_id = cfg.run_id or f"transfer-fmnist-{cfg.mode}-{time.strftime('%Y%m%d-%H%M%S')}"
    model, config, preset, parent = build_model(cfg, s3=settings.s3)
    started = time.perf_counter()
    train_images, train_labels = load_split("train", root=root, limit=cfg.train_samples, seed=cfg.seed)
    eval_images, eval_labels = load_split("test", root=root, limit=cfg.eval_samples, seed=cfg.seed + 1)
    train_x, eval_x = to_inputs(train_images, preset), to_inputs(eval_images, preset)
    preprocess_seconds = time.perf_counter() - started
    epochs = cfg.epochs or 5.0
    steps = cfg.steps or max(1, math.ceil(epochs * len(train_labels) / cfg.batch_size))
    lr = cfg.lr or cfg.base_lr * cfg.batch_size / 256
    output_dir = Path(cfg.output_dir) if cfg.output_dir else runtime.default_output_dir(settings, run_id)
    resolved = {"target": "fashion-mnist", "run_id": run_id, "mode": cfg.mode, "init": cfg.init, "parent": parent,
                "steps": steps, "lr": lr, "batch_size": cfg.batch_size, "train_samples": int(len(train_labels)),
                "eval_samples": int(len(eval_labels)), "seed": cfg.seed, "preset": preset.to_dict(),
                "data_root": str(root), "device": device}
    write_json(output_dir / "config.json", resolved)
    log.info("fashion-mnist %s (%s, init %s): %d train / %d eval images, %d steps, lr %.4f", run_id, cfg.mode,
             cfg.init, len(train_labels), len(eval_labels), steps, lr)
    train = train_classifier(model, train_x, torch.from_numpy(train_labels), mode=cfg.mode, steps=steps,
                             batch_size=cfg.batch_size, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                             seed=cfg.seed, device=device)
    metrics = classification_metrics(predict_classes(model, eval_x, device=device), eval_labels)
    metrics.update({"run_id": run_id, "mode": cfg.mode, "init": cfg.init, "split": "test", "train": train,
                    "preprocess_seconds": preprocess_seconds})
    metrics = clean_json(metrics)
    write_json(output_dir / "metrics.json", metrics)
    plot_confusion_matrix(metrics["confusion"], class_names=CLASS_NAMES, path=output_dir / "confusion.png",
                          title=f"Fashion-MNIST {cfg.mode} (init {cfg.init}): top-1 {metrics['top1']:.3f}")
    torch.save({"model": {k: v.cpu() for k, v in model.state_dict().items()}, "model_config": config,
                "run_id": run_id, "target": "fashion-mnist", "class_names": CLASS_NAMES}, output_dir / "model.pt")
    log.info("fashion-mnist top-1 %.3f (chance 0.100) -> %s", metrics["top1"], output_dir)
    return {"run_id": run_id, "target": "fashion-mnist", "metrics": metrics, "output_dir": str(output_dir),
            "frozen_backbone": not any(p.requires_grad for p in model.backbone.parameters())}
