"""The demo's training plan speaks the trainer's real flags, and its config hash decides reuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagwatch.demo.training import (BUILD, TrainingOutcome, TrainingPlan, config_hash, eval_metrics_of,
                                    served_version)
from tagwatch.errors import TrainingError


def test_plans_are_parameters_of_the_real_pipeline() -> None:
    """Every parameter the demo passes exists in pipelines.pretrain_and_deploy with the same type, and the build
    settings are the pipeline's defaults (so the demo's own data build gives the pipeline's dataset version)."""
    import inspect

    from tagwatch.pipeline.local import import_pipeline

    signature = inspect.signature(import_pipeline("pretrain_and_deploy").pipeline_func)
    for quick in (True, False):
        plan = TrainingPlan.for_mode(quick=quick)
        params = plan.pipeline_params(source_root="/x/openclipart-quick" if quick else "")
        params["register_metrics_json"] = "{}"
        for name, value in params.items():
            assert name in signature.parameters, name
            assert isinstance(value, signature.parameters[name].annotation), (name, value)
        assert (params["arch"], params["pretrained"], params["pretrain_solver"], params["probe_solver"]) == (
            "efficientnet_lite0", True, "lbfgs", "lbfgs")  # the CPU path: ImageNet backbone, heads fitted by L-BFGS
        assert params["nproc"] == 1  # L-BFGS fits run in one process
    for name in ("shard_samples", "top_k", "min_count", "seed", "categories_yaml"):
        assert getattr(BUILD, name) == signature.parameters[name].default, name


def test_config_hash_changes_with_plan_or_dataset() -> None:
    from dataclasses import replace

    quick = TrainingPlan.for_mode(quick=True)  # quick and full differ by their data (the dataset version), not the plan
    other = replace(quick, arch="tiny_cnn", pretrained=False, pretrain_solver="sgd")
    assert config_hash(quick, "hashtags/v1") == config_hash(TrainingPlan.for_mode(quick=True), "hashtags/v1")
    assert len({config_hash(quick, "hashtags/v1"), config_hash(other, "hashtags/v1"), config_hash(quick, "hashtags/v2")}) == 3


def test_outcome_round_trips_through_json() -> None:
    outcome = TrainingOutcome(model_name="m", model_version=2, dataset="hashtags/v1", categories=["weapons", "other"],
                              eval_metrics={"weapons": {"ap": 0.4}}, plots={"zipf": "/x/zipf.png"},
                              step_seconds={"pretrain": 1.5}, reused=["dataset"], config_hash="abc",
                              gate={"promote": False, "reason": "not better"}, gate_note="gate refused: not better; serving production v1")
    assert TrainingOutcome.from_json(outcome.to_json()) == outcome


def test_outcome_reads_an_older_outcome_file() -> None:
    """outcome.json files of the in-process training stage (no gate fields) still load."""
    old = {"model_name": "m", "model_version": 1, "dataset": "hashtags/v1", "categories": [], "eval_metrics": {},
           "plots": {}, "step_seconds": {}, "reused": [], "config_hash": "abc"}
    assert TrainingOutcome.from_json(old).gate_note == ""


def test_a_refused_gate_serves_production_and_says_why() -> None:
    assert served_version(candidate=3, gate={"promote": True, "reason": "better"}, production=2) == (3, "")
    version, note = served_version(candidate=None, gate={"promote": False, "reason": "0.10 <= 0.12"}, production=2)
    assert (version, note) == (2, "gate refused: 0.10 <= 0.12; serving production v2")
    with pytest.raises(TrainingError):
        served_version(candidate=None, gate={"promote": False, "reason": "x"}, production=None)


def test_eval_metrics_name_the_flag_precision_and_recall() -> None:
    figures = {"weapons": {"ap": 0.4, "review_or_remove_precision": 0.3, "review_or_remove_recall": 0.7}}
    assert eval_metrics_of(figures)["weapons"] == {**figures["weapons"], "precision": 0.3, "recall": 0.7}


def test_eval_metrics_carry_the_figures_with_cis_when_there() -> None:
    per_category = {"weapons": {"ap": 0.4, "review_or_remove_precision": 0.3, "review_or_remove_recall": 0.7},
                    "other": {"ap": 0.9}}
    figures = {"categories": {"weapons": {"mode": "act", "ap": {"value": 0.4, "low": 0.3, "high": 0.5}}}}
    merged = eval_metrics_of(per_category, figures)
    assert merged["weapons"]["figures"]["ap"]["low"] == 0.3 and merged["weapons"]["precision"] == 0.3
    assert "figures" not in merged["other"]
