"""The demo's training stage behind one function: data build -> pretrain -> transfer (+ holdout evaluation and
calibration) -> ONNX export -> register -> promote ``production``. The same steps the ``pretrain_and_deploy``
pipeline runs; the rest of the demo only sees the ``TrainingOutcome`` this returns, never how it was made.

A rerun with the same dataset version and the same training config reuses the registered version (found by the
``demo.config_hash`` it was registered with) instead of training again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tagwatch.demo.progress import DemoProgress
from tagwatch.errors import TrainingError
from tagwatch.settings import Settings

log = logging.getLogger(__name__)
OUTCOME_FILE = "outcome.json"
DATASET_NAME = "hashtags"


@dataclass(frozen=True)
class TrainingPlan:
    """What the training stage runs; hashed (with the dataset version) to decide whether a model can be reused."""

    image_size: int
    width: int
    nproc: int
    pretrain_steps: int
    transfer_steps: int
    batch_size: int = 32
    transfer_mode: str = "finetune"
    workers: int = 1

    @classmethod
    def for_mode(cls, *, quick: bool) -> "TrainingPlan":
        if quick:  # a tiny CNN (width 8) at 128 px, the consumers' preset: about a minute of training on 2 cores
            return cls(image_size=128, width=8, nproc=1, pretrain_steps=150, transfer_steps=120)
        return cls(image_size=128, width=16, nproc=2, pretrain_steps=700, transfer_steps=300)

    def pretrain_argv(self, *, dataset: str, run_id: str, out: Path) -> list[str]:
        return ["--dataset", dataset, "--arch", "tiny_cnn", "--width", str(self.width), "--image-size",
                str(self.image_size), "--steps", str(self.pretrain_steps), "--batch-size", str(self.batch_size),
                "--warmup-steps", str(max(1, self.pretrain_steps // 20)), "--workers", str(self.workers),
                "--run-id", run_id, "--output-dir", str(out), "--log-every", "5", "--calibrate-steps", "0",
                "--no-progress"]

    def transfer_argv(self, *, dataset: str, init: str, run_id: str, out: Path) -> list[str]:
        return ["--dataset", dataset, "--init", init, "--mode", self.transfer_mode, "--steps", str(self.transfer_steps),
                "--batch-size", str(self.batch_size), "--workers", str(self.workers), "--run-id", run_id,
                "--output-dir", str(out), "--log-every", "5", "--target-recall", "0.8", "--no-progress"]


@dataclass
class TrainingOutcome:
    """What the demo needs from training, however it ran (in-process steps today, the kfp pipeline later)."""

    model_name: str
    model_version: int
    dataset: str  # NAME/VERSION in the datasets bucket: its holdout split is what the demo publishes
    categories: list[str]
    eval_metrics: dict[str, dict[str, Any]]  # per category: ap, prevalence, positives, precision/recall at policy
    plots: dict[str, str] = field(default_factory=dict)  # training_curves, zipf, pr_curves, confusion -> PNG path
    step_seconds: dict[str, float] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)  # what was not redone, in words
    config_hash: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainingOutcome":
        return cls(**data)


def config_hash(plan: TrainingPlan, dataset: str) -> str:
    return hashlib.sha256(json.dumps({"plan": asdict(plan), "dataset": dataset}, sort_keys=True).encode()).hexdigest()[:16]


def run_training(settings: Settings, *, quick: bool, progress: DemoProgress) -> TrainingOutcome:
    """Build the dataset, train, evaluate, export, register and promote; or reuse a matching registered model."""
    from tagwatch.registry import open_registry

    plan = TrainingPlan.for_mode(quick=quick)
    seconds: dict[str, float] = {}
    reused: list[str] = []
    t0 = time.monotonic()
    dataset, up_to_date = build_dataset(settings, progress=progress)
    seconds["data build"] = time.monotonic() - t0
    if up_to_date:
        reused.append(f"dataset {dataset} (same posts and build config)")
    digest = config_hash(plan, dataset)
    work = settings.paths.state_dir / "demo" / "training" / digest
    registry = open_registry(settings)
    previous = _reusable(work, registry, digest)
    if previous is not None:
        production = registry.read_alias("production")
        if production is None or production.version != previous.model_version:
            registry.promote(previous.model_version, alias="production", reason="tagwatch demo (reused)")
        previous.reused = reused + [f"model {previous.model_name} v{previous.model_version} (same dataset and config "
                                    f"{digest}; delete {work} or pass --fresh to retrain)"]
        previous.step_seconds = {**seconds}
        return previous
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    pretrain_id, transfer_id = f"demo-pretrain-{digest}", f"demo-transfer-{digest}"
    t = time.monotonic()
    _run_trainer("pretrain", plan.pretrain_argv(dataset=dataset, run_id=pretrain_id, out=work / "pretrain"),
                 nproc=plan.nproc, total=plan.pretrain_steps, out=work / "pretrain", progress=progress, log_file=work / "pretrain.log")
    seconds["pretrain"] = time.monotonic() - t
    t = time.monotonic()
    init = f"s3://{settings.s3.buckets.checkpoints}/{pretrain_id}"
    _run_trainer("transfer", plan.transfer_argv(dataset=dataset, init=init, run_id=transfer_id, out=work / "transfer"),
                 nproc=1, total=plan.transfer_steps, out=work / "transfer", progress=progress, log_file=work / "transfer.log")
    seconds["transfer + evaluate"] = time.monotonic() - t
    summary = json.loads((work / "transfer" / "summary.json").read_text())
    holdout = summary["holdout"]
    t = time.monotonic()
    progress.say("exporting to ONNX (parity-checked against torch)")
    export_dir = work / "export"
    export_checkpoint(settings, checkpoint=summary["checkpoint"], out_dir=export_dir, policy=work / "transfer" / "policy.json")
    seconds["export"] = time.monotonic() - t
    t = time.monotonic()
    metrics = {"holdout": holdout, "demo": {"config_hash": digest, "plan": asdict(plan), "dataset": dataset}}
    metadata = registry.register(export_dir, metrics=metrics)
    registry.promote(metadata.version, alias="production", reason="tagwatch demo")
    seconds["register + promote"] = time.monotonic() - t
    plots = _plots(settings, work=work, dataset=dataset)
    outcome = TrainingOutcome(
        model_name=metadata.model_name, model_version=metadata.version, dataset=dataset,
        categories=list(holdout["per_category"]), eval_metrics=holdout["per_category"], plots=plots,
        step_seconds=seconds, reused=reused, config_hash=digest)
    (work / OUTCOME_FILE).write_text(json.dumps(outcome.to_json(), indent=1))
    return outcome


def build_dataset(settings: Settings, *, progress: DemoProgress) -> tuple[str, bool]:
    """``tagwatch data build`` on every post in S3; returns (NAME/VERSION, whether it was already built)."""
    from tagwatch.clients import s3_client
    from tagwatch.data.build import BuildConfig, build_dataset as build
    from tagwatch.data.wordnet import load_wordnet

    def on_progress(stage: str, done: int, total: int) -> None:
        progress.update(f"build: {stage}", completed=done, total=total)

    report = build(client=s3_client(settings.s3), posts_bucket=settings.s3.buckets.posts,
                   datasets_bucket=settings.s3.buckets.datasets, config=BuildConfig(name=DATASET_NAME),
                   wordnet=load_wordnet(), progress=on_progress)
    return f"{DATASET_NAME}/{report.version}", bool(report.up_to_date)


def export_checkpoint(settings: Settings, *, checkpoint: str, out_dir: Path, policy: Path) -> None:
    """What `tagwatch model export` does, called as a library."""
    from tagwatch.export import export_model
    from tagwatch.export.checkpoint import build_model_from_checkpoint, dataset_names, lineage_of, names_of, preset_of, read_checkpoint
    from tagwatch.export.export import load_parity_images

    ckpt = read_checkpoint(checkpoint, s3=settings.s3)
    config = ckpt["model_config"]
    preset = preset_of(ckpt)
    vocab, cats = dataset_names(ckpt, settings=settings)
    export_model(
        build_model_from_checkpoint(ckpt), out_dir=out_dir, model_name=settings.triton.model_name,
        labels=names_of(ckpt, "labels", override=None, expected=int(config["num_labels"]), fallback=vocab),
        categories=names_of(ckpt, "categories", override=None, expected=int(config["num_categories"]), fallback=cats),
        preset=preset, parity_images=load_parity_images(preset), lineage=lineage_of(ckpt, uri=checkpoint),
        policy=json.loads(policy.read_text()), max_batch_size=64, preferred_batch_sizes=(8, 16, 32))


def _run_trainer(kind: str, argv: list[str], *, nproc: int, total: int, out: Path, progress: DemoProgress,
                 log_file: Path) -> None:
    """Run the trainer in child processes (torchrun when nproc > 1); the bar follows its metrics.jsonl."""
    if nproc > 1:
        from tagwatch.train.cli import free_port

        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
                   "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "tagwatch.train", kind, *argv]
    else:
        command = [sys.executable, "-m", "tagwatch.train", kind, *argv]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    metrics_file = out / "metrics.jsonl"
    label = f"{kind} ({total} steps)"
    progress.update(label, completed=0, total=total)
    with open(log_file, "wb") as sink:
        child = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            while child.poll() is None:
                time.sleep(0.5)
                step, loss = _last_step(metrics_file)
                progress.update(label, completed=step, total=total, detail=f"loss {loss:.3f}" if loss is not None else "")
        except BaseException:
            child.terminate()
            child.wait(timeout=30)
            raise
    if child.returncode != 0:
        tail = log_file.read_text(errors="replace").strip().splitlines()[-3:]
        raise TrainingError(f"{kind} exited {child.returncode}: {' | '.join(tail)[:400]}", hint=f"read {log_file}")
    progress.update(label, completed=total, total=total)


def _last_step(metrics_file: Path) -> tuple[int, float | None]:
    if not metrics_file.exists():
        return 0, None
    lines = metrics_file.read_text().strip().splitlines()
    if not lines:
        return 0, None
    try:
        row = json.loads(lines[-1])
    except ValueError:  # a line being written
        return 0, None
    return int(row.get("step", 0)), row.get("loss")


def _reusable(work: Path, registry, digest: str) -> TrainingOutcome | None:
    """The outcome of an earlier run with this config hash, if its registered version is still there."""
    path = work / OUTCOME_FILE
    if not path.exists():
        return None
    try:
        outcome = TrainingOutcome.from_json(json.loads(path.read_text()))
        metadata, _ = registry.resolve(outcome.model_version)
    except Exception as error:  # missing/tampered version or an old outcome file: train again
        log.info("not reusing %s: %s", path, type(error).__name__)
        return None
    recorded = (metadata.metrics or {}).get("demo", {}).get("config_hash")
    if recorded != digest or not all(Path(p).exists() for p in outcome.plots.values()):
        return None
    return outcome


def _plots(settings: Settings, *, work: Path, dataset: str) -> dict[str, str]:
    from tagwatch.demo.plots import plot_training_curves, plot_zipf_of_dataset

    plots = {"training_curves": str(work / "training_curves.png"), "zipf": str(work / "zipf.png"),
             "pr_curves": str(work / "transfer" / "holdout" / "pr_curves.png"),
             "confusion": str(work / "transfer" / "holdout" / "confusion.png")}
    plot_training_curves({"pretrain (hashtags)": work / "pretrain" / "metrics.jsonl",
                          "transfer (categories)": work / "transfer" / "metrics.jsonl"}, path=Path(plots["training_curves"]))
    plot_zipf_of_dataset(settings, dataset=dataset, path=Path(plots["zipf"]))
    return plots
