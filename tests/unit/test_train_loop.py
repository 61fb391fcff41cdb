"""The real training loop on CPU with the in-memory synthetic dataset (no S3): main(argv) end to end, the
stream's resume arithmetic, and exact resume from a checkpoint in one process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tagwatch.preprocess import DEFAULT_PRESET
from tagwatch.train.data import ShardStream, StreamConfig
from tagwatch.train.models import build_serving_model
from tagwatch.train.pretrain import main
from tagwatch.train.synthetic import build_synthetic_dataset

BASE = ["--dataset", "synthetic:192", "--image-size", "48", "--width", "8", "--batch-size", "16", "--threads", "1",
        "--no-progress", "--log-every", "5", "--lr", "0.05", "--warmup-steps", "3"]


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGWATCH_PATHS__STATE_DIR", str(tmp_path / "state"))
    torch.set_num_threads(1)


def test_main_trains_and_beats_chance(tmp_path: Path) -> None:
    summary = main([*BASE, "--steps", "40", "--workers", "1", "--calibrate-steps", "2", "--run-id", "unit",
                    "--checkpoint-root", str(tmp_path / "ck"), "--output-dir", str(tmp_path / "out")])
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert summary["val_hashtag_map"] > 2 * summary["val_chance_hashtag_map"]
    assert summary["ceiling_img_s"] > 0 and 0 <= summary["data_wait_fraction"] <= 1
    assert "achieved_over_ceiling" in rows[-1]
    checkpoint = torch.load(tmp_path / "ck" / "unit" / "step-0000040.pt", weights_only=False)
    for key in ("model", "model_config", "optimizer", "scheduler", "step", "epoch", "stream", "rng", "config",
                "manifest_hash", "vocabulary_version", "run_id"):
        assert key in checkpoint, key
    assert checkpoint["model_config"]["preset"]["crop"] == 48
    assert json.loads((tmp_path / "ck" / "unit" / "latest.json").read_text())["path"] == "step-0000040.pt"
    hashtag_logits, category_scores = build_serving_model(checkpoint)(torch.zeros(1, 3, 48, 48))
    assert hashtag_logits.shape == (1, 16) and category_scores.shape == (1, 3)


def test_stream_restarted_at_a_step_continues_the_same_batches() -> None:
    dataset = build_synthetic_dataset(num_samples=96, num_labels=8, image_size=40, samples_per_shard=16)
    shards = [p for p in dataset.files if p.startswith("shards/train-")]

    def batches(start: int, count: int, workers: int) -> list[list[str]]:
        stream = ShardStream(reader=dataset.memory_shards(), shards=shards, num_labels=8,
                             category_names=dataset.manifest.category_names, preset=DEFAULT_PRESET,
                             config=StreamConfig(batch_size=8, seed=3, shuffle_size=32, start_batch=start))
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers)
        out, it = [], iter(loader)
        for _ in range(count):
            batch = next(it)
            out.append(batch["keys"] + [float(batch["images"].sum())])
        return out

    for workers in (0, 2):
        full = batches(0, 12, workers)
        assert batches(7, 5, workers) == full[7:]


def test_resume_from_a_mid_run_checkpoint_is_bit_identical(tmp_path: Path) -> None:
    common = [*BASE, "--steps", "12", "--workers", "0", "--calibrate-steps", "0", "--no-evaluate",
              "--checkpoint-every", "4", "--run-id", "r"]
    main([*common, "--checkpoint-root", str(tmp_path / "a"), "--output-dir", str(tmp_path / "oa")])
    # the "interrupted" run: only the step-4 checkpoint survived
    (tmp_path / "b" / "r").mkdir(parents=True)
    shutil.copy(tmp_path / "a" / "r" / "step-0000004.pt", tmp_path / "b" / "r" / "step-0000004.pt")
    (tmp_path / "b" / "r" / "latest.json").write_text(json.dumps({"step": 4, "path": "step-0000004.pt", "sha256": ""}))
    summary = main([*common, "--checkpoint-root", str(tmp_path / "b"), "--output-dir", str(tmp_path / "ob"),
                    "--resume", "latest"])
    assert summary["start_step"] == 4 and summary["steps"] == 12
    a = torch.load(tmp_path / "a" / "r" / "step-0000012.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "r" / "step-0000012.pt", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert not torch.equal(a["model"]["hashtag_head.weight"],
                           torch.load(tmp_path / "a" / "r" / "step-0000004.pt", weights_only=False)["model"]["hashtag_head.weight"])
