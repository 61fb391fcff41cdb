"""`tagwatch train pretrain --nproc 2` relaunches itself under torchrun (gloo, loopback rendezvous) and trains
the in-memory synthetic dataset on 2 ranks: the CLI path a user runs, end to end, without S3."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from tests.conftest import run_cli
from tests.support.torchrun import rank_env


def test_cli_nproc_two_runs_ddp(tmp_path: Path) -> None:
    env = rank_env({**os.environ, "TAGWATCH_PATHS__STATE_DIR": str(tmp_path / "state")})
    result = run_cli("train", "pretrain", "--nproc", "2", "--dataset", "synthetic:96", "--image-size", "32", "--width", "4",
                     "--batch-size", "8", "--steps", "6", "--workers", "0", "--threads", "1", "--calibrate-steps", "1",
                     "--no-progress", "--run-id", "cli", "--checkpoint-root", str(tmp_path / "ck"),
                     "--output-dir", str(tmp_path / "out"), env=env, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 6
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["global_batch"] == 16
    checkpoint = torch.load(tmp_path / "ck" / "cli" / "step-0000006.pt", weights_only=False)
    assert len(checkpoint["rng"]) == 2  # one RNG state per rank
