"""`tagwatch model export --checkpoint s3://...` end to end: a checkpoint with the trainer's keys in the real S3,
the trainer's seam (``tagwatch.train.models.build_serving_model``) supplied by a stand-in module, parity checked,
then registered by the CLI. Without the trainer the command fails with one clear line."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import torch

from tagwatch.clients import s3_client
from tagwatch.preprocess import DEFAULT_PRESET
from tests.conftest import run_cli, stack_env
from tests.support.serving_models import CATEGORIES, LABELS, tiny_model

FAKE_TRAINER = Path(__file__).resolve().parents[1] / "support" / "fake_trainer"
REPO = Path(__file__).resolve().parents[2]
# Runs the real CLI entry point with the stand-in trainer appended to the tagwatch package path.
WITH_TRAINER = (
    "import sys, tagwatch; tagwatch.__path__.append(sys.argv.pop(1)); "
    "from tagwatch.cli import main; main(sys.argv[1:])"
)


def _checkpoint() -> bytes:
    model = tiny_model(seed=3)
    buffer = io.BytesIO()
    torch.save({
        "model": model.state_dict(),
        "model_config": {"arch": "tiny-two-head", "num_labels": len(LABELS), "num_categories": len(CATEGORIES),
                         "preset": DEFAULT_PRESET.to_dict(), "categories": CATEGORIES},
        "run_id": "run-ckpt", "manifest_hash": "a" * 64, "vocabulary_version": "vocab-7", "epoch": 4,
    }, buffer)
    return buffer.getvalue()


def test_export_from_s3_checkpoint_then_register(stack_settings, tmp_path) -> None:
    name = f"test-export-{uuid.uuid4().hex[:8]}"
    env = {**stack_env(stack_settings), "TAGWATCH_TRITON__MODEL_NAME": name}
    key = f"{name}/epoch-4.pt"
    s3_client(stack_settings.s3).put_object(Bucket=stack_settings.s3.buckets.checkpoints, Key=key, Body=_checkpoint())
    uri = f"s3://{stack_settings.s3.buckets.checkpoints}/{key}"
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (tmp_path / "policy.json").write_text(json.dumps({"version": "cal-1", "categories": {}}))

    args = ["model", "export", "--checkpoint", uri, "--out", str(tmp_path / "out"), "--labels",
            str(tmp_path / "labels.txt"), "--policy", str(tmp_path / "policy.json")]
    done = subprocess.run([sys.executable, "-c", WITH_TRAINER, str(FAKE_TRAINER), *args], env=env,
                          capture_output=True, text=True, timeout=180, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "parity max abs diff" in done.stdout
    info = json.loads((tmp_path / "out/export.json").read_text())
    assert info["lineage"]["run_id"] == "run-ckpt" and info["lineage"]["checkpoint"] == uri
    assert info["parity"]["passed"] and info["parity"]["images"] == 32

    registered = run_cli("model", "register", str(tmp_path / "out"), "--alias", "candidate", env=env)
    assert registered.returncode == 0, registered.stderr
    show = json.loads(run_cli("model", "show", "candidate", env=env).stdout)
    assert show["lineage"]["vocabulary_version"] == "vocab-7" and show["policy_version"] == "cal-1"
    uri_out = run_cli("model", "uri", "candidate", env=env)
    assert uri_out.stdout.strip() == show["storage_uri"]


def test_export_without_the_trainer_says_so(stack_settings, tmp_path) -> None:
    (tmp_path / "ckpt.pt").write_bytes(_checkpoint())
    done = run_cli("model", "export", "--checkpoint", str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "out"),
                   env={**stack_env(stack_settings), "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert done.returncode == 10
    assert "build_serving_model) is not installed" in done.stderr and "Traceback" not in done.stderr
