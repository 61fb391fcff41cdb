"""The TrainJob / PyTorchJob / InferenceService objects the pipeline would send, validated for real against the
upstream CRD schemas in manifests/crds (and the house security rules), plus the status readers."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tagwatch.k8s.validate import security_problems, validate_objects
from tagwatch.pipeline.k8s_objects import (TrainSpec, build_inference_service, build_pytorchjob, build_trainjob,
                                           inference_service_patch, job_outcome, service_outcome)
from tagwatch.pipeline.training import build_job
from tagwatch.settings import load_settings

CRDS = Path(__file__).resolve().parents[2] / "manifests" / "crds"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def spec(**overrides) -> TrainSpec:
    values = {"name": "pretrain-abc", "namespace": "tagwatch", "args": ["--dataset=hashtags/v1", "--steps=100"],
              "num_nodes": 2, "gpus_per_node": 8, "env": {"TAGWATCH_S3__ENDPOINT_URL": "https://s3.example"},
              "node_selector": {"nvidia.com/gpu.present": "true"}, "tolerations": [GPU_TOLERATION]}
    return TrainSpec(**{**values, **overrides})


def test_trainjob_validates_against_the_trainer_crd() -> None:
    job = build_trainjob(spec())
    assert validate_objects([job], CRDS) == []
    trainer = job["spec"]["trainer"]
    assert job["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime",
                                         "name": "torch-distributed"}
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 8
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in trainer["env"] if "valueFrom" in e}
    assert secret_env["TAGWATCH_S3__SECRET_ACCESS_KEY"] == {"name": "tagwatch-s3", "key": "AWS_SECRET_ACCESS_KEY"}
    assert not any("SECRET" in e["name"] and "value" in e for e in trainer["env"])
    pod = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert pod["template"]["spec"]["template"]["spec"]["tolerations"] == [GPU_TOLERATION]


def test_the_validator_catches_a_wrong_type_and_an_unknown_field() -> None:
    """Guards the test above: the same check fails objects the API server would reject or prune."""
    job = build_trainjob(spec())
    bad = copy.deepcopy(job)
    bad["spec"]["trainer"]["numProcPerNode"] = "8"
    bad["spec"]["trainer"]["gpus"] = 8
    problems = {p.rule: p.detail for p in validate_objects([bad], CRDS)}
    assert "numProcPerNode" in problems["schema"] and "trainer.gpus" in problems["unknown-field"]


def test_pytorchjob_validates_and_passes_the_security_rules() -> None:
    job = build_pytorchjob(spec())
    assert validate_objects([job], CRDS) == [] and security_problems([job]) == []
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 1
    assert job["spec"]["nprocPerNode"] == "8"
    single = build_pytorchjob(spec(num_nodes=1, gpus_per_node=0))
    assert "Worker" not in single["spec"]["pytorchReplicaSpecs"] and validate_objects([single], CRDS) == []


def test_build_job_from_settings_names_the_run_and_keeps_secrets_out() -> None:
    settings = load_settings(s3={"endpoint_url": "https://s3.example", "secret_access_key": "do-not-leak-42"})
    for kind in ("TrainJob", "PyTorchJob"):
        job = build_job(settings=settings, run_id="pretrain-Run_7", argv=["--steps=5"], job_kind=kind, num_nodes=1)
        assert validate_objects([job], CRDS) == []
        assert job["metadata"]["name"] == "pretrain-run-7"
        assert "do-not-leak-42" not in repr(job)
    from tagwatch.errors import PipelineError

    with pytest.raises(PipelineError, match="unknown job kind"):
        build_job(settings=settings, run_id="r", argv=[], job_kind="MPIJob")


def test_inference_service_and_its_patch() -> None:
    isvc = build_inference_service(name="tagwatch-moderation", namespace="tagwatch", registry_version=3,
                                   storage_uri="s3://models/registry/m/versions/000003/repository", alias="candidate")
    assert validate_objects([isvc], CRDS) == [] and security_problems([isvc]) == []
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "RawDeployment"}
    assert isvc["metadata"]["labels"]["tagwatch.io/registry-alias"] == "candidate"
    patch = inference_service_patch(isvc)
    # canaryTrafficPercent: null removes a canary an older manifest may have left on the live object
    assert patch["spec"]["predictor"] == {"model": {"storageUri": "s3://models/registry/m/versions/000003/repository"},
                                          "canaryTrafficPercent": None}
    full = build_inference_service(name="m", namespace="t", storage_uri="s3://x/y", gpus=1)
    assert "canaryTrafficPercent" not in full["spec"]["predictor"] and validate_objects([full], CRDS) == []
    from tagwatch.errors import ConfigError

    with pytest.raises(ConfigError, match="Serverless/Knative mode only"):  # RawDeployment: KServe would ignore it
        build_inference_service(name="m", namespace="t", storage_uri="s3://x/y", canary_traffic_percent=10)
    # where KServe does split traffic (Serverless), a canary is built and checked
    knative = build_inference_service(name="m", namespace="t", storage_uri="s3://x/y", canary_traffic_percent=10,
                                      deployment_mode="Serverless")
    assert knative["spec"]["predictor"]["canaryTrafficPercent"] == 10 and validate_objects([knative], CRDS) == []
    with pytest.raises(ConfigError, match="not in 0..100"):
        build_inference_service(name="m", namespace="t", storage_uri="s3://x/y", canary_traffic_percent=150,
                                deployment_mode="Serverless")


def _cond(kind: str, status: str = "True", reason: str = "", message: str = "") -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def test_job_and_service_outcomes() -> None:
    assert job_outcome({}).state == "pending"
    assert job_outcome({"status": {"conditions": [_cond("Created")]}}).state == "running"
    assert job_outcome({"status": {"conditions": [_cond("Complete", reason="JobsCompleted")]}}).state == "succeeded"
    assert job_outcome({"status": {"conditions": [_cond("Succeeded")]}}).state == "succeeded"
    failed = job_outcome({"status": {"conditions": [_cond("Created"), _cond("Failed", reason="BackoffLimitExceeded",
                                                                            message="node-0 OOMKilled")]}})
    assert failed.state == "failed" and failed.reason == "BackoffLimitExceeded: node-0 OOMKilled"
    stale = {"metadata": {"generation": 3}, "status": {"observedGeneration": 2, "conditions": [_cond("Ready")]}}
    assert service_outcome(stale).state == "running"
    ready = {"metadata": {"generation": 3}, "status": {"observedGeneration": 3, "url": "http://m",
                                                       "conditions": [_cond("Ready")]}}
    assert service_outcome(ready).state == "succeeded" and service_outcome(ready).reason == "http://m"
