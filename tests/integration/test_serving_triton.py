"""A real Triton (PyTriton's tritonserver) serving a registered version: scores over gRPC and HTTP equal torch
and ONNX Runtime on 100 real images, dynamic batching under concurrent requests, a hot swap on alias move that
fails no request, tampered versions refused, and a clean shutdown that leaves no process behind.

gRPC calls run in a child process: tritonclient.grpc cannot share a process with kserve (PLATFORM.md), and other
test modules of the suite may import kserve.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from tagwatch.clients import s3_client
from tagwatch.errors import ServingError
from tagwatch.export.export import load_parity_images
from tagwatch.export.onnx_model import ort_session
from tagwatch.preprocess import DEFAULT_PRESET
from tagwatch.registry import ModelRegistry
from tagwatch.serving.client import ModelClient
from tagwatch.serving.config_check import compare, fetch_served_config
from tagwatch.serving.model_config import read_registered_config
from tagwatch.stack.ports import pick_free_ports
from tagwatch.tensor_contract import VERSION_OUTPUT
from tests.conftest import run_cli
from tests.support.serving_models import export_tiny, tiny_model

GRPC_PROBE = """
import sys, numpy as np
from tagwatch.serving.client import ModelClient
images = np.load(sys.argv[3])
with ModelClient(url=sys.argv[1], model_name=sys.argv[2], protocol="grpc", timeout_s=10) as client:
    out = client.infer(images)
