"""`tagwatch model export --checkpoint s3://<checkpoints>/<run>` end to end with the real trainer: a `tiny_cnn`
checkpoint saved by the trainer's CheckpointStore in the real S3 (latest.json + sha256), rebuilt through
``tagwatch.train.models.build_serving_model``, labelled from the dataset it names, parity-checked, registered."""

from __future__ import annotations

import json
import uuid

from tests.conftest import run_cli, stack_env
from tests.support.checkpoints import save_tiny_cnn_checkpoint as _save_checkpoint


def test_export_from_the_trainers_s3_checkpoint_then_register(stack_settings, tmp_path) -> None:
    name = f"test-export-{uuid.uuid4().hex[:8]}"
    env = {**stack_env(stack_settings), "TAGWATCH_TRITON__MODEL_NAME": name}
    uri = _save_checkpoint(stack_settings, run_id=f"run-{uuid.uuid4().hex[:6]}")
    (tmp_path / "policy.json").write_text(json.dumps({"version": "cal-1", "categories": {}}))

    done = run_cli("model", "export", "--checkpoint", uri, "--out", str(tmp_path / "out"),
                   "--policy", str(tmp_path / "policy.json"), env=env, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "parity max abs diff" in done.stdout
    info = json.loads((tmp_path / "out/export.json").read_text())
    assert info["lineage"]["checkpoint"] == uri and info["lineage"]["arch"] == "tiny_cnn"
    assert info["parity"]["passed"] and info["parity"]["images"] == 32
    repo = tmp_path / "out/repository" / name
    assert (repo / "categories.txt").read_text().split() == ["weapons", "violence", "drugs"]
    assert len((repo / "hashtags.txt").read_text().split("\n")) == 17  # 16 labels + final newline

    registered = run_cli("model", "register", str(tmp_path / "out"), "--alias", "candidate", env=env)
    assert registered.returncode == 0, registered.stderr
    show = json.loads(run_cli("model", "show", "candidate", env=env).stdout)
    assert show["lineage"]["run_id"].startswith("run-") and show["policy_version"] == "cal-1"
    assert run_cli("model", "uri", "candidate", env=env).stdout.strip() == show["storage_uri"]


def test_export_of_a_missing_checkpoint_is_one_clear_line(stack_settings, tmp_path) -> None:
    done = run_cli("model", "export", "--checkpoint", str(tmp_path / "nope" / "step-0000001.pt"),
                   "--out", str(tmp_path / "out"), env=stack_env(stack_settings))
    assert done.returncode != 0 and "error:" in done.stderr and "Traceback" not in done.stderr
    assert "does not exist" in done.stderr
