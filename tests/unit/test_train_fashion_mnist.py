"""Fashion-MNIST as the second transfer target: the real IDX files from the dataset-fashion-mnist package, a tiny
checkpoint pretrained in-test on the in-memory synthetic dataset, then the real linear probe on 500/200 images."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tagwatch.errors import ConfigError
from tagwatch.train.fashion_mnist import DEFAULT_ROOT, load_split, read_idx
from tagwatch.train.pretrain import main as pretrain
from tagwatch.train.transfer import main as transfer

COMMON = ["--threads", "1", "--no-progress", "--workers", "0"]


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGWATCH_PATHS__STATE_DIR", str(tmp_path / "state"))
    torch.set_num_threads(1)


def test_read_idx_round_trips_and_rejects_truncated_files(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + np.array(data.shape, dtype=">i4").tobytes()
    (tmp_path / "ok-idx3-ubyte.gz").write_bytes(gzip.compress(header + data.tobytes()))
    assert np.array_equal(read_idx(tmp_path / "ok-idx3-ubyte.gz"), data)
    (tmp_path / "short").write_bytes(header + data.tobytes()[:-1])
    with pytest.raises(ConfigError, match="truncated|bytes of data"):
        read_idx(tmp_path / "short")
    with pytest.raises(ConfigError, match="not found"):
        load_split("train", root=tmp_path)


def test_probe_on_pretrained_checkpoint_beats_chance_with_frozen_backbone(tmp_path: Path) -> None:
    pretrain(["--dataset", "synthetic:192", "--batch-size", "16", *COMMON, "--image-size", "32", "--width", "8",
              "--steps", "30", "--lr", "0.05", "--calibrate-steps", "0", "--no-evaluate", "--run-id", "pre",
              "--checkpoint-root", str(tmp_path / "ck"), "--output-dir", str(tmp_path / "pre")])
    before = torch.load(tmp_path / "ck" / "pre" / "step-0000030.pt", weights_only=False)["model"]
    result = transfer(["--target", "fashion-mnist", "--init", str(tmp_path / "ck" / "pre"), "--mode", "probe", *COMMON,
                       "--train-samples", "500", "--eval-samples", "200", "--batch-size", "32", "--lr", "0.1",
                       "--output-dir", str(tmp_path / "probe")])
    metrics = json.loads((tmp_path / "probe" / "metrics.json").read_text())
    assert metrics["images"] == 200 and np.array(metrics["confusion"]).sum() == 200
    assert metrics["top1"] > 0.3, metrics["top1"]  # chance is 0.1
    assert result["frozen_backbone"] and metrics["train"]["trainable_params"] == 8 * 8 * 10 + 10
    after = torch.load(tmp_path / "probe" / "model.pt", weights_only=False)["model"]
    for name, tensor in before.items():  # weights AND BN running statistics of the backbone are untouched
        if name.startswith("backbone."):
            assert torch.equal(tensor, after[name]), name
    assert (tmp_path / "probe" / "confusion.png").stat().st_size > 0


def test_categories_target_still_needs_a_dataset() -> None:
    with pytest.raises(ConfigError, match="--dataset is required"):
        transfer(["--mode", "probe", *COMMON])
