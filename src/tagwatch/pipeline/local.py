"""Run a tagwatch pipeline on this machine with ``kfp.local.SubprocessRunner(use_venv=False)`` on the embedded stack.

Stable API (the demo calls it)::

    from tagwatch.pipeline.local import run_pretrain_and_deploy, LocalRunResult
    result = run_pretrain_and_deploy(settings, quick=True, pipeline_root=None, on_event=None, **params)

- ``settings``: the process's Settings; the embedded stack must be up (``tagwatch stack up``) unless
  ``settings.s3.endpoint_url`` points at another S3. Every ``TAGWATCH_*`` value of it (secret included) is put in
  the environment of the kfp.local subprocesses, nowhere else.
- ``quick``: True = the synthetic source (240 posts), two demo categories on the shapes (``QUICK_CATEGORIES``),
  a 64 px tiny CNN, 30 pretrain + 30 transfer steps (about 1-2 min on 2 cores); False = 600 openclipart posts,
  the real moderation categories, 128 px, 2 torchrun ranks, 200 + 100 steps.
- ``params``: any parameter of ``pretrain_and_deploy`` (e.g. ``pretrain_steps=50``, ``limit=400``);
  ``mode`` is always "local".
- ``on_event(event: dict)``: called from a watcher thread for each step event
  ``{"step": "pretrain", "event": "start"|"done"|"failed", "t": unix time, ...}``.
- ``pipeline_root``: where kfp.local writes the artifacts (default ``<state_dir>/pipelines``).

``LocalRunResult`` fields: ``pipeline``, ``run_name`` (the kfp pipeline job name, also in the registry
version's lineage), ``pipeline_root``, ``run_dir``, ``model_name``, ``version`` (None when the gate refused),
``alias`` (the alias promoted, or None), ``gate`` (``GateDecision.to_dict()``: ``promote``, ``reason``, ``checks``,
``review_rate``, ``review_budget``, ``recall_difference``, ``candidate_map``, ``production_map``,
``production_version``), ``metrics`` (holdout metrics.json: ``figures`` with CIs, ``moderation_map``,
``review_rate``, and the older ``category_map``, ``chance_category_map``, ``per_category`` with ``ap``,
``review_or_remove_precision/recall``, ``remove_precision/recall``, confusion counts), ``artifacts``
(name -> local path: ``report_html``, ``pr_curves_png``, ``confusion_png``, ``metrics_json``, ``evaluation_json``,
``export_dir``, ``transfer_dir``, ``pretrain_dir``, ``deployment_md``), ``task_seconds`` (step -> wall seconds) and
``wall_seconds``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager, redirect_stdout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from tagwatch.errors import PipelineError
from tagwatch.pipeline.events import EVENTS_ENV, read_events, step_seconds
from tagwatch.settings import settings_env

QUICK_CATEGORIES = """\
# Demo categories for the synthetic source (its images are coloured shapes, so no real harm is in them):
# a learnable stand-in that exercises transfer, calibration, evaluation and the gate end to end.
version: "quick-1"
other: other
categories:
  pointy:
    description: stars, triangles and crosses (a stand-in category)
    hashtags: [star, triangle, cross]
  round:
    description: circles and rings (a stand-in category)
    hashtags: [circle, ring]
