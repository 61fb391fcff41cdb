"""Cluster-mode pretraining: build the TrainJob (or PyTorchJob), create it, stream its status, return or fail."""

from __future__ import annotations

import logging
from typing import Any, Callable

from tagwatch.errors import PipelineError
from tagwatch.pipeline.cluster import create_object, custom_objects_api, wait_for
from tagwatch.pipeline.image import GPU_IMAGE
from tagwatch.pipeline.k8s_objects import TrainSpec, build_pytorchjob, build_trainjob, k8s_name

log = logging.getLogger(__name__)
JOB_KINDS = ("TrainJob", "PyTorchJob")


def cluster_env(settings) -> dict[str, str]:
    """Non-secret settings the training pods need to reach the same S3 (credentials go by Secret reference)."""
    s3 = settings.s3
    env = {"TAGWATCH_S3__REGION": s3.region, "TAGWATCH_S3__BUCKETS__DATASETS": s3.buckets.datasets,
           "TAGWATCH_S3__BUCKETS__CHECKPOINTS": s3.buckets.checkpoints}
    if s3.endpoint_url:
        env["TAGWATCH_S3__ENDPOINT_URL"] = s3.endpoint_url
    return env


def build_job(*, settings, run_id: str, argv: list[str], job_kind: str = "TrainJob", namespace: str = "tagwatch",
              num_nodes: int = 1, gpus_per_node: int = 1, cpu: str = "8", memory: str = "32Gi",
              image: str = GPU_IMAGE, s3_secret: str = "tagwatch-s3", runtime_name: str = "torch-distributed",
              runtime_kind: str = "ClusterTrainingRuntime", node_selector: dict[str, str] | None = None,
              tolerations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    if job_kind not in JOB_KINDS:
        raise PipelineError(f"unknown job kind {job_kind!r}", hint=f"use one of {', '.join(JOB_KINDS)}")
    if num_nodes < 1 or gpus_per_node < 0:
        raise PipelineError(f"num_nodes={num_nodes}, gpus_per_node={gpus_per_node}", hint="need >= 1 node, >= 0 GPUs")
    spec = TrainSpec(name=k8s_name(run_id), namespace=namespace, args=argv, num_nodes=num_nodes,
                     gpus_per_node=gpus_per_node, cpu=cpu, memory=memory, image=image, s3_secret=s3_secret,
                     env={**cluster_env(settings), "TAGWATCH_RUN_ID": run_id}, node_selector=node_selector or {},
                     tolerations=tolerations or [], runtime_name=runtime_name, runtime_kind=runtime_kind,
                     labels={"tagwatch.io/run-id": k8s_name(run_id, limit=63)})
    return build_trainjob(spec) if job_kind == "TrainJob" else build_pytorchjob(spec)


def cluster_pretrain(*, settings, run_id: str, argv: list[str], timeout_s: float = 6 * 3600, poll_s: float = 15.0,
                     api: Any = None, report: Callable[[str], None] = log.info, **job: Any) -> dict[str, Any]:
    """Create the job through the Kubernetes API and wait for it; ClusterJobError with the job's reason when it
    fails or times out (the job is deleted then). Returns where it ran and for how long."""
    obj = build_job(settings=settings, run_id=run_id, argv=argv, **job)
    api = api or custom_objects_api()
    create_object(api, obj)
    report(f"created {obj['kind']} {obj['metadata']['namespace']}/{obj['metadata']['name']} "
           f"({obj['spec'].get('trainer', {}).get('numNodes', job.get('num_nodes', 1))} node(s))")
    result = wait_for(api, obj, timeout_s=timeout_s, poll_s=poll_s, report=report)
    return {"kind": obj["kind"], "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
            "seconds": round(result.seconds, 1), "reason": result.outcome.reason}
