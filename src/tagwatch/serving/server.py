"""`python -m tagwatch.serving.server`: a real Triton (PyTriton's bundled tritonserver) serving a registry alias.

Loopback only (HTTP, gRPC, metrics on 127.0.0.1). The model is bound with the version's registered config.pbtxt
(parsed with Triton's proto; ``model_config``): its tensors, max batch size and dynamic batching; the bound
callable runs ONNX Runtime on the version's model.onnx (verified by sha256 before loading; a tampered version is
refused and, at start, the server exits 12). When serving an alias it polls the alias and hot-swaps to the new
version without dropping requests (see ``runner``). ``<state_dir>/triton/served.json`` says what is served.

Locally the Triton model version is always 1 (the served registry version can change under it by a swap), so
the model has one extra output, ``model_version`` (int64 per row): the registry version that scored that row.
In a cluster KServe loads the registry layout itself, whose Triton version directory is the registry version;
``tagwatch.serving.client`` returns ``model_version`` per row in both cases.

Beside it the server binds the shadow model (``settings.triton.shadow_name``, default ``<model_name>-shadow``)
serving alias ``settings.triton.shadow_alias`` (``shadow``): until that alias exists it serves the same version as
the main model, and its own watcher swaps it when the alias moves (same served-config rule). ``tagwatch shadow run``
points the alias at a candidate and replays posts through it (docs/shadow.md).

And, when ``settings.triton.nsfw_model_name`` (``open-nsfw``) has a `production` version in the registry
(`tagwatch model import-nsfw`), the nudity model under that name: fetched and verified like any version, served
with its own registered config.pbtxt (NHWC input), fixed for the server's life (a new version needs a restart).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import sysconfig
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tagwatch.errors import TagwatchError
from tagwatch.registry import ModelRegistry, open_registry
from tagwatch.registry.open_nsfw import open_nsfw_registry
from tagwatch.serving.model_config import TensorSpec, pytriton_binding
from tagwatch.serving.runner import OnnxRunner, SwappableModel, describe
from tagwatch.serving.workspace import make_workspace, remove_workspace, served_file, triton_dir
from tagwatch.settings import Settings, load_settings
from tagwatch.tensor_contract import VERSION_OUTPUT

log = logging.getLogger("tagwatch.serving.server")
TRITON_MODEL_VERSION = 1


def prepare_environment() -> None:
    """PyTriton's python backend loads the wrong libpython here unless LIBDIR leads LD_LIBRARY_PATH (PLATFORM.md).

    tritonserver and its python-backend stub are children of this process, so setting it here reaches them.
    """
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if libdir and not current.startswith(libdir):
        os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{current}" if current else libdir


class AliasWatcher(threading.Thread):
    """Polls the alias; on a new version: fetch (verified), load, warm, swap. Failures keep the old version."""

    def __init__(self, registry: ModelRegistry, *, ref: str, model: SwappableModel, cache: Path, threads: int | None,
                 poll_s: float, on_swap, fallback: str | None = None) -> None:
        super().__init__(name=f"alias-watcher-{ref}", daemon=True)
        self.registry, self.ref, self.model, self.cache = registry, ref, model, cache
        self.fallback = fallback  # served while ``ref`` (an alias) does not exist
        self.threads, self.poll_s, self.on_swap = threads, poll_s, on_swap
        self.stop_event = threading.Event()
        self.refused: set[str] = set()

    def run(self) -> None:
        while not self.stop_event.wait(self.poll_s):
            try:
                self.check_once()
            except Exception as error:  # S3 down for a moment, a bad version: keep serving what we have
                log.warning("alias check failed (still serving version %d): %s",
                            self.model.runner.model.metadata.version, error)

    def check_once(self) -> bool:
        metadata, digest = self.registry.resolve(serving_ref(self.registry, self.ref, self.fallback))
        if digest == self.model.runner.model.metadata_sha256 or digest in self.refused:
            return False
        log.info("alias %s moved to version %d; loading it", self.ref, metadata.version)
        try:
            local = self.registry.fetch(metadata.version, dest=self.cache)
            runner = OnnxRunner(local, threads=self.threads)
            old = self.model.swap(runner)
        except TagwatchError as error:
            self.refused.add(digest)
            log.error("not serving version %d: %s", metadata.version, error.message)
            return False
        log.info("now serving version %d (was %d); loaded in %.2fs", metadata.version, old.model.metadata.version,
                 runner.load_s)
        self.on_swap(runner)
        return True


def serving_ref(registry: ModelRegistry, ref: str, fallback: str | None) -> str:
    """``ref``, or ``fallback`` while ``ref`` is an alias that does not exist (the shadow model before any run)."""
    if fallback is None or str(ref).isdigit() or ref == "latest" or registry.read_alias(ref) is not None:
        return ref
    return fallback


def _infer_function(model: SwappableModel):
    from pytriton.decorators import batch

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        return model(inputs[model.runner.input.name])

    return infer


def run_server(settings: Settings, *, ref: str, http_port: int, grpc_port: int, metrics_port: int,
               poll_s: float = 5.0, ort_threads: int | None = None, stop_event: threading.Event | None = None) -> None:
    """Serve ``ref`` (alias, version or ``latest``), and the shadow alias beside it, until ``stop_event`` is set or
    SIGTERM/SIGINT."""
    prepare_environment()
    from pytriton.triton import Triton, TritonConfig

    stop_event = stop_event or threading.Event()
    registry = open_registry(settings)
    workdir = triton_dir(settings)
    cache = workdir / "models"
    t0 = time.monotonic()
    local = registry.fetch(ref, dest=cache)
    runner = OnnxRunner(local, threads=ort_threads)
    model = SwappableModel(runner)
    fetch_load_s = time.monotonic() - t0
    shadow_alias = settings.triton.shadow_alias
    shadow_local = registry.fetch(serving_ref(registry, shadow_alias, ref), dest=cache)
    shadow = SwappableModel(runner if shadow_local.metadata_sha256 == local.metadata_sha256
                            else OnnxRunner(shadow_local, threads=ort_threads))

    nudity = _nudity_model(settings, cache, ort_threads)
    served_lock = threading.Lock()  # two watchers may swap at once

    def write_served(_current: OnnxRunner | None = None) -> None:
        with served_lock:
            _write_served()

    def _write_served() -> None:
        current = model.runner
        record = {**describe(current.model, ref=ref), "since": datetime.now(timezone.utc).isoformat(),
                  "swaps": model.swaps, "pid": os.getpid(), "load_s": round(current.load_s, 3),
                  "start_fetch_verify_load_s": round(fetch_load_s, 3),
                  "ports": {"http": http_port, "grpc": grpc_port, "metrics": metrics_port},
                  "shadow": {**describe(shadow.runner.model, ref=shadow_alias), "swaps": shadow.swaps,
                             "triton_model": settings.triton.shadow_name}}
        if nudity is not None:
            record["nudity"] = {**describe(nudity.runner.model, ref="production"),
                                "triton_model": settings.triton.nsfw_model_name}
        tmp = served_file(settings).with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, served_file(settings))

    host = settings.triton.host
    config = TritonConfig(
        http_address=host, http_port=http_port, grpc_address=host, grpc_port=grpc_port,
        metrics_address=host, metrics_port=metrics_port, allow_metrics=True, exit_on_error=True,
        log_verbose=0,
    )
    workspace = make_workspace(settings)
    triton = Triton(config=config, workspace=workspace)
    watchers: list[AliasWatcher] = []
    try:
        # Everything Triton is told about a model comes from the version's registered config.pbtxt.
        bindings = [(runner.served.name, model), (settings.triton.shadow_name, shadow)]
        if nudity is not None:
            bindings.append((settings.triton.nsfw_model_name, nudity))
        for name, bound in bindings:
            triton.bind(
                model_name=name,
                infer_func=_infer_function(bound),
                model_version=TRITON_MODEL_VERSION,
                strict=True,
                **pytriton_binding(bound.runner.served,
                                   extra_outputs=(TensorSpec(VERSION_OUTPUT, "TYPE_INT64", (1,)),)),
            )
        triton.run()
        write_served()
        log.info("serving %s version %d (%s) on http %s:%d grpc %s:%d metrics %s:%d; fetch+load %.2fs, ready %.2fs",
                 settings.triton.model_name, local.metadata.version, ref, host, http_port, host, grpc_port, host,
                 metrics_port, fetch_load_s, time.monotonic() - t0)
        if not str(ref).isdigit():
            watchers.append(AliasWatcher(registry, ref=ref, model=model, cache=cache, threads=ort_threads,
                                         poll_s=poll_s, on_swap=write_served))
        watchers.append(AliasWatcher(registry, ref=shadow_alias, fallback=ref, model=shadow, cache=cache,
                                     threads=ort_threads, poll_s=poll_s, on_swap=write_served))
        for watcher in watchers:
            watcher.start()
        while not stop_event.wait(1.0):
            if not triton.is_alive():
                log.error("tritonserver exited; stopping")
                break
    finally:
        for watcher in watchers:
            watcher.stop_event.set()
        triton.stop()
        remove_workspace(settings, pid=os.getpid())
        served_file(settings).unlink(missing_ok=True)
        log.info("stopped")


def _nudity_model(settings: Settings, cache: Path, threads: int | None) -> SwappableModel | None:
    """The nudity model's `production` version, fetched (verified) and loaded; None when none is registered."""
    registry = open_nsfw_registry(settings)
    if registry is None or registry.read_alias("production") is None:
        return None
    local = registry.fetch("production", dest=cache / registry.model_name)
    log.info("nudity model %s version %d", registry.model_name, local.metadata.version)
    return SwappableModel(OnnxRunner(local, threads=threads))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tagwatch.serving.server", description=__doc__.split("\n")[0])
    parser.add_argument("--ref", default="production", help="alias, version number or `latest`")
    parser.add_argument("--http-port", type=int)
    parser.add_argument("--grpc-port", type=int)
    parser.add_argument("--metrics-port", type=int)
    parser.add_argument("--poll-s", type=float, default=5.0, help="seconds between alias checks")
    parser.add_argument("--ort-threads", type=int, default=None,
                        help="ONNX Runtime intra-op threads (default settings.triton.ort_threads)")
    args = parser.parse_args(argv)
    from tagwatch.stack.state import with_stack_endpoints

    settings = load_settings()
    # The stack passes its S3 endpoint in the env; run by hand, the embedded stack's is used (resolved here, at
    # the process's edge). Only S3: the Triton ports in settings stay the ones this server is told to bind.
    settings = settings.model_copy(update={"s3": with_stack_endpoints(settings).s3})
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("pytriton", "tritonclient", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    triton_dir(settings).mkdir(parents=True, exist_ok=True)
    try:
        run_server(settings, ref=args.ref, http_port=args.http_port or settings.triton.http_port,
                   grpc_port=args.grpc_port or settings.triton.grpc_port,
                   metrics_port=args.metrics_port or settings.triton.metrics_port, poll_s=args.poll_s,
                   ort_threads=args.ort_threads or settings.triton.ort_threads, stop_event=stop)
    except TagwatchError as error:
        log.error("%s%s", error.message, f" (hint: {error.hint})" if error.hint else "")
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
