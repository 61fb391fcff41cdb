"""The whole pretrain -> register -> deploy pipeline with kfp.local.SubprocessRunner(use_venv=False) on the
real embedded stack (SeaweedFS for data, checkpoints and registry; the real local Triton for the deploy), on a
small synthetic slice. A second run of the same pipeline meets the gate: the same model does not beat production.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tagwatch.clients import s3_client
from tagwatch.pipeline.deploy import served_record, stop_local_triton
from tagwatch.pipeline.local import run_pretrain_and_deploy
from tagwatch.registry import open_registry


@pytest.fixture(scope="module")
def pipeline_settings(stack_settings):
    """The session stack with buckets and a model name of this module's own (no other test sees its registry)."""
    suffix = secrets.token_hex(3)
    buckets = {"posts": f"pipe-posts-{suffix}", "datasets": f"pipe-datasets-{suffix}",
               "models": f"pipe-models-{suffix}", "checkpoints": f"pipe-checkpoints-{suffix}"}
    client = s3_client(stack_settings.s3)
    for bucket in buckets.values():
        client.create_bucket(Bucket=bucket)
    s3 = stack_settings.s3.model_copy(update={"buckets": stack_settings.s3.buckets.model_copy(update=buckets)})
    triton = stack_settings.triton.model_copy(update={"model_name": f"pipe-{suffix}"})
    settings = stack_settings.model_copy(update={"s3": s3, "triton": triton})
    yield settings
    stop_local_triton(settings)  # the session stack goes on without the Triton this module started


@pytest.fixture(scope="module")
def first_run(pipeline_settings, tmp_path_factory):
    """One quick run on an empty registry (about a minute on 2 cores), with its progress events."""
    events: list[dict] = []
    result = run_pretrain_and_deploy(pipeline_settings, quick=True, on_event=events.append,
                                     pipeline_root=tmp_path_factory.mktemp("runs"),
                                     register_metrics_json=json.dumps({"demo": {"config_hash": "c0ffee"}}))
    return result, events


@pytest.mark.slow
def test_first_run_registers_and_deploys(pipeline_settings, first_run) -> None:
    first, events = first_run
    # the gate let it through (no production yet); a new registry version with metrics and lineage
    assert first.gate["promote"] and first.gate["reason"].startswith("no production model yet")
    assert first.gate["review_rate"]["value"] <= first.gate["review_budget"]  # within budget: the rule without production
    assert first.version == 1 and first.alias == "production"
    registry = open_registry(pipeline_settings)
    metadata, _ = registry.resolve("production")
    assert metadata.version == 1
    assert metadata.lineage["pipeline_job_name"] == first.run_name
    assert metadata.lineage["pipeline_run_id"] and metadata.lineage["run_id"].startswith("transfer-")
    assert metadata.lineage["review_labels"] == 0  # the checkpoint's count, from a build without review labels
    assert metadata.metrics["holdout"]["category_map"] == pytest.approx(first.metrics["category_map"])
    assert metadata.metrics["gate"]["promote"] is True
    assert metadata.metrics["demo"] == {"config_hash": "c0ffee"}  # register_metrics_json, merged as given
    assert set(first.metrics["per_category"]) >= {"pointy", "round"}
    assert first.metrics["category_map"] > first.metrics["chance_category_map"]  # it learned something
    evaluation = json.load(open(first.artifacts["evaluation_json"]))
    assert "other" not in evaluation["flag"]["categories"]  # the UI's binary figures: moderation categories only
    assert evaluation["kfp_metrics"]["review_budget"] == 0.05 and "review_rate_high" in evaluation["kfp_metrics"]

    # artifacts: report with inlined plots, plots, metrics JSON; step timings and progress events
    report = open(first.artifacts["report_html"]).read()
    assert report.count("data:image/png;base64,") == 2 and "no production model yet" in report
    for key in ("pr_curves_png", "confusion_png"):
        assert open(first.artifacts[key], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert json.load(open(first.artifacts["metrics_json"]))["split"] == "holdout"
    steps = ["ingest", "plan-dataset", "hash-posts", "reduce-dataset", "write-shards", "build-dataset", "pretrain",
             "transfer", "export", "evaluate", "register", "deploy"]
    assert list(first.task_seconds) == steps and all(s > 0 for s in first.task_seconds.values())
    done = [e["step"] for e in events if e["event"] == "done"]  # map_tasks=2: two hash and two shard-writer tasks
    assert done == [*steps[:3], "hash-posts", steps[3], "write-shards", *steps[4:]]
    # kfp.local's mktemp dirs went with the run (its own scratch dir: another run on the machine may hold one)
    assert first.scratch_dir.startswith(tempfile.gettempdir()) and not Path(first.scratch_dir).exists()

    # the local Triton serves the new version
    served = served_record(pipeline_settings)
    assert served["model_name"] == pipeline_settings.triton.model_name and served["version"] == 1
    from tagwatch.serving.client import ModelClient

    with ModelClient(url=f"127.0.0.1:{served['ports']['http']}", model_name=pipeline_settings.triton.model_name,
                     protocol="http") as client:
        out = client.infer(np.zeros((2, 3, 64, 64), dtype=np.float32))
    assert out["category_scores"].shape == (2, len(first.metrics["per_category"]))
    assert list(out["model_version"]) == [1, 1]


@pytest.mark.slow
def test_second_run_is_refused_by_the_gate(pipeline_settings, first_run, tmp_path) -> None:
    """Same data, seed and recipe: the same model (up to CPU float noise). Its recall equals production's (not worse),
    but the opt-in mAP margin asked for is not met -> no new version, no deploy, production still served."""
    second = run_pretrain_and_deploy(pipeline_settings, quick=True, pipeline_root=tmp_path / "runs",
                                     min_improvement=0.05)
    assert not second.gate["promote"] and "does not beat production v1" in second.gate["reason"]
    assert second.gate["categories_in_common"] == ["pointy", "round"]
    assert second.gate["production_version"] == 1 and second.gate["recall_difference"] is not None
    assert second.version is None and second.alias is None
    assert [v.version for v in open_registry(pipeline_settings).list_versions()] == [1]
    assert "register" not in second.task_seconds and "deploy" not in second.task_seconds
    assert served_record(pipeline_settings)["version"] == 1
