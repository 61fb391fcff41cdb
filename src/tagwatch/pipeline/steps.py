"""One function per pipeline step: what each component (``tagwatch.pipeline.components``) calls, and nothing else.

Each takes explicit arguments, builds the process's Settings from the environment at the edge (the component's
pod gets them from the ``tagwatch-params`` ConfigMap and the S3 Secret; a local run from the parent process), calls
the library, and returns a JSON-able dict that the component turns into KFP artifacts. Cluster vs local is a
``mode`` argument ("local" | "cluster").
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from tagwatch.errors import PipelineError
from tagwatch.pipeline.events import timed_step
from tagwatch.pipeline.k8s_objects import k8s_name

log = logging.getLogger(__name__)
MODES = ("local", "cluster")


def step_settings():
    """The frozen Settings of this step's process (env + config file), with the embedded stack's endpoints."""
    from tagwatch.settings import load_settings
    from tagwatch.stack import with_stack_endpoints

    return with_stack_endpoints(load_settings())


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise PipelineError(f"unknown mode {mode!r}", hint="mode is 'local' (kfp.local, torchrun, local Triton) or "
                            "'cluster' (TrainJob, KServe)")
    return mode


def run_id_for(kind: str, pipeline_job_id: str) -> str:
    return k8s_name(kind, pipeline_job_id.replace("_", "-")[:36], limit=48)


# -- data ---------------------------------------------------------------------------------------------
@timed_step("ingest")
def ingest_posts(*, source: str, limit: int, seed: int, workers: int = 0, root: str = "") -> dict[str, Any]:
    """Render and store the posts of ``source`` (one name or several, comma-separated) in the posts bucket
    (resumable); returns the ingest report (with several sources: their sums and ``sources``, one report each).
    ``root``: the source's directory ('' = its default root); with several sources, a directory holding one folder
    per source (a source without its folder there is read from its default root)."""
    from tagwatch.clients import s3_client
    from tagwatch.data.ingest import ingest_source
    from tagwatch.data.sources import parse_sources

    settings = step_settings()
    names = parse_sources(source)
    client = s3_client(settings.s3)
    reports = {}
    for name in names:
        where = Path(root) if root and len(names) == 1 else (Path(root) / name if root else None)
        if where is not None and len(names) > 1 and not where.is_dir():
            where = None
        reports[name] = ingest_source(client=client, bucket=settings.s3.buckets.posts, source=name,
                                      author_key=settings.privacy.author_key,
                                      limit=limit or None, seed=seed, workers=workers or None, root=where).to_json()
    bucket = settings.s3.buckets.posts
    if len(names) == 1:
        return {**reports[names[0]], "posts_uri": f"s3://{bucket}/posts/{names[0]}/"}
    totals = {key: sum(r[key] for r in reports.values()) for key in ("listed", "already_there", "ingested",
                                                                     "known_bad", "posts_total")}
    return {"source": ",".join(names), **totals, "sources": reports, "posts_uri": f"s3://{bucket}/posts/"}


@timed_step("plan-dataset")
def plan_dataset(*, name: str, sources: list[str], shard_samples: int, top_k: int, min_count: int, seed: int,
                 categories_yaml: str = "", review_labels: bool = False, map_tasks: int = 2) -> dict[str, Any]:
    """The map/reduce build's plan (``tagwatch.data.mapreduce``): read the posts once, derive the version, cut the
    posts into ``map_tasks`` ranges. Returns {plan_uri, ranges, dataset, up_to_date}. ``categories_yaml``: inline
    YAML text of the moderation categories ('' = the package's). ``review_labels``: fold reviewers' outcomes.
    Returns {plan_uri, ranges, tasks (``<plan_uri>#<range>``, what the pipeline fans out over), dataset, ...}."""
    from tagwatch.data.build_request import BuildRequest, plan_requested

    request = BuildRequest(name=name, sources=tuple(sources), shard_samples=shard_samples, top_k=top_k,
                           min_count=min_count, seed=seed, categories_yaml=categories_yaml,
                           review_labels=review_labels, map_tasks=map_tasks)
    settings = step_settings()
    return plan_requested(settings.s3, request, consent_unknown=settings.privacy.consent_unknown)


def _build_client():
    from tagwatch.clients import s3_client

    return s3_client(step_settings().s3)


@timed_step("hash-posts")
def hash_posts(*, item: str) -> str:
    """Map task ``item`` (``<plan_uri>#<range>``): fetch, check and PDQ-hash its range's images. Returns the exchange
    key it wrote."""
    from tagwatch.data.mapreduce import map_range, parse_task_item

    plan_uri, index = parse_task_item(item)
    return map_range(client=_build_client(), plan_uri=plan_uri, index=index)


@timed_step("reduce-dataset")
def reduce_dataset(*, tasks: list[str]) -> str:
    """The reduce of the plan ``tasks`` name: review labels, PDQ dedup, vocabulary, labels, the shard plan. Returns
    the key it wrote."""
    from tagwatch.data.mapreduce import parse_task_item, reduce_build
    from tagwatch.data.wordnet import load_wordnet

    plan_uri, _ = parse_task_item(tasks[0])
    return reduce_build(client=_build_client(), plan_uri=plan_uri, wordnet=load_wordnet())


@timed_step("write-shards")
def write_shards(*, item: str) -> str:
    """Shard writer ``item`` (``<plan_uri>#<writer>``): its shards, fetched, tarred and uploaded. Returns the key it
    wrote."""
    from tagwatch.data.mapreduce import parse_task_item, write_shards_of

    plan_uri, index = parse_task_item(item)
    return write_shards_of(client=_build_client(), plan_uri=plan_uri, index=index)


@timed_step("build-dataset")
def build_dataset(*, tasks: list[str]) -> dict[str, Any]:
    """Seal the build the plan ``tasks`` name: vocabulary.json, dedup.json, post_index.tsv, manifest.json,
    latest.json. Returns the report."""
    from dataclasses import asdict

    from tagwatch.data.mapreduce import finalize_build, parse_task_item

    plan_uri, _ = parse_task_item(tasks[0])
    report = finalize_build(client=_build_client(), plan_uri=plan_uri)
    return {**asdict(report), "dataset": f"{report.name}/{report.version}"}


# -- training -----------------------------------------------------------------------------------------
@timed_step("pretrain")
def pretrain(*, mode: str, dataset: str, run_id: str, steps: int, arch: str = "tiny_cnn", width: int = 16,
             image_size: int = 128, batch_size: int = 32, workers: int = 1, nproc: int = 1, pretrained: bool = False,
             solver: str = "sgd", output_dir: Path | None = None,
             cluster: dict[str, Any] | None = None) -> dict[str, Any]:
    """Hashtag pretraining (``tagwatch.train.pretrain.run_pretrain``). Local: in this process, or on ``nproc``
    torchrun ranks (gloo on CPU). Cluster: a TrainJob (or PyTorchJob, ``cluster["job_kind"]``) created and waited
    for (``cluster_pretrain``). Returns the run's summary (``run_id``, ``checkpoint`` =
    s3://<checkpoints>/<run_id>, val mAP ...)."""
    from dataclasses import replace

    from tagwatch.train.pretrain import PretrainConfig

    check_mode(mode)
    settings = step_settings()
    checkpoint = f"s3://{settings.s3.buckets.checkpoints}/{run_id}"
    config = PretrainConfig(dataset=dataset, run_id=run_id, steps=steps, arch=arch, width=width, image_size=image_size,
                            batch_size=batch_size, workers=workers, pretrained=pretrained, solver=solver,
                            progress=False)
    if mode == "cluster":
        from tagwatch.pipeline.training import cluster_pretrain

        job = cluster_pretrain(settings=settings, run_id=run_id, argv=config.to_argv(), **(cluster or {}))
        summary = read_checkpoint_json(settings, checkpoint, "metrics.json")
        return {**summary, "checkpoint": checkpoint, "job": job}
    out = Path(output_dir) if output_dir else settings.paths.state_dir / "runs" / run_id
    config = replace(config, output_dir=str(out))
    if nproc > 1:
        from tagwatch.settings import child_env
        from tagwatch.train.cli import launch_torchrun

        code = launch_torchrun("pretrain", config.to_argv(), nproc=nproc, env=child_env(settings))
        if code:
            raise PipelineError(f"torchrun pretraining exited with {code}", hint="its log is above this line")
        summary = json.loads((out / "summary.json").read_text())
    else:
        from tagwatch.train.pretrain import run_pretrain

        summary = run_pretrain(config, settings=settings)
    return {**summary, "checkpoint": checkpoint, "output_dir": str(out)}


def read_checkpoint_json(settings, root: str, name: str) -> dict[str, Any]:
    """A JSON file the trainer wrote next to its checkpoints (``metrics.json``: the run's summary)."""
    from tagwatch.clients import s3_client

    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    try:
        raw = s3_client(settings.s3).get_object(Bucket=bucket, Key=f"{prefix}/{name}")["Body"].read()
    except Exception as error:
        raise PipelineError(f"{root}/{name} cannot be read ({type(error).__name__})",
                            hint="did the training job finish and reach S3? look at its pods' logs") from error
    return json.loads(raw)


@timed_step("transfer")
def transfer(*, dataset: str, init: str, run_id: str, mode: str = "finetune", steps: int = 100,
             batch_size: int = 32, workers: int = 1, review_budget: float = 0.05, remove_precision: float = 0.95,
             min_calibration_positives: int = 10, probe_solver: str = "sgd",
             output_dir: Path | None = None) -> dict[str, Any]:
    """Probe or fine-tune on the moderation categories, calibrate the policy under its constraints (review budget,
    auto-remove precision CI lower bound, monitor mode below ``min_calibration_positives``), report on the
    holdout (``tagwatch.train.transfer.run_transfer``). ``probe_solver`` matters with ``mode="probe"`` only."""
    from tagwatch.train.transfer import TransferConfig, run_transfer

    settings = step_settings()
    out = Path(output_dir) if output_dir else settings.paths.state_dir / "runs" / run_id
    config = TransferConfig(dataset=dataset, init=init, mode=mode, run_id=run_id, steps=steps, batch_size=batch_size,
                            workers=workers, review_budget=review_budget, remove_precision=remove_precision,
                            min_calibration_positives=min_calibration_positives, probe_solver=probe_solver,
                            output_dir=str(out), progress=False)
    return run_transfer(config, settings=settings)


# -- export / evaluate / register --------------------------------------------------------------------
@timed_step("export")
def export_model(*, checkpoint: str, out_dir: Path, policy: dict | None,
                 pipeline_lineage: dict[str, Any] | None = None, max_batch_size: int = 64) -> dict[str, Any]:
    """ONNX export + parity check + Triton layout (what ``tagwatch model export`` does), with the pipeline's run
    in the lineage so the registry version records which Kubeflow run made it."""
    from tagwatch.export import export_model as export
    from tagwatch.export.checkpoint import (build_model_from_checkpoint, dataset_names, lineage_of, names_of,
                                            preset_of, read_checkpoint)
    from tagwatch.export.export import load_parity_images

    settings = step_settings()
    ckpt = read_checkpoint(checkpoint, s3=settings.s3)
    config = ckpt["model_config"]
    preset = preset_of(ckpt)
    vocab, cats = dataset_names(ckpt, settings=settings)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    result = export(
        build_model_from_checkpoint(ckpt), out_dir=out_dir, model_name=settings.triton.model_name,
        labels=names_of(ckpt, "labels", override=None, expected=int(config["num_labels"]), fallback=vocab),
        categories=names_of(ckpt, "categories", override=None, expected=int(config["num_categories"]), fallback=cats),
        preset=preset, parity_images=load_parity_images(preset),
        lineage={**lineage_of(ckpt, uri=checkpoint), **(pipeline_lineage or {})}, policy=policy,
        max_batch_size=max_batch_size, preferred_batch_sizes=tuple(s for s in (8, 16, 32) if s <= max_batch_size))
    return {"out_dir": str(out_dir), "onnx_bytes": result.info["onnx"]["bytes"], "parity_max_abs_diff":
            result.parity.worst(), "lineage": result.info["lineage"]}


@timed_step("evaluate")
def evaluate(*, export_dir: Path, dataset: str, out_dir: Path, min_improvement: float = 0.0,
             production_alias: str = "production") -> dict[str, Any]:
    """Score the exported candidate and production on the holdout with ONNX Runtime, each with its own policy;
    write metrics.json, pr_curves.png, confusion.png, report.html, evaluation.json in ``out_dir``; decide the gate
    (``tagwatch.pipeline.gate``: review budget, recall at the budget vs production; ``min_improvement`` > 0 adds
    a moderation-mAP margin)."""
    from tagwatch.pipeline.evaluation import evaluate_on_holdout
    from tagwatch.registry import open_registry
    from tagwatch.train.runtime import open_dataset

    settings = step_settings()
    return evaluate_on_holdout(handle=open_dataset(dataset, settings=settings), export_dir=export_dir,
                               out_dir=out_dir, registry=open_registry(settings), production_alias=production_alias,
                               min_improvement=min_improvement)


@timed_step("register")
def register(*, export_dir: Path, metrics: dict[str, Any], alias: str = "candidate",
             extra_metrics_json: str = "") -> dict[str, Any]:
    """Upload the export as the next immutable registry version (metrics recorded) and point ``alias`` at it.
    ``extra_metrics_json``: a JSON object merged into the recorded metrics (top-level keys; e.g. the demo's
    ``{"demo": {"config_hash": ...}}``, which it later finds the version by)."""
    from tagwatch.registry import open_registry

    if extra_metrics_json.strip():
        try:
            extra = json.loads(extra_metrics_json)
        except ValueError as error:
            raise PipelineError(f"extra_metrics_json is not JSON ({error})", hint='pass a JSON object, e.g. {"demo": {}}') from error
        if not isinstance(extra, dict):
            raise PipelineError("extra_metrics_json is not a JSON object", hint='pass a JSON object, e.g. {"demo": {}}')
        metrics = {**metrics, **extra}

    registry = open_registry(step_settings())
    metadata = registry.register(export_dir, metrics=metrics, alias=alias or None)
    return {"model_name": metadata.model_name, "version": metadata.version, "storage_uri": metadata.storage_uri,
            "alias": alias, "lineage": metadata.lineage}


@timed_step("deploy")
def deploy(*, mode: str, version: int, alias: str = "production", namespace: str = "tagwatch",
           service_name: str = "tagwatch-moderation", runtime: str = "tagwatch-triton",
           canary_traffic_percent: int | None = None, gpus: int = 0, timeout_s: float = 900) -> dict[str, Any]:
    """Cluster: move ``alias`` (the record of what is meant to serve), then create/patch the InferenceService that
    serves it (``production``: the production one; ``candidate``: ``<service>-candidate`` beside it) and wait for
    Ready. Local: move ``alias`` and make the embedded Triton serve it (``tagwatch.pipeline.deploy``)."""
    from tagwatch.pipeline.deploy import deploy_cluster, deploy_local

    settings = step_settings()
    if alias == "production":
        require_shadow_report(settings, version)
    if check_mode(mode) == "local":
        return deploy_local(settings=settings, version=version, alias=alias)
    from tagwatch.k8s.serving import DEPLOYMENT_MODE, check_canary
    from tagwatch.registry import open_registry

    check_canary(DEPLOYMENT_MODE, canary_traffic_percent)  # before the alias moves
    open_registry(settings).promote(version, alias=alias, reason="pipeline deploy")
    return deploy_cluster(settings=settings, version=version, alias=alias, namespace=namespace,
                          service_name=service_name, runtime=runtime, canary_traffic_percent=canary_traffic_percent,
                          gpus=gpus, timeout_s=timeout_s)


def require_shadow_report(settings, version: int) -> str:
    """PipelineError (no promotion, with the reason) unless ``settings.gate`` is content with the latest shadow
    report of ``version`` in S3 (or requires none); the gate's sentence otherwise."""
    from tagwatch.clients import s3_client
    from tagwatch.pipeline.gate import shadow_check
    from tagwatch.shadow.report import latest_report

    report = None
    if settings.gate.require_shadow:
        report = latest_report(s3_client(settings.s3), settings.s3.buckets.models, settings.triton.model_name, version)
    ok, reason = shadow_check(report, version=version, limits=settings.gate)
    if not ok:
        raise PipelineError(f"not promoting version {version}: {reason}",
                            hint="run `tagwatch shadow run` for the version, or change the limits in settings.gate")
    log.info("shadow gate: %s", reason)
    return reason