"""
QUICK_PARAMS: dict[str, Any] = {
    "source": "synthetic", "limit": 240, "dataset_name": "pipeline-quick", "shard_samples": 60, "top_k": 50,
    "min_count": 2, "categories_yaml": QUICK_CATEGORIES, "pretrain_steps": 30, "arch": "tiny_cnn", "width": 8,
    "image_size": 64, "batch_size": 16, "workers": 0, "nproc": 1, "transfer_steps": 30,
}
FULL_PARAMS: dict[str, Any] = {
    "source": "openclipart", "limit": 600, "dataset_name": "pipeline-openclipart", "shard_samples": 200,
    "top_k": 200, "min_count": 3, "pretrain_steps": 200, "arch": "tiny_cnn", "width": 16, "image_size": 128,
    "batch_size": 32, "workers": 1, "nproc": 2, "transfer_steps": 100,
}


@dataclass
class LocalRunResult:
    pipeline: str
    run_name: str
    pipeline_root: str
    run_dir: str
    model_name: str
    version: int | None
    alias: str | None
    gate: dict[str, Any]
    metrics: dict[str, Any]
    artifacts: dict[str, str] = field(default_factory=dict)
    task_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    scratch_dir: str = ""  # kfp.local's per-task temp dirs lived here; removed when the run ends

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_stack(settings) -> None:
    """The run needs S3: the embedded stack of ``settings.paths.state_dir``, or the endpoint settings name."""
    import socket
    from urllib.parse import urlparse

    from tagwatch.stack import Stack, with_stack_endpoints

    running = Stack(settings).is_running()
    endpoint = with_stack_endpoints(settings).s3.endpoint_url if running else settings.s3.endpoint_url
    hint = (f"start the embedded stack with `tagwatch stack up` (state dir {settings.paths.state_dir}), "
            "then run the pipeline again")
    if not endpoint:
        raise PipelineError(f"the embedded stack is not running (state dir {settings.paths.state_dir})", hint=hint)
    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=3).close()
    except OSError as error:
        raise PipelineError(f"S3 at {endpoint} cannot be reached ({type(error).__name__})", hint=hint) from error


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in this process's environment for the block, then restored: kfp.local's SubprocessRunner takes
    no ``env``, its task processes only inherit ours (the one place settings reach children this way)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _python_path() -> str:
    """This tagwatch's src dir first, so kfp.local's subprocesses import the same code as this process."""
    import tagwatch

    here = str(Path(tagwatch.__file__).resolve().parents[1])
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != here]
    return os.pathsep.join([here, *rest])


def import_pipeline(name: str):
    """The pipeline function ``name`` from the packaged ``tagwatch.pipeline.definitions``."""
    import importlib

    from tagwatch.pipeline.definitions import PIPELINES

    if name not in PIPELINES:
        raise PipelineError(f"no pipeline {name!r}", hint=f"pipelines: {', '.join(PIPELINES)}")
    return getattr(importlib.import_module(f"tagwatch.pipeline.definitions.{name}"), name)


class _Watcher(threading.Thread):
    def __init__(self, path: Path, callback: Callable[[dict], None]) -> None:
        super().__init__(daemon=True)
        self.path, self.callback, self.seen, self.stop = path, callback, 0, threading.Event()

    def poll(self) -> None:
        events = read_events(self.path)
        for event in events[self.seen:]:
            self.callback(event)
        self.seen = len(events)

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.poll()


def run_local_pipeline(settings, *, pipeline: str, params: dict[str, Any], pipeline_root: Path | None = None,
                       on_event: Callable[[dict], None] | None = None) -> LocalRunResult:
    """Run the packaged pipeline ``<pipeline>`` with kfp.local here; returns what it made (see module doc)."""
    from kfp import local

    check_stack(settings)
    function = import_pipeline(pipeline)
    root = Path(pipeline_root or settings.paths.state_dir / "pipelines").resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in root.iterdir()}
    events_file = root / f".events-{os.getpid()}-{time.time_ns()}.jsonl"
    # kfp.local's per-task mktemp dirs land here and go with it; short, because steps' multiprocessing puts
    # unix sockets in TMPDIR (AF_UNIX paths must stay under 108 bytes).
    scratch = Path(tempfile.mkdtemp(prefix="twkfp-"))
    workspace = scratch / "workspace"
    workspace.mkdir()
    from tagwatch.pipeline.deploy import HOST_TMPDIR_ENV

    env = {**settings_env(settings), EVENTS_ENV: str(events_file), "PYTHONPATH": _python_path(),
           "GLOO_SOCKET_IFNAME": "lo", "TMPDIR": str(scratch), HOST_TMPDIR_ENV: os.environ.get("TMPDIR", "")}
    watcher = _Watcher(events_file, on_event) if on_event else None
    t0 = time.monotonic()
    # kfp.local logs every task (and its streamed output) to stdout: keep stdout for the caller's own output.
    with _environment(env), warnings.catch_warnings(), redirect_stdout(sys.stderr):
        # Expected here, said once in docs/pipelines.md: resources/accelerators are cluster-only, and the image
        # is not run (use_venv=False runs the component in this Python).
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
                   workspace_root=str(workspace), raise_on_error=True)
        if watcher:
            watcher.start()
        try:
            function(**{**params, "mode": "local"})
        except Exception as error:
            failed = [e for e in read_events(events_file) if e["event"] == "failed"]
            where = f" in step {failed[-1]['step']}: {failed[-1].get('error')}" if failed else f": {error}"
            raise PipelineError(f"local pipeline {pipeline} failed{where}",
                                hint=f"each task's log is above; artifacts so far are under {root}") from error
        finally:
            if watcher:
                watcher.stop.set()
                watcher.join()
                watcher.poll()
            shutil.rmtree(scratch, ignore_errors=True)
    wall = time.monotonic() - t0
    new_dirs = sorted((p for p in root.iterdir() if p.is_dir() and p.name not in before),
                      key=lambda p: p.stat().st_mtime)
    if not new_dirs:
        raise PipelineError(f"kfp.local wrote no run directory under {root}", hint="is pipeline_root writable?")
    run_dir = new_dirs[-1]
    events = read_events(events_file)
    events_file.unlink(missing_ok=True)
    result = collect_result(settings, pipeline=pipeline, root=root, run_dir=run_dir, seconds=step_seconds(events),
                            wall=wall)
    result.scratch_dir = str(scratch)
    return result


def _find(run_dir: Path, task: str, output: str) -> Path | None:
    """kfp.local's layout: <pipeline_root>/<run>/<task>/<output> (task names may get a -N suffix)."""
    for candidate in sorted(run_dir.glob(f"{task}*/{output}")):
        return candidate
    return None