np.savez(sys.argv[4], **out)
"""


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return load_parity_images(DEFAULT_PRESET, count=100)


@pytest.fixture(scope="module")
def served(stack_settings, tmp_path_factory, images):
    """Versions 1 (seed 0) and 2 (seed 1) registered, production -> 1, a Triton serving production."""
    name = f"test-serve-{uuid.uuid4().hex[:8]}"
    root = tmp_path_factory.mktemp("serve")
    registry = ModelRegistry(s3_client(stack_settings.s3), bucket=stack_settings.s3.buckets.models, model_name=name)
    for seed in (0, 1):
        registry.register(export_tiny(root / f"e{seed}", model_name=name, seed=seed, images=images[:8]).out_dir)
    registry.promote(1, alias="production")
    http, grpc, metrics = pick_free_ports("127.0.0.1", 3)
    state_dir = root / "state"
    env = {**os.environ, "TAGWATCH_PATHS__STATE_DIR": str(state_dir), "TAGWATCH_TRITON__MODEL_NAME": name,
           "TAGWATCH_S3__ENDPOINT_URL": stack_settings.s3.endpoint_url,
           "TAGWATCH_S3__SECRET_ACCESS_KEY": stack_settings.s3.secret_access_key.get_secret_value()}
    log_file = open(root / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tagwatch.serving.server", "--ref", "production", "--http-port", str(http),
         "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--poll-s", "0.5", "--ort-threads", "1"],
        env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    )
    info = {"name": name, "registry": registry, "proc": proc, "env": env, "state_dir": state_dir,
            "http": f"127.0.0.1:{http}", "grpc": f"127.0.0.1:{grpc}", "metrics": metrics, "log": root / "server.log"}
    try:
        with ModelClient(url=info["http"], model_name=name, protocol="http") as client:
            client.wait_ready(60)
        deadline = time.monotonic() + 30
        while not (state_dir / "triton/served.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # written right after Triton reports ready
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log_file.close()


def _torch_scores(seed: int, images: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        logits, scores = tiny_model(seed)(torch.from_numpy(images))
    return {"hashtag_logits": logits.numpy(), "category_scores": scores.numpy()}


def _max_diff(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in ("hashtag_logits", "category_scores"))


def _served(info) -> dict:
    return json.loads((info["state_dir"] / "triton/served.json").read_text())


def test_grpc_and_http_scores_match_torch_and_onnxruntime(served, images, tmp_path) -> None:
    want = _torch_scores(0, images)
    local = served["registry"].fetch("production", dest=tmp_path / "cache")
    session = ort_session(local.onnx_path)
    ort_out = dict(zip(("hashtag_logits", "category_scores"), session.run(None, {"images": images}), strict=True))
    with ModelClient(url=served["http"], model_name=served["name"], protocol="http") as client:
        via_http = client.infer(images)  # 100 images: chunked by the server's max_batch_size (32)
    np.save(tmp_path / "images.npy", images)
    probe = subprocess.run([sys.executable, "-c", GRPC_PROBE, served["grpc"], served["name"],
                            str(tmp_path / "images.npy"), str(tmp_path / "out.npz")],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr[-2000:]
    via_grpc = dict(np.load(tmp_path / "out.npz"))
    assert via_http["category_scores"].shape == (100, 3) and via_grpc["hashtag_logits"].shape == (100, 24)
    assert _max_diff(via_http, want) <= 1e-4
    assert _max_diff(via_grpc, want) <= 1e-4
    assert _max_diff(via_grpc, ort_out) <= 1e-6 and _max_diff(via_http, ort_out) <= 1e-6
    # Each row says which registry version scored it.
    assert set(via_http["model_version"].tolist()) == {1} and set(via_grpc["model_version"].tolist()) == {1}


def test_served_config_is_the_registered_config(served, tmp_path) -> None:
    """What the running Triton reports (GET /v2/models/NAME/config) agrees, field by field, with the served
    version's registered config.pbtxt: max_batch_size, input/output names, dims and data types, dynamic batching
    and its preferred sizes and max queue delay. Only the local per-row ``model_version`` output is extra."""
    version = _served(served)["version"]
    local = served["registry"].fetch(version, dest=tmp_path / "cache")
    registered = read_registered_config(local.repository, model_name=served["name"], version=version)
    reported = fetch_served_config(served["http"], served["name"])
    assert compare(reported, registered, extra_outputs=(VERSION_OUTPUT,)) == []
    # The comparison sees the fields it claims to: the registered file has them set to non-defaults.
    assert registered.max_batch_size == 32 and list(registered.dynamic_batching.preferred_batch_size) == [4, 8, 16]
    assert registered.dynamic_batching.max_queue_delay_microseconds == 5000
    assert compare(reported, registered) == ["outputs: 'model_version' served but not registered"]
    # The same check from the CLI, reading only config.pbtxt from the registry (as against a cluster's Triton).
    check = run_cli("serve", "check-config", "--url", served["http"], "--ref", str(version), env=served["env"])
    assert check.returncode == 0 and check.stderr.startswith("✓"), check.stdout + check.stderr  # rich wraps lines


def _metric(port: int, name: str, model: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name + "{") and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_concurrent_requests_are_batched(served, images) -> None:
    """64 one-image requests at once: Triton's metrics show fewer executions than inferences."""
    name, port = served["name"], served["metrics"]
    before = _metric(port, "nv_inference_count", name), _metric(port, "nv_inference_exec_count", name)
    barrier = threading.Barrier(64)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            with ModelClient(url=served["http"], model_name=name, protocol="http") as client:
                barrier.wait(10)
                out = client.infer_batch(images[i : i + 1])
                assert out["category_scores"].shape == (1, 3)
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    inferences = _metric(port, "nv_inference_count", name) - before[0]
    executions = _metric(port, "nv_inference_exec_count", name) - before[1]
    assert inferences == 64
    assert executions < inferences, f"{executions} executions for {inferences} inferences: no batching"


def _wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.05)


