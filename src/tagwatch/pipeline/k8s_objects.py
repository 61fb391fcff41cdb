"""The Kubernetes objects the pipeline creates: a Kubeflow Trainer v2 ``TrainJob`` (or a v1 ``PyTorchJob`` for
clusters on the older Training Operator) for pretraining, and a KServe ``InferenceService`` on the Triton runtime
for deployment. Plain dicts, built from explicit arguments; tests validate them against the real CRDs
(``tagwatch.k8s.validate``) and the house security rules.

Reading their status is here too (``job_outcome``, ``service_outcome``): a pure function of the object, so the
waiting loop in ``tagwatch.pipeline.cluster`` is tested without a cluster.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from tagwatch.k8s.serving import DEPLOYMENT_MODE, DEPLOYMENT_MODE_ANNOTATION, check_canary
from tagwatch.pipeline.image import IMAGE

TRAINER_GROUP, TRAINER_VERSION, TRAINJOBS = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
PYTORCH_GROUP, PYTORCH_VERSION, PYTORCHJOBS = "kubeflow.org", "v1", "pytorchjobs"
KSERVE_GROUP, KSERVE_VERSION, INFERENCESERVICES = "serving.kserve.io", "v1beta1", "inferenceservices"
GPU_RESOURCE = "nvidia.com/gpu"
# torchrun reads PET_* (set by Trainer's torch runtime and by the Training Operator) for nodes, ranks, master.
TRAIN_COMMAND = ["torchrun", "-m", "tagwatch.train", "pretrain"]
LABELS = {"app.kubernetes.io/part-of": "tagwatch"}


def k8s_name(*parts: str, limit: int = 52) -> str:
    """A DNS-1035 label from ``parts`` (lowercase, '-', starts with a letter), shortened with a hash when long."""
    text = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    text = text if text[:1].isalpha() else f"tw-{text}"
    if len(text) > limit:
        text = f"{text[: limit - 9].rstrip('-')}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return text


@dataclass(frozen=True)
class TrainSpec:
    """What a distributed pretraining job needs, independent of the API that runs it."""

    name: str
    namespace: str
    args: list[str]
    num_nodes: int = 1
    gpus_per_node: int = 1
    cpu: str = "4"
    memory: str = "16Gi"
    image: str = IMAGE
    s3_secret: str = "tagwatch-s3"
    env: dict[str, str] = field(default_factory=dict)  # plain, non-secret values (endpoint, buckets, run id)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    runtime_name: str = "torch-distributed"
    runtime_kind: str = "ClusterTrainingRuntime"
    service_account: str = "tagwatch-pipeline"
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def procs_per_node(self) -> int:
        return max(1, self.gpus_per_node)

    def resources(self) -> dict[str, dict[str, str]]:
        amounts = {"cpu": self.cpu, "memory": self.memory}
        if self.gpus_per_node:
            amounts[GPU_RESOURCE] = str(self.gpus_per_node)
        return {"requests": dict(amounts), "limits": dict(amounts)}

    def env_vars(self) -> list[dict[str, Any]]:
        """Plain values, then the S3 credentials by reference to the Secret (never a literal in the object)."""
        env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(self.env.items())]
        for name, key in (("TAGWATCH_S3__ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
                          ("TAGWATCH_S3__SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")):
            env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": self.s3_secret, "key": key}}})
        return env

    def all_labels(self) -> dict[str, str]:
        return {**LABELS, "app.kubernetes.io/component": "training", **self.labels}


def build_trainjob(spec: TrainSpec) -> dict[str, Any]:
    """A Trainer v2 TrainJob on ``runtimeRef`` (default: the stock ``torch-distributed`` ClusterTrainingRuntime)."""
    trainjob: dict[str, Any] = {
        "apiVersion": f"{TRAINER_GROUP}/{TRAINER_VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": spec.all_labels()},
        "spec": {
            "runtimeRef": {"apiGroup": TRAINER_GROUP, "kind": spec.runtime_kind, "name": spec.runtime_name},
            "trainer": {
                "image": spec.image,
                "command": list(TRAIN_COMMAND),
                "args": list(spec.args),
                "numNodes": spec.num_nodes,
                "numProcPerNode": spec.procs_per_node,
                "resourcesPerNode": spec.resources(),
                "env": spec.env_vars(),
            },
        },
    }
    if spec.node_selector or spec.tolerations:
        pod: dict[str, Any] = {}
        if spec.node_selector:
            pod["nodeSelector"] = dict(spec.node_selector)
        if spec.tolerations:
            pod["tolerations"] = [dict(t) for t in spec.tolerations]
        # The stock torch runtimes name their one replicated job "node".
        trainjob["spec"]["runtimePatches"] = [{"manager": "tagwatch.io/pipeline", "trainingRuntimeSpec": {
            "template": {"spec": {"replicatedJobs": [{"name": "node", "template": {"spec": {
                "template": {"spec": pod}}}}]}}}}]
    return trainjob


def build_pytorchjob(spec: TrainSpec) -> dict[str, Any]:
    """The same run as a v1 PyTorchJob (Master + Workers, torchrun with ``nprocPerNode``)."""

    def replica(count: int) -> dict[str, Any]:
        pod: dict[str, Any] = {
            "serviceAccountName": spec.service_account,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "pytorch", "image": spec.image, "command": [*TRAIN_COMMAND, *spec.args],
                "env": spec.env_vars(), "resources": spec.resources(),
                "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "dshm", "mountPath": "/dev/shm"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "dshm", "emptyDir": {"medium": "Memory"}}],
        }
        if spec.node_selector:
            pod["nodeSelector"] = dict(spec.node_selector)
        if spec.tolerations:
            pod["tolerations"] = [dict(t) for t in spec.tolerations]
        return {"replicas": count, "restartPolicy": "OnFailure", "template": {"spec": pod}}

    replicas = {"Master": replica(1)}
    if spec.num_nodes > 1:
        replicas["Worker"] = replica(spec.num_nodes - 1)
    return {
        "apiVersion": f"{PYTORCH_GROUP}/{PYTORCH_VERSION}",
        "kind": "PyTorchJob",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": spec.all_labels()},
        "spec": {"nprocPerNode": str(spec.procs_per_node), "pytorchReplicaSpecs": replicas},
    }


def build_inference_service(*, name: str, namespace: str, storage_uri: str, runtime: str = "tagwatch-triton",
                            canary_traffic_percent: int | None = None, gpus: int = 0, cpu: str = "1",
                            memory: str = "2Gi", service_account: str = "tagwatch-serving",
                            registry_version: int | None = None, alias: str | None = None,
                            deployment_mode: str = DEPLOYMENT_MODE) -> dict[str, Any]:
    """A KServe InferenceService serving one immutable registry version on the Triton ServingRuntime, in the same
    deployment mode as manifests/base/serving/inferenceservice.yaml (``tagwatch.k8s.serving.DEPLOYMENT_MODE``).
    ``canary_traffic_percent`` only where KServe splits traffic (Serverless/Knative mode): ConfigError otherwise."""
    check_canary(deployment_mode, canary_traffic_percent)
    amounts = {"cpu": cpu, "memory": memory, **({GPU_RESOURCE: str(gpus)} if gpus else {})}
    predictor: dict[str, Any] = {
        "serviceAccountName": service_account,
        "minReplicas": 1,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "model": {
            "modelFormat": {"name": "onnx"},
            "runtime": runtime,
            "protocolVersion": "v2",
            "storageUri": storage_uri,
            "resources": {"requests": dict(amounts), "limits": dict(amounts)},
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "readOnlyRootFilesystem": True,
                                "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"}},
        },
    }
    if canary_traffic_percent is not None:
        predictor["canaryTrafficPercent"] = canary_traffic_percent
    labels = {**LABELS, "app.kubernetes.io/component": "serving"}
    if registry_version is not None:
        labels["tagwatch.io/registry-version"] = str(registry_version)
    if alias is not None:
        labels["tagwatch.io/registry-alias"] = alias
    return {
        "apiVersion": f"{KSERVE_GROUP}/{KSERVE_VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "annotations": {DEPLOYMENT_MODE_ANNOTATION: deployment_mode}},
        "spec": {"predictor": predictor},
    }


def inference_service_patch(desired: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that rolls an existing InferenceService to ``desired``'s model (in RawDeployment mode a new
    storageUri is a rolling update of its Deployment). ``canaryTrafficPercent`` is always written: a value only in
    Serverless mode, else null, which removes a canary left over from an older manifest."""
    predictor = desired["spec"]["predictor"]
    patch_predictor: dict[str, Any] = {"model": {"storageUri": predictor["model"]["storageUri"]},
                                       "canaryTrafficPercent": predictor.get("canaryTrafficPercent")}
    return {"metadata": {"labels": desired["metadata"]["labels"]}, "spec": {"predictor": patch_predictor}}


