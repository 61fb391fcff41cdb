"""Run a rendered workload's container the way a kubelet would, on a machine without a container engine.

A schema-valid manifest is not a running pod. This module takes one container of a rendered object and runs its
*effective* command (the image's ENTRYPOINT + the container's ``args``, or its ``command`` + ``args``, Kubernetes'
rules) inside a ``bwrap`` sandbox shaped like the pod:

- the root filesystem read-only; only the declared ``volumeMounts`` writable (``emptyDir`` -> tmpfs), ``secret``
  and ``configMap`` volumes mounted read-only from test fixtures;
- the pod's ``runAsUser``/``runAsGroup`` (a user namespace: the uid has no passwd entry, like an image's
  arbitrary uid), every capability dropped;
- the container's environment only (``envFrom`` ConfigMaps from the rendered objects, ``secretKeyRef`` from
  fixtures, plus the image's ``ENV``), no ``HOME``;
- the host's network namespace, so the process reaches the embedded stack and its probes are reached on a
  non-loopback address, as a kubelet reaches the pod IP.

What it cannot emulate: the image's own filesystem (the sandbox sees this machine's Python environment with
tagwatch installed), cgroup limits (memory is *measured*, RSS of the process tree, not enforced), seccomp,
DNS names of Services. The pod contract tests (tests/integration/test_pod_contracts.py) use it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import psutil

from tagwatch.errors import ConfigError

_QUANTITY = re.compile(r"^([0-9.]+)([KMGTE]i?|[kmgte])?$")
_UNITS = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
          "Ti": 2**40}


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (``512Mi``, ``1Gi``, ``2G``) in bytes."""
    found = _QUANTITY.match(str(quantity))
    if not found or (found.group(2) or "") not in _UNITS:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return int(float(found.group(1)) * _UNITS[found.group(2) or ""])


@dataclass(frozen=True)
class Image:
    """What the Dockerfile gives every container: its ENTRYPOINT, CMD and ENV."""

    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]

    @classmethod
    def from_dockerfile(cls, path: Path) -> "Image":
        entrypoint: list[str] = []
        cmd: list[str] = []
        env: dict[str, str] = {}
        for line in path.read_text().splitlines():
            word, _, rest = line.strip().partition(" ")
            if word == "ENTRYPOINT":
                entrypoint = _exec_form(rest)
            elif word == "CMD":
                cmd = _exec_form(rest)
            elif word == "ENV":
                for pair in shlex.split(rest):
                    key, _, value = pair.partition("=")
                    env[key] = value
        return cls(entrypoint=entrypoint, cmd=cmd, env=env)


def _exec_form(text: str) -> list[str]:
    text = text.split("#", 1)[0].strip()
    return json.loads(text) if text.startswith("[") else ["/bin/sh", "-c", text]


def effective_command(container: dict, image: Image) -> list[str]:
    """Kubernetes' rule: ``command`` replaces the ENTRYPOINT (and drops CMD); ``args`` replaces CMD."""
    if container.get("command"):
        return [*container["command"], *container.get("args", [])]
    return [*image.entrypoint, *(container["args"] if "args" in container else image.cmd)]


@dataclass(frozen=True)
class Workload:
    """One container of a rendered object, with the pod spec around it."""

    ident: str
    pod: dict
    container: dict

    @property
    def grace_s(self) -> float:
        return float(self.pod.get("terminationGracePeriodSeconds", 30))

    @property
    def memory_limit(self) -> int | None:
        limit = ((self.container.get("resources") or {}).get("limits") or {}).get("memory")
        return memory_bytes(limit) if limit else None

    def user(self) -> tuple[int, int]:
        merged = {**(self.pod.get("securityContext") or {}), **(self.container.get("securityContext") or {})}
        if "runAsUser" not in merged:
            raise ConfigError(f"{self.ident} sets no runAsUser", hint="set securityContext.runAsUser")
        return int(merged["runAsUser"]), int(merged.get("runAsGroup", merged["runAsUser"]))

    def env(self, objects: list[dict], secrets: dict[str, dict[str, str]], image: Image) -> dict[str, str]:
        """The container's environment as the kubelet builds it (image ENV < envFrom < env)."""
        configmaps = {o["metadata"]["name"]: o.get("data") or {} for o in objects if o.get("kind") == "ConfigMap"}
        out = dict(image.env)
        for source in self.container.get("envFrom", []):
            if "configMapRef" in source:
                out.update(_lookup(configmaps, source["configMapRef"]["name"], "ConfigMap"))
            elif "secretRef" in source:
                out.update(_lookup(secrets, source["secretRef"]["name"], "Secret"))
        for var in self.container.get("env", []):
            if "value" in var:
                out[var["name"]] = str(var["value"])
                continue
            ref = var.get("valueFrom", {})
            if "secretKeyRef" in ref:
                out[var["name"]] = _lookup(secrets, ref["secretKeyRef"]["name"], "Secret")[ref["secretKeyRef"]["key"]]
            elif "configMapKeyRef" in ref:
                key = ref["configMapKeyRef"]
                out[var["name"]] = _lookup(configmaps, key["name"], "ConfigMap")[key["key"]]
        return out


