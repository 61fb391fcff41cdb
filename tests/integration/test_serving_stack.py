"""Triton as the stack's third service: off until a `production` model exists, then started by `stack up`,
health-checked, serving, and stopped by `stack down` with its whole process family. Also `tagwatch serve` on a
tampered version exits with the integrity error."""

from __future__ import annotations

import json

import psutil
import pytest

from tagwatch.clients import s3_client
from tagwatch.registry import ModelRegistry
from tagwatch.serving.client import ModelClient
from tagwatch.stack import with_stack_endpoints
from tagwatch.stack.cpus import consumer_cpus, cpu_plan, thread_affinities
from tagwatch.stack.state import read_state
from tests.conftest import make_settings, run_cli, stack_env
from tests.support.serving_models import export_tiny


@pytest.mark.slow
def test_stack_up_starts_triton_once_production_exists(tmp_path) -> None:
    base = make_settings(tmp_path / "state", kafka={"partitions": 1})
    env = {**stack_env(base), "TAGWATCH_KAFKA__PARTITIONS": "1"}
    up = run_cli("stack", "up", env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "started seaweedfs, tansu" in up.stdout and "triton not started: no `production` model" in up.stderr
        status = run_cli("stack", "status", "--json", env=env)
        assert status.returncode == 0, status.stdout + status.stderr  # an optional service that is off is not "down"
        rows = {r["name"]: r for r in json.loads(status.stdout)}
        assert rows["triton"]["running"] is False and rows["triton"]["optional"] is True

        settings = with_stack_endpoints(base)
        registry = ModelRegistry(s3_client(settings.s3), bucket=settings.s3.buckets.models,
                                 model_name=settings.triton.model_name)
        export = export_tiny(tmp_path / "export", model_name=settings.triton.model_name)
        registry.register(export.out_dir)
        bad = registry.register(export.out_dir, alias="production").version
        key = f"{registry.version_prefix(bad)}/repository/{settings.triton.model_name}/{bad}/model.onnx"
        registry.s3.put_object(Bucket=registry.bucket, Key=key, Body=b"not the model that was registered")

        # production names a version tampered with after its promotion: Triton refuses it, `stack up` exits 4
        # naming it and its log; S3 and Kafka stay up.
        up = run_cli("stack", "up", env=env)
        assert up.returncode == 4, up.stdout + up.stderr
        assert "error: triton failed to start" in up.stderr and "triton.log" in up.stderr
        assert "refusing to load" in (
            settings.paths.logs_dir / "triton.log").read_text()
        status = {r["name"]: r for r in json.loads(run_cli("stack", "status", "--json", env=env).stdout)}
        assert status["seaweedfs"]["healthy"] and status["tansu"]["healthy"] and not status["triton"]["running"]
        registry.promote(1, alias="production")  # the fix: promote a verified version (the rollback target)

        up = run_cli("stack", "up", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "started triton" in up.stdout and "Triton grpc://127.0.0.1:" in up.stdout
        status = json.loads(run_cli("stack", "status", "--json", env=env).stdout)
        assert {r["name"]: r["healthy"] for r in status} == {"seaweedfs": True, "tansu": True, "triton": True}
        ports = read_state(settings.paths.stack_file).ports
        with ModelClient(url=f"127.0.0.1:{ports.triton_http}", model_name=settings.triton.model_name,
                         protocol="http") as client:
            scores = client.infer(_images())["category_scores"]
        assert scores.shape == (4, 3)

        check = run_cli("stack", "check", "--json", env=env)
        assert check.returncode == 0, check.stdout + check.stderr
        checks = {c["name"]: c for c in json.loads(check.stdout)["checks"]}
        assert checks["triton infer"]["ok"] and "version 1 scored 1 image" in checks["triton infer"]["detail"]

        refused = run_cli("serve", "--ref", str(bad), "--free-ports", env=env)
        assert refused.returncode == 12, refused.stdout + refused.stderr
        assert "refusing to load" in refused.stderr and "Traceback" not in refused.stderr

        server = psutil.Process(read_state(settings.paths.stack_file).services["triton"].process.pid)
        family = [server, *server.children(recursive=True)]
        assert any(p.name() == "tritonserver" for p in family)
        # stack/cpus.py: the model server's whole family on a CPU of its own, the other services on the rest
        state = read_state(settings.paths.stack_file)
        plan = cpu_plan(settings.stack.model_cpus)
        if plan is None:  # a one-CPU machine: nothing pinned
            assert all(s.cpus is None for s in state.services.values())
        else:
            assert state.services["triton"].cpus == list(plan.model)
            assert all(a == set(plan.model) for p in family for a in thread_affinities(p.pid))
            for name in ("seaweedfs", "tansu"):
                assert state.services[name].cpus == list(plan.rest)
                assert all(a == set(plan.rest) for a in thread_affinities(state.services[name].process.pid))
            assert consumer_cpus(settings) == plan.rest
            shown = {r["name"]: r["cpus"] for r in json.loads(run_cli("stack", "status", "--json", env=env).stdout)}
            assert shown == {"seaweedfs": list(plan.rest), "tansu": list(plan.rest), "triton": list(plan.model)}
    finally:
        down = run_cli("stack", "down", env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    _, alive = psutil.wait_procs(family, timeout=15)
    assert not alive, [p.pid for p in alive]
    assert "triton: stopped" in down.stderr


def _images():
    from tagwatch.export.export import load_parity_images
    from tagwatch.preprocess import DEFAULT_PRESET

    return load_parity_images(DEFAULT_PRESET, count=4)
