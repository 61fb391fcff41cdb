"""The training configs share one base: the flags, their defaults and the argv handed to torchrun or a TrainJob
all come from the dataclass fields, so a config survives the trip through argv unchanged."""

from __future__ import annotations

from dataclasses import fields

import pytest

from tagwatch.train.config import TrainConfig
from tagwatch.train.pretrain import PretrainConfig
from tagwatch.train.transfer import TransferConfig

pytestmark = pytest.mark.unit


def test_both_configs_inherit_the_shared_fields_and_keep_their_own_defaults() -> None:
    shared = {f.name for f in fields(TrainConfig)}
    assert shared <= {f.name for f in fields(PretrainConfig)} and shared <= {f.name for f in fields(TransferConfig)}
    pretrain, transfer = PretrainConfig(dataset="d/v1"), TransferConfig()
    assert (pretrain.sampling, pretrain.calibrate_steps) == ("sqrt", 5)
    assert (transfer.sampling, transfer.calibrate_steps) == ("natural", 0)


@pytest.mark.parametrize("config", [PretrainConfig, TransferConfig])
def test_parser_defaults_are_the_dataclass_defaults(config) -> None:
    parsed = config.from_argv(["--dataset", "d/v1"])
    assert parsed == config(dataset="d/v1")


def test_a_config_round_trips_through_its_argv() -> None:
    pretrain = PretrainConfig(dataset="hashtags/v3", run_id="r-1", steps=7, lr=0.05, pretrained=True, solver="lbfgs",
                              progress=False, evaluate=False, output_dir="/tmp/out", arch="efficientnet_lite0")
    assert PretrainConfig.from_argv(pretrain.to_argv()) == pretrain
    assert "--pretrained" in pretrain.to_argv() and "--no-progress" in pretrain.to_argv()
    transfer = TransferConfig(dataset="hashtags/v3", init="s3://ck/r-1", mode="probe", probe_solver="lbfgs",
                              review_budget=0.1, min_calibration_positives=3, progress=False, sampling="sqrt")
    assert TransferConfig.from_argv(transfer.to_argv()) == transfer


def test_defaults_are_left_out_of_the_argv() -> None:
    assert PretrainConfig(dataset="d/v1").to_argv() == ["--dataset=d/v1"]
    assert TransferConfig().to_argv() == []
