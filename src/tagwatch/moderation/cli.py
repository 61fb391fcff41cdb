"""`tagwatch moderate` (the consumer group) and `tagwatch posts publish` (the load generator)."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from tagwatch.cli_context import cli_settings
from tagwatch.errors import ConfigError

posts_app = typer.Typer(help="Publish posts to the stream; audit the stream; erase a post.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
log = logging.getLogger(__name__)


def _load_policy(path: Path):
    from tagwatch.moderation.policy import load_policy_file

    return load_policy_file(path)


def moderate(
    ctx: typer.Context,
    alias: Annotated[str, typer.Option(help="Registry alias whose model (via Triton) decides, with the policy alias of "
                                       "the same name (hot-reloaded; its version's own policy if that one is for "
                                       "another model or absent).")] = "production",
    protocol: Annotated[str, typer.Option(help="Triton protocol: grpc or http.")] = "grpc",
    onnx: Annotated[Optional[Path], typer.Option(help="Score in-process with this ONNX model instead of Triton.")] = None,
    categories: Annotated[Optional[str], typer.Option(help="Comma-separated category names (with --onnx).")] = None,
    policy: Annotated[Optional[Path], typer.Option(help="policy.json: per-category thresholds (with --onnx; with Triton an "
                                                    "explicit override of the registry's policies).")] = None,
    processes: Annotated[int, typer.Option(min=1, help="Consumer processes in this group (≤ partitions).")] = 1,
    metrics_port: Annotated[Optional[int], typer.Option(
        help="Serve /metrics, /healthz (liveness) and /readyz (readiness) on PORT, bound to TAGWATCH_HTTP__BIND_HOST "
             "(default 127.0.0.1; the manifests set 0.0.0.0).")] = None,
    max_poll_records: Annotated[Optional[int], typer.Option(min=1, help="Records per batch at most (a poll returns "
                                                            "what is there) [default: 128, the consumer's]")] = None,
    infer_batch: Annotated[int, typer.Option(min=1, help="Images per model call.")] = 16,
    idle_exit: Annotated[Optional[float], typer.Option(help="Exit after this many seconds without records.")] = None,
    transactional: Annotated[bool, typer.Option(help="Decisions + offsets in one Kafka transaction "
                                                "(exactly-once on Apache Kafka; Tansu does not isolate aborts).")] = False,
    stats_out: Annotated[Optional[Path], typer.Option(
        help="Write the final stats as JSON to this file (atomically). With --processes N, child i writes "
             "FILE with .i before its suffix (stats.json -> stats.0.json) and FILE gets the sums.")] = None,
) -> None:
    """Run moderation consumers: post.created -> model -> policy -> decisions + ledger, at least once.

    SIGTERM/Ctrl+C finishes the batch in hand, commits and leaves the group. The final stats go to stdout as one
    plain JSON line (and to --stats-out FILE); logs go to stderr.
    """
    from tagwatch.stack import with_stack_endpoints

    if stats_out is not None and stats_out.is_dir():
        raise ConfigError(f"--stats-out {stats_out} is a directory", hint="pass a file path, e.g. --stats-out stats.json")
    if processes > 1:
        _run_children(processes, stats_out)
        return
    if stats_out is not None:
        stats_out.unlink(missing_ok=True)  # a stale file from an earlier run must not pass for this run's stats
    settings = with_stack_endpoints(cli_settings(ctx))
    from tagwatch.moderation.consumer import ConsumerOptions, ModerationConsumer

    if onnx is None:
        from tagwatch.moderation.scoring import TritonScorer

        scorer = TritonScorer(settings, alias=alias, protocol=protocol)
        chosen_policy = _load_policy(policy) if policy is not None else None  # default: the version's own
        err.print(f"model {scorer.model.name} version {scorer.model.version} via Triton "
                  f"{settings.triton.host}:{settings.triton.grpc_port if protocol == 'grpc' else settings.triton.http_port}")
        from tagwatch.stack.cpus import pin_consumer

        cpus = pin_consumer(settings)  # off the CPUs the local model server holds (stack.model_cpus)
        if cpus:
            err.print(f"consumer on CPUs {','.join(map(str, cpus))}; the local Triton has the others",
                      highlight=False, soft_wrap=True)  # one line at any width: many CPUs, 80 columns
    else:
        if not categories or policy is None:
            raise ConfigError("--onnx needs --categories and --policy", hint="e.g. --categories weapons,violence --policy policy.json")
        import hashlib

        from tagwatch.moderation.events import ModelRef
        from tagwatch.moderation.scoring import OnnxScorer

        model = ModelRef(name=onnx.stem, version="local", sha256=hashlib.sha256(onnx.read_bytes()).hexdigest())
        scorer = OnnxScorer(onnx, categories.split(","), model)
        chosen_policy = _load_policy(policy)
    consumer = ModerationConsumer(
        settings, scorer, chosen_policy,
        options=ConsumerOptions(infer_batch=infer_batch, transactional=transactional,
                                **({"max_poll_records": max_poll_records} if max_poll_records else {})),
        client_id=f"tagwatch-moderation-{os.getpid()}",
    )
    if metrics_port is not None:
        if hasattr(scorer, "check_ready"):
            consumer.metrics.dependencies["triton"] = scorer.check_ready
        consumer.metrics.serve(metrics_port, settings.http.bind_host)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    err.print(f"moderating {settings.kafka.topics.posts} as group {settings.kafka.consumer_group} (pid {os.getpid()})")
    try:
        stats = consumer.run(stop, idle_exit_s=idle_exit)
    finally:
        if hasattr(scorer, "close"):
            scorer.close()  # an open Triton connection would make a local Triton's shutdown wait 30 s
    from tagwatch.moderation.runstats import write_stats
    from tagwatch.output import emit_json

    if stats_out is not None:
        write_stats(stats_out, stats)
    emit_json(dataclasses.asdict(stats), indent=None)  # plain stdout: a rich Console would wrap it at 80 columns


def _without_options(args: list[str], names: tuple[str, ...]) -> list[str]:
    """``args`` less each ``--name VALUE`` / ``--name=VALUE`` of ``names``."""
    cleaned, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in names:
            skip = True
            continue
        if a.startswith(tuple(f"{name}=" for name in names)):
            continue
        cleaned.append(a)
    return cleaned


def _run_children(n: int, stats_out: Optional[Path]) -> None:
    """Start n single-process consumers with the same arguments (each its own --stats-out file); forward
    SIGTERM/SIGINT; wait for all; write the summed stats to ``stats_out``."""
    from tagwatch.moderation.runstats import child_stats_path, combine, read_stats, write_stats

    cleaned = _without_options(sys.argv[1:], ("--processes", "--stats-out"))
    child_files = [child_stats_path(stats_out, i) if stats_out is not None else None for i in range(n)]
    for path in child_files:
        if path is not None:
            path.unlink(missing_ok=True)  # a stale file from an earlier run must not count as this run's
    children = [subprocess.Popen([sys.executable, "-m", "tagwatch", *cleaned,
                                  *(["--stats-out", str(path)] if path is not None else [])])
                for path in child_files]

    def forward(signum, _frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    if stats_out is not None:
        write_stats(stats_out, combine([read_stats(path) for path in child_files]))
    failed = [code for code in codes if code]
    if failed:
        # a child killed by signal S has code -S: report it as the shell would (128 + S), never as success
        raise typer.Exit(failed[0] if failed[0] > 0 else 128 - failed[0])


@posts_app.command("publish")
def publish(
    ctx: typer.Context,
    n: Annotated[int, typer.Option("--n", min=1, help="How many posts.")] = 100,
    rate: Annotated[Optional[float], typer.Option(help="Posts per second (default: as fast as acks allow).")] = None,
    from_dir: Annotated[Optional[Path], typer.Option(help="Cycle through the images in this folder.")] = None,
    synthetic: Annotated[bool, typer.Option(help="Generated single-colour images (red/blue/grey).")] = False,
    holdout: Annotated[bool, typer.Option(help="The dataset build's held-out posts (images already in S3).")] = False,
    dataset: Annotated[str, typer.Option(help="Dataset name for --holdout.")] = "hashtags",
    ids_out: Annotated[Optional[Path], typer.Option(
        help="Write every acknowledged post as a JSON line {post_id, partition, offset} to this file "
             "(written even when publishing fails part way: then it lists what the broker acknowledged).")] = None,
) -> None:
    """Publish N post.created events (images uploaded to the posts bucket first, unless --holdout)."""
    from rich.progress import Progress

    from tagwatch.clients import s3_client
    from tagwatch.moderation.publish import new_post, publish_posts, upload_image
    from tagwatch.stack import with_stack_endpoints

    if ids_out is not None and ids_out.is_dir():
        raise ConfigError(f"--ids-out {ids_out} is a directory", hint="pass a file path, e.g. --ids-out ids.jsonl")
    settings = with_stack_endpoints(cli_settings(ctx))
    s3 = s3_client(settings.s3)
    if holdout:
        from tagwatch.moderation.publish import holdout_posts

        posts = [post for post, _ in holdout_posts(settings, dataset=dataset)][:n]
        with _recording(ids_out) as on_acked:
            sent = publish_posts(settings, posts, rate=rate, on_acked=on_acked)
        out.print(f"published {sent} held-out posts of dataset {dataset} to {settings.kafka.topics.posts}")
        return
    if from_dir is not None:
        files = sorted(p for p in from_dir.iterdir() if p.is_file())
        if not files:
            raise ConfigError(f"{from_dir} has no files", hint="point --from-dir at a folder of images")
        blobs = [files[i % len(files)].read_bytes() for i in range(min(n, len(files)))]
    elif synthetic:
        from tagwatch.moderation.synthetic import colour_jpeg

        blobs = [colour_jpeg(i) for i in range(n)]
    else:
        raise ConfigError("say where the images come from", hint="--holdout, --from-dir DIR or --synthetic")
    run = uuid.uuid4().hex[:8]
    with Progress(transient=True) as progress:
        task = progress.add_task("uploading", total=len(blobs))
        refs = []
        for blob in blobs:
            refs.append(upload_image(s3, settings.s3.buckets.posts, blob))
            progress.advance(task)
        posts = (new_post(f"{run}-{i:06d}", *refs[i % len(refs)]) for i in range(n))
        task = progress.add_task("publishing", total=n)
        with _recording(ids_out) as on_acked:
            sent = publish_posts(settings, posts, rate=rate, on_sent=lambda k: progress.update(task, completed=k),
                                 on_acked=on_acked)
    out.print(f"published {sent} posts to {settings.kafka.topics.posts} (run {run})")


@contextmanager
def _recording(ids_out: Optional[Path]):
    """An ``on_acked`` callback that collects the acknowledged posts; on exit (even on an error) they are written
    to ``ids_out`` as JSON lines, atomically. Without ``ids_out``: no callback."""
    if ids_out is None:
        yield None
        return
    from tagwatch.output import write_json_lines_atomic

    acked = []
    try:
        yield acked.append
    finally:
        write_json_lines_atomic(ids_out, (dataclasses.asdict(p) for p in acked))
