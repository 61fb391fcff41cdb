"""benchmarks/hashtag_ablations.py --quick on real openclipart posts (its own private stack): every arm is there
with a mean and an interval (holdout posts and seeds), with paired differences against ImageNet + probe, and the
lower stages are computed once then read back from the cache (figures only; no timed asserts)."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "hashtag_ablations.py"
ARMS = {"imagenet_probe", "hashtag_probe", "hashtag_finetune", "scratch", "natural_probe", "sigmoid_probe",
        "noise25_probe", "noise50_probe"}


def test_quick_ablations_print_every_arm(capsys):
    spec = importlib.util.spec_from_file_location("hashtag_ablations", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--quick", "--seeds", "2", "--threads", "1"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(figures["arms"]) == ARMS
    assert figures["cache"]["first"] == {"train": "computed", "holdout": "computed"}
    assert figures["cache"]["second"] == {"train": "local", "holdout": "local"}
    assert figures["posts"]["openclipart"] > 0 and figures["splits"]["train"] > 0
    for arm in ARMS:
        weapons = figures["arms"][arm]["ap_weapons"]
        assert weapons["n"] == 2 and weapons["seed_low"] <= weapons["mean"] <= weapons["seed_high"]
        assert weapons["low"] <= weapons["high"]  # holdout posts and seeds resampled
        assert "ap_weapons_lower_bound" in figures["arms"][arm]
    for arm in ARMS - {"imagenet_probe", "hashtag_finetune", "scratch"}:
        assert {"hashtag_map", "hashtag_map_rare", "hashtag_map_lower_bound"} <= set(figures["arms"][arm])
    for arm in ARMS - {"imagenet_probe"}:  # paired over the same resampled holdout posts
        assert figures["paired"][f"{arm} - imagenet_probe"]["category_map"]["low"] is not None
    assert figures["decision"]["default"] in ARMS and figures["decision"]["why"]