def _lookup(found: dict[str, dict[str, str]], name: str, kind: str) -> dict[str, str]:
    if name not in found:
        raise ConfigError(f"the pod references {kind} {name!r}, which the test fixtures do not define",
                          hint=f"add {name!r} to the fixture {kind}s")
    return found[name]


def pod_specs(obj: dict) -> Iterator[tuple[str, dict]]:
    """(where, pod spec) for every pod template an object defines."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield "spec.template.spec", spec["template"]["spec"]
    elif kind in ("TrainingRuntime", "ClusterTrainingRuntime"):
        for job in spec.get("template", {}).get("spec", {}).get("replicatedJobs", []):
            yield f"replicatedJobs[{job.get('name')}]", job["template"]["spec"]["template"]["spec"]
    elif kind == "PyTorchJob":
        for role, replica in spec.get("pytorchReplicaSpecs", {}).items():
            yield f"pytorchReplicaSpecs.{role}", replica["template"]["spec"]


def workloads(objects: list[dict], image_repo: str) -> list[Workload]:
    """Every container of ``objects`` that runs the image ``image_repo`` (any tag)."""
    found = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        for where, pod in pod_specs(obj):
            for container in pod.get("containers", []):
                if str(container.get("image", "")).split("@")[0].rsplit(":", 1)[0] == image_repo:
                    found.append(Workload(f"{obj['kind']}/{meta.get('name')}/{where}/{container['name']}", pod,
                                          container))
    return found


def _open_for_mount(target: str) -> list[str]:
    """bwrap arguments that make a mount point at ``target`` possible on the read-only root: when its parent
    does not exist, the nearest existing ancestor becomes a tmpfs holding read-only binds of its entries (and the
    same symlinks), remounted read-only after the mount point exists. Nothing is created on this machine."""
    parent = Path(target).parent
    if parent.exists():
        return []
    ancestor = parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if ancestor == Path("/"):
        raise ConfigError(f"the sandbox cannot mount at {target}: its top-level folder does not exist here")
    args = ["--tmpfs", str(ancestor)]
    for entry in sorted(ancestor.iterdir()):
        if entry.is_symlink():
            args += ["--symlink", os.readlink(entry), str(entry)]
        elif entry.is_dir() or entry.is_file():
            args += ["--ro-bind", str(entry), str(entry)]
    return [*args, "--dir", target, "--remount-ro", str(ancestor)]


def pod_address() -> str:
    """A non-loopback IPv4 address of this machine (what a kubelet would probe), else 127.0.0.1."""
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family.name == "AF_INET" and not a.address.startswith("127."):
                return a.address
    return "127.0.0.1"


@dataclass
class Sandbox:
    """``Sandbox(workload, argv, env, secrets)``; ``start()``, probe, ``terminate()``. Logs go to ``log_path``."""

    workload: Workload
    argv: list[str]
    env: dict[str, str]
    secrets: dict[str, dict[str, str]]
    log_path: Path
    path: str = field(default_factory=lambda: f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin")
    process: subprocess.Popen | None = None
    peak_rss: int = 0

    def bwrap_argv(self, fixtures_dir: Path) -> list[str]:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise ConfigError("bwrap is not installed", hint="apt-get install bubblewrap (`make sysdeps` does)")
        uid, gid = self.workload.user()
        args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--unshare-user", "--uid", str(uid), "--gid", str(gid), "--cap-drop", "ALL",
                "--die-with-parent", "--clearenv", "--chdir", "/"]
        volumes = {v["name"]: v for v in self.workload.pod.get("volumes", [])}
        writable = []
        for mount in self.workload.container.get("volumeMounts", []):
            volume, target = volumes[mount["name"]], mount["mountPath"]
            if "emptyDir" in volume:
                args += [*_open_for_mount(target), "--tmpfs", target]
                writable.append(target)
            elif "secret" in volume or "configMap" in volume:
                source = volume.get("secret", {}).get("secretName") or volume.get("configMap", {}).get("name")
                folder = fixtures_dir / mount["name"]
                folder.mkdir(parents=True, exist_ok=True)
                data = _lookup(self.secrets, source, "Secret/ConfigMap volume")
                for item in volume.get("secret", volume.get("configMap", {})).get("items") or \
                        [{"key": k, "path": k} for k in data]:
                    (folder / item["path"]).write_text(data[item["key"]])
                args += [*_open_for_mount(target), "--ro-bind", str(folder), target]
            else:
                raise ConfigError(f"{self.workload.ident}: volume {mount['name']} has a kind the sandbox cannot mount")
        # The image's software (here: this Python environment and tagwatch's source) must stay visible where a
        # tmpfs mount would hide it (a checkout under /tmp).
        for needed in {Path(sys.prefix).resolve(), Path(__file__).resolve().parents[2]}:
            if any(str(needed).startswith(w.rstrip("/") + "/") for w in writable):
                args += ["--ro-bind", str(needed), str(needed)]
        for key, value in {**self.env, "PATH": self.path}.items():
            args += ["--setenv", key, value]
        return [*args, "--", *self.argv]

    def start(self, fixtures_dir: Path) -> None:
        argv = self.bwrap_argv(fixtures_dir)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def main(self) -> psutil.Process | None:
        """The container's main process: the first process below bwrap that is not bwrap."""
        if self.process is None or self.process.poll() is not None:
            return None
        try:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                if child.name() != "bwrap":
                    return child
        except psutil.NoSuchProcess:
            return None
        return None

    def sample_rss(self) -> int:
        """RSS of the container's process tree now (also kept as the peak)."""
        main, total = self.main(), 0
        if main is not None:
            for proc in [main, *main.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
        self.peak_rss = max(self.peak_rss, total)
        return total

    def listening(self) -> dict[int, set[str]]:
        """port -> addresses the container's processes listen on."""
        out: dict[int, set[str]] = {}
        main = self.main()
        for proc in [main, *main.children(recursive=True)] if main else []:
            try:
                for conn in proc.connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN:
                        out.setdefault(conn.laddr.port, set()).add(conn.laddr.ip)
            except psutil.NoSuchProcess:
                pass
        return out

    def port_number(self, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for declared in self.workload.container.get("ports", []):
            if declared.get("name") == port:
                return int(declared["containerPort"])
        raise ConfigError(f"{self.workload.ident}: a probe names port {port!r}, which no containerPort declares")

    def probe(self, spec: dict, host: str) -> tuple[int, str]:
        """One httpGet probe: (status, body); status 0 when nothing answered within timeoutSeconds."""
        get = spec["httpGet"]
        url = f"http://{host}:{self.port_number(get['port'])}{get.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=float(spec.get("timeoutSeconds", 1))) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")
        except OSError:
            return 0, ""

    def wait_probe(self, kind: str, host: str, budget_s: float) -> tuple[int, str, float]:
        """Poll the container's ``kind`` probe (startupProbe/readinessProbe/livenessProbe) until it answers 2xx or
        ``budget_s`` passes; (last status, last body, seconds it took)."""
        spec = self.workload.container[kind]
        start = time.monotonic()
        status, body = 0, ""
        while time.monotonic() - start < budget_s and self.process is not None and self.process.poll() is None:
            self.sample_rss()
            status, body = self.probe(spec, host)
            if 200 <= status < 400:
                break
            time.sleep(0.5)
        return status, body, time.monotonic() - start

    def wait_exit(self, timeout_s: float) -> int | None:
        """Wait for a run-to-completion container (a job's pod), sampling its RSS; its exit code, or None after
        ``timeout_s`` (then it is terminated as the kubelet would at a deadline)."""
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None and time.monotonic() < deadline:
            self.sample_rss()
            time.sleep(0.25)
        if self.process.poll() is None:
            self.terminate()
            return None
        return self.process.returncode

    def terminate(self) -> tuple[int | None, float]:
        """SIGTERM the main process (what the kubelet does); wait up to the grace period. (exit code, seconds);
        the exit code is None if it had to be killed."""
        main, start = self.main(), time.monotonic()
        if main is not None:
            main.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=self.workload.grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # the session bwrap started: ours only
            self.process.wait()
            return None, time.monotonic() - start
        return code, time.monotonic() - start

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def probe_budget_s(container: dict, kind: str) -> float:
    """How long the kubelet gives a probe before acting: initialDelay + failureThreshold x period."""
    spec = container.get(kind) or {}
    return float(spec.get("initialDelaySeconds", 0)) + \
        float(spec.get("failureThreshold", 3)) * float(spec.get("periodSeconds", 10))



def trainjob_workload(trainjob: dict, runtime: dict) -> Workload:
    """The pod Kubeflow Trainer v2 makes of ``trainjob`` on ``runtime`` (a rendered TrainingRuntime): the runtime's
    ``node`` container with the TrainJob's image, command, args and resources, and its env appended (Trainer adds
    the PET_* rendezvous variables itself; the caller supplies those)."""
    trainer = trainjob["spec"]["trainer"]
    [(where, pod)] = [(w, p) for w, p in pod_specs(runtime) if w == "replicatedJobs[node]"]
    containers = []
    for container in pod["containers"]:
        if container["name"] == "node":
            container = {**container, "image": trainer["image"], "command": trainer["command"],
                         "args": trainer.get("args", []), "env": [*container.get("env", []), *trainer.get("env", [])],
                         "resources": trainer.get("resourcesPerNode", container.get("resources"))}
        containers.append(container)
    merged = {**pod, "containers": containers}
    [node] = [c for c in containers if c["name"] == "node"]
    return Workload(f"TrainJob/{trainjob['metadata']['name']} on {runtime['kind']}/{runtime['metadata']['name']}",
                    merged, node)
