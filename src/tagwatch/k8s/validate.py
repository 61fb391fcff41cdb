"""Offline validation of rendered manifests.

- core kinds: the OpenAPI schemas shipped in ``kubernetes-validate`` (strict: unknown fields are errors);
- custom kinds: the ``openAPIV3Schema`` of the served version in the real upstream CRDs (manifests/crds/,
  see its SOURCES.md), with unknown fields reported as errors too (the API server would silently prune them,
  which is how a typo ships unnoticed);
- the house security rules for every pod template, wherever the kind keeps its containers;
- rendering itself: a kubectl too old for the kustomizations is refused by name, and every warning kustomize prints
  (deprecated fields) is a problem;
- rollout settings KServe would ignore (``tagwatch.k8s.serving.rollout_problems``).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from tagwatch.errors import ManifestValidationError

K8S_VERSION = "1.32.0"
# `labels` (used instead of the deprecated commonLabels) came with kustomize v4.1.0; kubectl 1.21 embeds kustomize
# v4.0.5, kubectl 1.22 v4.2.0 (the kubectl/kustomize table in the kubernetes-sigs/kustomize README). `patches` with a
# `path` and generator `envs` are older than that. Debian bookworm's kubernetes-client is 1.20 (kustomize v2.0.3).
MIN_KUBECTL = (1, 22)
__all__ = ["ManifestValidationError", "Problem", "check_kubectl", "kustomize", "render", "validate_objects",
           "validate_overlay"]


@dataclass(frozen=True)
class Problem:
    obj: str  # Kind/namespace/name
    rule: str  # "schema", "unknown-field", "security", "render"
    detail: str

    def __str__(self) -> str:
        return f"{self.obj}: [{self.rule}] {self.detail}"


def ident(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind', '?')}/{ns}{meta.get('name', '?')}"


# -- rendering -----------------------------------------------------------------------------------------
def _run_kubectl(kubectl: str, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([kubectl, *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError as error:
        raise ManifestValidationError(
            f"kubectl is not installed (the manifests need kubectl >= {MIN_KUBECTL[0]}.{MIN_KUBECTL[1]})",
            hint="install a kubectl from https://kubernetes.io/docs/tasks/tools/ (Debian bookworm's "
            "kubernetes-client is 1.20, too old)") from error


@lru_cache(maxsize=None)
def kubectl_version(kubectl: str = "kubectl") -> tuple[int, int] | None:
    """(major, minor) of the kubectl client, or None when it does not say (then rendering decides)."""
    out = _run_kubectl(kubectl, "version", "--client", "-o", "json")
    try:
        client = json.loads(out.stdout)["clientVersion"]
        return int(client["major"]), int(re.match(r"\d+", client["minor"]).group())  # minor may read "22+"
    except (ValueError, KeyError, TypeError, AttributeError):
        match = re.search(r"v(\d+)\.(\d+)", out.stdout)
        return (int(match.group(1)), int(match.group(2))) if match else None


def check_kubectl(kubectl: str = "kubectl") -> None:
    """Refuse, by name, a kubectl whose built-in kustomize cannot render the overlays."""
    version = kubectl_version(kubectl)
    if version is not None and version < MIN_KUBECTL:
        need = f"{MIN_KUBECTL[0]}.{MIN_KUBECTL[1]}"
        raise ManifestValidationError(
            f"{kubectl} is version {version[0]}.{version[1]}; the manifests need kubectl >= {need} (kustomize >= "
            "v4.1, for the `labels` field that replaced the deprecated commonLabels)",
            hint=f"install kubectl >= {need} from https://kubernetes.io/docs/tasks/tools/ and put it first on PATH "
            "(Debian bookworm's kubernetes-client is 1.20)")


def kustomize(overlay: Path, kubectl: str = "kubectl") -> tuple[str, list[str]]:
    """`kubectl kustomize <overlay>` -> (the YAML, the warning lines kustomize printed on stderr)."""
    check_kubectl(kubectl)
    out = _run_kubectl(kubectl, "kustomize", str(overlay))
    if out.returncode != 0:
        raise ManifestValidationError(
            f"kustomize failed for {overlay}: {' '.join(out.stderr.split())[:400]}",
            hint="fix the kustomization.yaml it names",
        )
    warnings = [line.lstrip("# ").strip() for line in out.stderr.splitlines() if line.strip()]
    return out.stdout, warnings


def render(overlay: Path, kubectl: str = "kubectl") -> list[dict]:
    """`kubectl kustomize <overlay>` -> objects (kubectl >= MIN_KUBECTL)."""
    text, _ = kustomize(overlay, kubectl)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def count_kinds(objects: list[dict]) -> dict[str, int]:
    return dict(sorted(Counter(o["kind"] for o in objects).items()))


# -- schemas -------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def load_crd_schemas(crd_dir: Path) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version in every CRD file of ``crd_dir``."""
    schemas: dict[tuple[str, str], dict] = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if version.get("served", True):
                    api = f"{spec['group']}/{version['name']}"
                    schemas[(api, spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return schemas


def validate_objects(objects: list[dict], crd_dir: Path) -> list[Problem]:
    crds = load_crd_schemas(crd_dir)
    problems: list[Problem] = []
    for obj in objects:
        key = (obj.get("apiVersion", ""), obj.get("kind", ""))
        if key in crds:
            problems.extend(_validate_custom(obj, crds[key]))
        else:
            problems.extend(_validate_core(obj))
    return problems


def _validate_core(obj: dict) -> list[Problem]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [Problem(ident(obj), "schema", f"no schema for {obj.get('apiVersion')} {obj.get('kind')}")]
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path)
        return [Problem(ident(obj), "schema", f"{path}: {error.message}")]
    return []


def _validate_custom(obj: dict, schema: dict) -> list[Problem]:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    problems = [
        Problem(ident(obj), "schema", f"{'.'.join(str(p) for p in e.path)}: {e.message}")
        for e in validator.iter_errors(obj)
    ]
    problems.extend(Problem(ident(obj), "unknown-field", p) for p in _unknown_fields(obj, schema, ""))
    return problems


def _unknown_fields(value: Any, schema: dict, path: str) -> Iterator[str]:
    """Fields the API server would prune: not in ``properties`` where the schema does not keep unknowns."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or not isinstance(value, dict | list):
        return
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                yield from _unknown_fields(item, items, f"{path}[{i}]")
        return
    if path in ("", ) and "metadata" in value:
        value = {k: v for k, v in value.items() if k != "metadata"}  # ObjectMeta is checked by the server, not here
    props = schema.get("properties")
    extra = schema.get("additionalProperties")
    for key, sub in value.items():
        here = f"{path}.{key}" if path else key
        if props is not None and key in props:
            yield from _unknown_fields(sub, props[key], here)
        elif isinstance(extra, dict):
            yield from _unknown_fields(sub, extra, here)
        elif props is not None and extra is not True:
            yield f"{here}: unknown field (the API server would drop it)"


# -- security rules ------------------------------------------------------------------------------------
def pod_containers(obj: dict) -> Iterator[tuple[str, dict | None, dict]]:
    """(where, pod securityContext or None, container) for every container the kind defines."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        pod = spec["template"]["spec"]
        for c in pod.get("initContainers", []) + pod.get("containers", []):
            yield f"spec.template.spec.containers[{c.get('name')}]", pod.get("securityContext"), c
    elif kind == "ServingRuntime":
        for c in spec.get("containers", []):
            yield f"spec.containers[{c.get('name')}]", spec.get("securityContext"), c
    elif kind == "InferenceService":
        predictor = spec.get("predictor", {})
        model = predictor.get("model") or predictor.get("triton")
        if model is not None:
            yield "spec.predictor.model", predictor.get("securityContext"), model
        for c in predictor.get("containers", []):
            yield f"spec.predictor.containers[{c.get('name')}]", predictor.get("securityContext"), c
    elif kind in ("TrainingRuntime", "ClusterTrainingRuntime"):
        for job in spec.get("template", {}).get("spec", {}).get("replicatedJobs", []):
            pod = job["template"]["spec"]["template"]["spec"]
            for c in pod.get("initContainers", []) + pod.get("containers", []):
                yield f"replicatedJobs[{job.get('name')}].containers[{c.get('name')}]", pod.get("securityContext"), c
    elif kind == "PyTorchJob":
        for role, replica in spec.get("pytorchReplicaSpecs", {}).items():
            pod = replica["template"]["spec"]
            for c in pod.get("containers", []):
                yield f"pytorchReplicaSpecs.{role}.containers[{c.get('name')}]", pod.get("securityContext"), c


def security_problems(objects: list[dict]) -> list[Problem]:
    problems: list[Problem] = []
    for obj in objects:
        for where, pod_sc, container in pod_containers(obj):
            problems.extend(Problem(ident(obj), "security", f"{where}: {p}") for p in _container_rules(pod_sc, container))
        if obj.get("kind") == "Secret" and (obj.get("data") or obj.get("stringData")):
            problems.append(Problem(ident(obj), "security", "a Secret with values in the manifests; reference it instead"))
    return problems


def _container_rules(pod_sc: dict | None, container: dict) -> Iterator[str]:
    sc = container.get("securityContext") or {}
    pod_sc = pod_sc or {}

    def effective(key: str) -> Any:
        return sc.get(key, pod_sc.get(key))

    if effective("runAsNonRoot") is not True:
        yield "runAsNonRoot must be true"
    if sc.get("readOnlyRootFilesystem") is not True:
        yield "readOnlyRootFilesystem must be true"
    if sc.get("allowPrivilegeEscalation") is not False:
        yield "allowPrivilegeEscalation must be false"
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        yield "capabilities must drop ALL"
    if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
        yield "seccompProfile must be RuntimeDefault"
    resources = container.get("resources") or {}
    for part in ("requests", "limits"):
        if not resources.get(part):
            yield f"resources.{part} must be set"
    image = container.get("image")
    if image is not None and (image.endswith(":latest") or (":" not in image.rsplit("/", 1)[-1] and "@" not in image)):
        yield f"image {image} must be pinned (a tag other than latest, or a digest)"
    for env in container.get("env", []):
        if "value" in env and any(word in env["name"].upper() for word in ("SECRET", "PASSWORD", "TOKEN")):
            yield f"env {env['name']} holds a literal secret; use valueFrom.secretKeyRef"


def rollout_problems(objects: list[dict]) -> list[Problem]:
    from tagwatch.k8s.serving import rollout_problems as problems_of

    return [Problem(ident(obj), "rollout", p) for obj in objects for p in problems_of(obj)]


def validate_overlay(overlay: Path, crd_dir: Path, kubectl: str = "kubectl") -> tuple[list[dict], list[Problem]]:
    text, warnings = kustomize(overlay, kubectl)
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    rendering = [Problem(f"overlay {overlay.name}", "render", f"kustomize warned: {w}") for w in warnings]
    return objects, rendering + validate_objects(objects, crd_dir) + security_problems(objects) + rollout_problems(objects)