def collect_result(settings, *, pipeline: str, root: Path, run_dir: Path, seconds: dict[str, float],
                   wall: float) -> LocalRunResult:
    evaluation_dir = _find(run_dir, "evaluate", "evaluation")
    if evaluation_dir is None or not (evaluation_dir / "evaluation.json").exists():
        raise PipelineError(f"the run in {run_dir} has no evaluation", hint="look at the evaluate task's log")
    evaluation = json.loads((evaluation_dir / "evaluation.json").read_text())
    registered_file = _find(run_dir, "register-model", "registered")
    registered = json.loads(registered_file.read_text()) if registered_file and registered_file.is_file() else None
    deployment = _find(run_dir, "deploy-model", "deployment")
    alias = None
    if registered and deployment and deployment.exists():
        from tagwatch.registry import open_registry

        aliases = open_registry(settings).aliases()
        named = sorted(name for name, record in aliases.items() if record.version == registered["version"])
        alias = "production" if "production" in named else (named[0] if named else None)
    artifacts = {"report_html": evaluation_dir / "report.html", "pr_curves_png": evaluation_dir / "pr_curves.png",
                 "confusion_png": evaluation_dir / "confusion.png", "metrics_json": evaluation_dir / "metrics.json",
                 "evaluation_json": evaluation_dir / "evaluation.json",
                 "export_dir": _find(run_dir, "export-model", "onnx_model"),
                 "transfer_dir": _find(run_dir, "transfer", "model"),
                 "pretrain_dir": _find(run_dir, "pretrain", "checkpoint"),
                 "deployment_md": deployment, "registered_json": registered_file}
    return LocalRunResult(
        pipeline=pipeline, run_name=run_dir.name, pipeline_root=str(root), run_dir=str(run_dir),
        model_name=settings.triton.model_name, version=registered["version"] if registered else None, alias=alias,
        gate=evaluation["gate"], metrics=evaluation["metrics"],
        artifacts={k: str(v) for k, v in artifacts.items() if v is not None and Path(v).exists()},
        task_seconds=seconds, wall_seconds=round(wall, 1))


def run_pretrain_and_deploy(settings, *, quick: bool = True, pipeline_root: Path | None = None,
                            on_event: Callable[[dict], None] | None = None, **params: Any) -> LocalRunResult:
    """The whole pretrain -> deploy DAG on this machine (see the module docstring for the contract)."""
    base = QUICK_PARAMS if quick else FULL_PARAMS
    return run_local_pipeline(settings, pipeline="pretrain_and_deploy", params={**base, **params},
                              pipeline_root=pipeline_root, on_event=on_event)
