"""Create cluster objects through the Kubernetes API and wait for them: stream status changes, fail with the
object's own reason, time out cleanly (deleting a training job that ran out of time, so no GPUs stay held).

``api`` is a ``kubernetes.client.CustomObjectsApi`` (``custom_objects_api()`` builds one from the pod's service
account or a kubeconfig); the functions only use its create/get/patch/delete_namespaced_custom_object methods.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from tagwatch.errors import ClusterJobError
from tagwatch.pipeline.k8s_objects import (
    INFERENCESERVICES,
    KSERVE_GROUP,
    KSERVE_VERSION,
    PYTORCH_GROUP,
    PYTORCH_VERSION,
    PYTORCHJOBS,
    TRAINER_GROUP,
    TRAINER_VERSION,
    TRAINJOBS,
    Outcome,
    inference_service_patch,
    job_outcome,
    service_outcome,
)

log = logging.getLogger(__name__)
Report = Callable[[str], None]

_PLURALS = {"TrainJob": (TRAINER_GROUP, TRAINER_VERSION, TRAINJOBS),
            "PyTorchJob": (PYTORCH_GROUP, PYTORCH_VERSION, PYTORCHJOBS),
            "InferenceService": (KSERVE_GROUP, KSERVE_VERSION, INFERENCESERVICES)}


@dataclass(frozen=True)
class WaitResult:
    outcome: Outcome
    seconds: float
    object: dict[str, Any]


def custom_objects_api() -> Any:
    """CustomObjectsApi from the in-cluster service account, else the local kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except Exception as error:  # no kubeconfig file, or a broken one
            raise ClusterJobError("no Kubernetes API to talk to (not in a pod, no kubeconfig)",
                                  hint="run cluster mode inside Kubeflow, or use --local / mode=local") from error
    return client.CustomObjectsApi()


def _where(obj: dict[str, Any]) -> tuple[str, str, str, str, str]:
    group, version, plural = _PLURALS[obj["kind"]]
    return group, version, obj["metadata"]["namespace"], plural, obj["metadata"]["name"]


def _status_code(error: Exception) -> int | None:
    return getattr(error, "status", None)


def create_object(api: Any, obj: dict[str, Any]) -> dict[str, Any]:
    group, version, namespace, plural, name = _where(obj)
    try:
        return api.create_namespaced_custom_object(group, version, namespace, plural, obj)
    except Exception as error:
        code = _status_code(error)
        if code == 409:
            raise ClusterJobError(f"{obj['kind']} {namespace}/{name} already exists",
                                  hint="use a new run id (job names come from it), or delete the old job") from error
        if code in (401, 403):
            raise ClusterJobError(f"not allowed to create {obj['kind']} in {namespace} (HTTP {code})",
                                  hint="grant the pipeline's service account create/get/delete on "
                                  f"{plural}.{group} (manifests/base/rbac.yaml)") from error
        if code == 404:
            raise ClusterJobError(f"the cluster does not serve {group}/{version} {plural} (HTTP 404)",
                                  hint=f"install the operator that owns {obj['kind']}, or pick the other job kind"
                                  ) from error
        raise


def apply_inference_service(api: Any, obj: dict[str, Any], *, report: Report = log.info) -> str:
    """Create the InferenceService, or merge-patch an existing one to the new storageUri (tagwatch.k8s.serving)."""
    group, version, namespace, plural, name = _where(obj)
    try:
        api.get_namespaced_custom_object(group, version, namespace, plural, name)
    except Exception as error:
        if _status_code(error) != 404:
            raise
        create_object(api, obj)
        report(f"created InferenceService {namespace}/{name} -> {obj['spec']['predictor']['model']['storageUri']}")
        return "created"
    api.patch_namespaced_custom_object(group, version, namespace, plural, name, inference_service_patch(obj))
    report(f"patched InferenceService {namespace}/{name} -> {obj['spec']['predictor']['model']['storageUri']}")
    return "patched"


def retire_candidate(api: Any, *, namespace: str, service_name: str, storage_uri: str,
                     report: Report = log.info) -> str | None:
    """After a promotion: delete ``<service_name>-candidate`` when it serves the storageUri production now serves
    (it has nothing left to show and may hold a GPU). A candidate serving another version is kept and named."""
    from tagwatch.k8s.serving import CANDIDATE_ALIAS, service_for_alias

    name = service_for_alias(service_name, CANDIDATE_ALIAS)
    try:
        current = api.get_namespaced_custom_object(KSERVE_GROUP, KSERVE_VERSION, namespace, INFERENCESERVICES, name)
    except Exception as error:
        if _status_code(error) == 404:
            return None
        raise
    serving = (((current.get("spec") or {}).get("predictor") or {}).get("model") or {}).get("storageUri")
    if serving != storage_uri:
        report(f"candidate InferenceService {namespace}/{name} serves {serving}, not the promoted version: kept")
        return None
    api.delete_namespaced_custom_object(KSERVE_GROUP, KSERVE_VERSION, namespace, INFERENCESERVICES, name)
    report(f"deleted candidate InferenceService {namespace}/{name} (production now serves {storage_uri})")
    return name


def wait_for(api: Any, obj: dict[str, Any], *, timeout_s: float, poll_s: float = 10.0, report: Report = log.info,
             clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
             delete_on_timeout: bool = True) -> WaitResult:
    """Poll until the object succeeds (returned), fails (ClusterJobError with its reason) or ``timeout_s`` passes
    (ClusterJobError; a training job is deleted first so it stops holding nodes). Each status change is reported."""
    group, version, namespace, plural, name = _where(obj)
    outcome_of = service_outcome if obj["kind"] == "InferenceService" else job_outcome
    start = clock()
    last: Outcome | None = None
    current: dict[str, Any] = obj
    while True:
        try:
            current = api.get_namespaced_custom_object(group, version, namespace, plural, name)
        except Exception as error:
            if _status_code(error) == 404:
                raise ClusterJobError(f"{obj['kind']} {namespace}/{name} disappeared while waiting",
                                      hint="someone deleted it; look at the namespace's events") from error
            raise
        outcome = outcome_of(current)
        elapsed = clock() - start
        if outcome != last:
            report(f"{obj['kind']} {name}: {outcome.state} ({outcome.reason}) after {elapsed:.0f}s")
            last = outcome
        if outcome.state == "succeeded":
            return WaitResult(outcome, elapsed, current)
        if outcome.state == "failed":
            raise ClusterJobError(f"{obj['kind']} {namespace}/{name} failed: {outcome.reason}",
                                  hint=f"kubectl -n {namespace} describe {plural}.{group} {name}; and the pods' logs")
        if elapsed >= timeout_s:
            if delete_on_timeout and obj["kind"] != "InferenceService":
                try:
                    api.delete_namespaced_custom_object(group, version, namespace, plural, name)
                except Exception as error:  # the timeout is the error to report; a failed delete is logged
                    log.warning("could not delete %s %s after the timeout: %s", obj["kind"], name, error)
            raise ClusterJobError(
                f"{obj['kind']} {namespace}/{name} not done after {timeout_s:.0f}s (last: {outcome.state}, "
                f"{outcome.reason})",
                hint="raise the step's timeout, or look at why it is slow (pending pods: no GPU nodes free?)")
        sleep(min(poll_s, max(0.0, timeout_s - elapsed)) or poll_s)
