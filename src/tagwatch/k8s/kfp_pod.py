"""The pod a Kubeflow Pipelines v2 backend makes of one task of a compiled pipeline, as a sandbox Workload.

From the compiled IR (``pipelines/compiled/<name>.yaml``): the executor's image, ``command`` (kfp's ``sh -ec``
program that writes the component's inline source to a temp file and runs ``kfp.dsl.executor_main``) and ``args``
with ``{{$}}`` replaced by an executor input; from its kfp-kubernetes platform spec: the env taken from the
ConfigMap and Secret keys, and the pod's securityContext. The pod gets one writable volume, an emptyDir at /tmp
(stricter than a KFP pod, whose root filesystem is writable: the image must work with /tmp alone).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tagwatch.k8s.sandbox import Workload


def _ir(path: Path) -> tuple[dict, dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    return docs[0], platform


def executors(path: Path) -> list[str]:
    return sorted(_ir(path)[0]["deploymentSpec"]["executors"])


def component_workload(path: Path, executor: str, executor_input: dict[str, Any]) -> Workload:
    """``executor`` (e.g. ``exec-pretrain``) of the compiled pipeline at ``path``, run with ``executor_input``."""
    spec, platform = _ir(path)
    container = spec["deploymentSpec"]["executors"][executor]["container"]
    extra = platform.get(executor, {})
    env: list[dict[str, Any]] = []
    for source in extra.get("configMapAsEnv", []):
        env += [{"name": k["envVar"], "valueFrom": {"configMapKeyRef": {"name": source["configMapName"],
                                                                         "key": k["configMapKey"]}}}
                for k in source["keyToEnv"]]
    for source in extra.get("secretAsEnv", []):
        env += [{"name": k["envVar"], "valueFrom": {"secretKeyRef": {"name": source["secretName"],
                                                                      "key": k["secretKey"]}}}
                for k in source["keyToEnv"]]
    resources = container.get("resources", {})
    limits = {k: resources[f"resource{k.title()}Limit"] for k in ("cpu", "memory") if f"resource{k.title()}Limit" in resources}
    security = {k: (int(v) if k in ("runAsUser", "runAsGroup") else v)
                for k, v in (extra.get("securityContext") or {}).items()}
    main = {"name": "main", "image": container["image"], "command": list(container["command"]),
            "args": [json.dumps(executor_input) if a == "{{$}}" else a for a in container.get("args", [])],
            "env": env, "resources": {"limits": limits}, "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}
    pod = {"securityContext": security, "volumes": [{"name": "tmp", "emptyDir": {}}], "containers": [main]}
    return Workload(f"{path.stem}/{executor}", pod, main)