def test_alias_move_hot_swaps_without_failing_requests(served, images) -> None:
    name = served["name"]
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    seen: list[tuple[int, float]] = []  # (version reported, first logit) per response
    crashed: list[BaseException] = []  # an assertion inside the thread must fail the test, not just end the thread

    def hammer() -> None:
        try:
            with ModelClient(url=served["http"], model_name=name, protocol="http", retries=0) as client:
                while not stop.is_set():
                    try:
                        out = client.infer_batch(images[:4])
                        counts["ok"] += 1
                        assert len(set(out["model_version"].tolist())) == 1  # one batch, one version
                        seen.append((int(out["model_version"][0]), float(out["hashtag_logits"][0, 0])))
                    except ServingError:
                        counts["failed"] += 1
        except BaseException as error:  # noqa: BLE001 - re-raised in the test below
            crashed.append(error)

    def answered_by(version: int, at_least: int) -> bool:
        assert not crashed, crashed
        return sum(1 for v, _ in list(seen) if v == version) >= at_least

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        _wait_until(lambda: answered_by(1, 5), 30, "5 responses from version 1 before the swap")
        served["registry"].promote(2, alias="production")
        _wait_until(lambda: _served(served)["version"] == 2, 20, "the server to report version 2")
        _wait_until(lambda: answered_by(2, 5), 30, "5 responses from version 2 after the swap")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive() and not crashed, crashed
    assert _served(served)["version"] == 2 and _served(served)["swaps"] >= 1
    assert counts["failed"] == 0 and counts["ok"] > 10, counts
    # Versions only move forward, and each response's scores are those of the version it reports.
    versions = [v for v, _ in seen]
    assert versions == sorted(versions) and versions[0] == 1 and versions[-1] == 2
    expected = {v: float(_torch_scores(v - 1, images[:4])["hashtag_logits"][0, 0]) for v in (1, 2)}
    assert all(abs(logit - expected[v]) <= 1e-4 for v, logit in seen)
    with ModelClient(url=served["http"], model_name=name, protocol="http") as client:
        assert _max_diff(client.infer(images[:16]), _torch_scores(1, images[:16])) <= 1e-4


def test_tampered_version_is_refused_by_the_running_server_and_at_start(served, images, tmp_path) -> None:
    registry = served["registry"]
    serving_before = _served(served)["version"]
    export = export_tiny(tmp_path / "e2", model_name=served["name"], seed=2, images=images[:8])
    version = registry.register(export.out_dir).version
    key = f"{registry.version_prefix(version)}/repository/{served['name']}/{version}/model.onnx"
    body = bytearray(registry.s3.get_object(Bucket=registry.bucket, Key=key)["Body"].read())
    body[-100] ^= 0xFF
    registry.s3.put_object(Bucket=registry.bucket, Key=key, Body=bytes(body))
    # Someone with raw S3 access moves the alias past `promote`'s check: the server must still refuse it.
    record, etag = registry._read_alias_with_etag("production")
    forged = record.model_copy(update={"version": version, "metadata_sha256": registry.metadata(version)[1]})
    registry._swap_alias("production", forged, etag)
    time.sleep(2.5)  # several polls
    assert _served(served)["version"] == serving_before
    assert "refusing to load" in served["log"].read_text()
    with ModelClient(url=served["http"], model_name=served["name"], protocol="http") as client:
        assert client.infer(images[:2])["category_scores"].shape == (2, 3)
    # And a server asked to start on it exits with the integrity error's code, before any Triton starts.
    start = subprocess.run([sys.executable, "-m", "tagwatch.serving.server", "--ref", str(version),
                            "--http-port", "1", "--grpc-port", "2", "--metrics-port", "3"],
                           env=served["env"], capture_output=True, text=True, timeout=60)
    assert start.returncode == 12 and "refusing to load" in start.stderr


def test_sigterm_stops_triton_and_leaves_no_process(served) -> None:
    proc: subprocess.Popen = served["proc"]
    family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    assert any("tritonserver" in p.name() for p in family)
    records = list((served["state_dir"] / "triton").glob("workspace.*.path"))
    workspaces = [Path(r.read_text()) for r in records]
    assert len(workspaces) == 1 and workspaces[0].is_dir() and len(str(workspaces[0])) < 40
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    gone, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, [p.pid for p in alive]
    assert not (served["state_dir"] / "triton/served.json").exists()
    assert not workspaces[0].exists() and not records[0].exists()  # the PyTriton workspace went with it
    assert time.monotonic() - t0 < 20
