"""The demo's training plan speaks the trainer's real flags, and its config hash decides reuse."""

from __future__ import annotations

from pathlib import Path

from tagwatch.demo.training import TrainingOutcome, TrainingPlan, config_hash
from tagwatch.train.pretrain import build_parser as pretrain_parser
from tagwatch.train.transfer import build_parser as transfer_parser


def test_plans_parse_with_the_trainer_parsers(tmp_path: Path) -> None:
    for quick in (True, False):
        plan = TrainingPlan.for_mode(quick=quick)
        pre = pretrain_parser().parse_args(plan.pretrain_argv(dataset="hashtags/v1", run_id="r", out=tmp_path))
        assert (pre.steps, pre.image_size, pre.width, pre.progress) == (plan.pretrain_steps, plan.image_size, plan.width, False)
        tr = transfer_parser().parse_args(plan.transfer_argv(dataset="hashtags/v1", init="s3://c/r", run_id="t", out=tmp_path))
        assert (tr.steps, tr.init, tr.mode) == (plan.transfer_steps, "s3://c/r", plan.transfer_mode)
    assert TrainingPlan.for_mode(quick=True).pretrain_steps < TrainingPlan.for_mode(quick=False).pretrain_steps


def test_config_hash_changes_with_plan_or_dataset() -> None:
    quick, full = TrainingPlan.for_mode(quick=True), TrainingPlan.for_mode(quick=False)
    assert config_hash(quick, "hashtags/v1") == config_hash(TrainingPlan.for_mode(quick=True), "hashtags/v1")
    assert len({config_hash(quick, "hashtags/v1"), config_hash(full, "hashtags/v1"), config_hash(quick, "hashtags/v2")}) == 3


def test_outcome_round_trips_through_json() -> None:
    outcome = TrainingOutcome(model_name="m", model_version=2, dataset="hashtags/v1", categories=["weapons", "other"],
                              eval_metrics={"weapons": {"ap": 0.4}}, plots={"zipf": "/x/zipf.png"},
                              step_seconds={"pretrain": 1.5}, reused=["dataset"], config_hash="abc")
    assert TrainingOutcome.from_json(outcome.to_json()) == outcome