# -- status ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    state: str  # "pending", "running", "succeeded", "failed"
    reason: str = ""

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed")


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type", ""): c for c in ((obj.get("status") or {}).get("conditions") or [])}


def _why(condition: dict[str, Any]) -> str:
    return ": ".join(p for p in (condition.get("reason"), condition.get("message")) if p) or "no reason given"


def job_outcome(obj: dict[str, Any]) -> Outcome:
    """TrainJob (``Complete``/``Failed``) or PyTorchJob (``Succeeded``/``Failed``) status -> Outcome."""
    conditions = _conditions(obj)
    failed = conditions.get("Failed")
    if failed and failed.get("status") == "True":
        return Outcome("failed", _why(failed))
    for done in ("Complete", "Succeeded"):
        if (conditions.get(done) or {}).get("status") == "True":
            return Outcome("succeeded", _why(conditions[done]))
    suspended = conditions.get("Suspended")
    if suspended and suspended.get("status") == "True":
        return Outcome("pending", f"suspended ({_why(suspended)})")
    running = conditions.get("Running") or conditions.get("Created")
    return Outcome("running", _why(running)) if running else Outcome("pending", "no status yet")


def service_outcome(obj: dict[str, Any]) -> Outcome:
    """InferenceService -> succeeded when Ready for the current generation; never 'failed' by itself (KServe
    retries revisions), so the caller's timeout decides, reporting the last reason."""
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    ready = _conditions(obj).get("Ready")
    if generation is not None and observed is not None and observed < generation:
        return Outcome("running", f"generation {generation} not observed yet (at {observed})")
    if ready and ready.get("status") == "True":
        return Outcome("succeeded", status.get("url", ""))
    return Outcome("running", _why(ready) if ready else "no Ready condition yet")
