"""`tagwatch train ...` at the edge: flags reach the one argparse definition; domain errors are one line + hint."""

from __future__ import annotations

from tests.conftest import run_cli


def test_train_pretrain_help_lists_the_recipe_flags() -> None:
    result = run_cli("train", "pretrain", "--help")
    assert result.returncode == 0, result.stderr
    for flag in ("--dataset", "--loss", "--sampling", "--resume", "--checkpoint-every", "--calibrate-steps"):
        assert flag in result.stdout


def test_train_transfer_refuses_a_bad_dataset_spec_with_a_hint(tmp_path) -> None:
    result = run_cli("--state-dir", str(tmp_path), "train", "transfer", "--dataset", "not-a-spec")
    assert result.returncode == 3
    assert "error: bad dataset spec" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr
