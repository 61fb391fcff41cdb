"""Deploy a registry version.

- cluster: create or patch the KServe InferenceService (Triton runtime, RawDeployment mode) that serves the alias
  with the version's immutable ``storageUri``, wait until it is Ready (``tagwatch.k8s.serving`` has the why):
  alias ``production`` -> the production InferenceService (a rolling update), then the ``-candidate`` one is
  deleted if it served that version; any other alias (``candidate``) -> ``<service>-<alias>`` next to production,
  which keeps its traffic. ``canary_traffic_percent`` is refused (KServe splits traffic in Serverless mode only).
- local: move the registry alias (``production``) to the version, then make the embedded stack's Triton serve
  it: start Triton if it is not running (``Stack.up`` starts it once ``production`` exists); if it runs, its
  alias poller hot-swaps the version; if the swap does not happen (another model name, a shape change), restart
  Triton. Waits until ``<state>/triton/served.json`` names the version.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from tagwatch.errors import PipelineError

log = logging.getLogger(__name__)
Report = Callable[[str], None]
# Set by the local runner, which points TMPDIR at a scratch dir it deletes after the run (kfp.local leaves a
# mktemp dir per task there): a Triton started by this step outlives the run, so it gets the original back.
HOST_TMPDIR_ENV = "TAGWATCH_PIPELINE_HOST_TMPDIR"


@contextmanager
def host_tmpdir() -> Iterator[None]:
    if HOST_TMPDIR_ENV not in os.environ:
        yield
        return
    saved, host = os.environ.get("TMPDIR"), os.environ[HOST_TMPDIR_ENV]
    if host:
        os.environ["TMPDIR"] = host
    else:
        os.environ.pop("TMPDIR", None)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved


def deploy_cluster(*, settings, version: int, alias: str = "production", namespace: str = "tagwatch",
                   service_name: str = "tagwatch-moderation", runtime: str = "tagwatch-triton",
                   canary_traffic_percent: int | None = None, gpus: int = 0, timeout_s: float = 900,
                   poll_s: float = 10.0, api: Any = None, report: Report = log.info) -> dict[str, Any]:
    from tagwatch.k8s.serving import DEPLOYMENT_MODE, check_canary
    from tagwatch.registry import open_registry

    check_canary(DEPLOYMENT_MODE, canary_traffic_percent)
    metadata, _ = open_registry(settings).resolve(version)
    return rollout_cluster(api, storage_uri=metadata.storage_uri, version=metadata.version, alias=alias,
                           namespace=namespace, service_name=service_name, runtime=runtime,
                           canary_traffic_percent=canary_traffic_percent, gpus=gpus, timeout_s=timeout_s,
                           poll_s=poll_s, report=report)


def rollout_cluster(api: Any, *, storage_uri: str, version: int, alias: str = "production",
                    namespace: str = "tagwatch", service_name: str = "tagwatch-moderation",
                    runtime: str = "tagwatch-triton", canary_traffic_percent: int | None = None, gpus: int = 0,
                    timeout_s: float = 900, poll_s: float = 10.0, report: Report = log.info) -> dict[str, Any]:
    """Serve ``storage_uri`` from the InferenceService of ``alias`` and wait until Ready; promoting to production
    retires a candidate that served the same version."""
    from tagwatch.k8s.serving import PRODUCTION_ALIAS, service_for_alias
    from tagwatch.pipeline.cluster import apply_inference_service, custom_objects_api, retire_candidate, wait_for
    from tagwatch.pipeline.k8s_objects import build_inference_service

    name = service_for_alias(service_name, alias)
    obj = build_inference_service(name=name, namespace=namespace, storage_uri=storage_uri, runtime=runtime,
                                  canary_traffic_percent=canary_traffic_percent, gpus=gpus,
                                  registry_version=version, alias=alias)
    api = api or custom_objects_api()
    action = apply_inference_service(api, obj, report=report)
    result = wait_for(api, obj, timeout_s=timeout_s, poll_s=poll_s, report=report, delete_on_timeout=False)
    retired = None
    if alias == PRODUCTION_ALIAS:
        retired = retire_candidate(api, namespace=namespace, service_name=service_name, storage_uri=storage_uri,
                                   report=report)
    return {"mode": "cluster", "action": action, "alias": alias, "service": name, "version": version,
            "storage_uri": storage_uri, "url": result.outcome.reason, "retired_candidate": retired,
            "seconds": round(result.seconds, 1)}


def served_record(settings) -> dict[str, Any] | None:
    from tagwatch.serving.workspace import served_file

    path = served_file(settings)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _triton_running(settings) -> bool:
    from tagwatch.stack.process import is_alive
    from tagwatch.stack.state import read_state

    state = read_state(settings.paths.stack_file)
    record = state.services.get("triton") if state else None
    return bool(record and is_alive(record.process))


def stop_local_triton(settings) -> str:
    """Stop only the stack's Triton (S3 and Kafka keep running)."""
    from tagwatch.stack import Stack
    from tagwatch.stack.state import read_state, write_state
    from tagwatch.stack.triton import TritonService

    stack = Stack(settings)
    with stack._lock():  # the stack's own lock: no concurrent up/down sees a half-updated state file
        state = read_state(settings.paths.stack_file)
        if state is None or "triton" not in state.services:
            return "not running"
        outcome = stack._stop_one(TritonService(settings, state.ports), state)
        write_state(settings.paths.stack_file, state)
    return outcome


def _wait_served(settings, *, version: int, model_name: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = served_record(settings)
        if record and record.get("model_name") == model_name and record.get("version") == version:
            return True
        time.sleep(0.5)
    return False


def deploy_local(*, settings, version: int, alias: str = "production", swap_timeout_s: float = 20.0,
                 report: Report = log.info) -> dict[str, Any]:
    from tagwatch.registry import open_registry
    from tagwatch.stack import Stack

    registry = open_registry(settings)
    record = registry.promote(version, alias=alias, reason="pipeline deploy")
    previous = record.previous[0] if record.previous else None
    report(f"{alias} -> version {version}" + (f" (was {previous})" if previous else ""))
    if alias != "production":
        return {"mode": "local", "alias": alias, "version": version, "previous": previous, "triton": "not affected"}
    model_name = settings.triton.model_name
    action = "started"
    if _triton_running(settings):
        if _wait_served(settings, version=version, model_name=model_name, timeout_s=swap_timeout_s):
            action = "hot-swapped"
        else:
            report(f"Triton did not swap to version {version} in {swap_timeout_s:.0f}s; restarting it")
            stop_local_triton(settings)
            action = "restarted"
    if action != "hot-swapped":
        with host_tmpdir():
            result = Stack(settings).up(report=report)
        if "triton" in result.skipped:
            raise PipelineError(f"local Triton did not start: {result.skipped['triton']}",
                                hint="`tagwatch stack logs triton` shows why")
        if not _wait_served(settings, version=version, model_name=model_name, timeout_s=swap_timeout_s):
            raise PipelineError(f"local Triton does not serve version {version}",
                                hint="`tagwatch stack status` and `tagwatch stack logs triton`")
    served = served_record(settings) or {}
    return {"mode": "local", "alias": alias, "version": version, "previous": previous, "triton": action,
            "served": {k: served.get(k) for k in ("model_name", "version", "ports", "pid")}}
