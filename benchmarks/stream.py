"""Moderation stream throughput and latency, against the raw model and a naive one-call-per-post consumer.

Self-contained: a private stack (SeaweedFS + Tansu + the stack's Triton) on free ports in a temp dir, a model
exported and registered as `production` (default resnet18 two-head at 128 px, random weights: the compute is
what matters here), N distinct JPEG posts in S3. Then, side by side:

  raw     ONNX Runtime in-process on the already-preprocessed images, same batch (16), same thread count as
          Triton's (1): the ceiling for model compute on this box, no I/O at all;
  triton  the same preprocessed images through the stack's Triton with the shipped scorer (micro-batches of 16,
          ``infer_workers`` in flight): the serving path's ceiling, no S3, no Kafka, no decoding;
  naive   the consumer with max_poll_records=1: one S3 fetch, one Triton call, one produce, one commit per post
          (what KServe + KafkaSource's one-request-per-event does);
  stream  the tagwatch consumer, image model only (no caption signals): batches of 128, concurrent fetches,
          micro-batches of 16 sent to Triton as soon as their images are decoded, each batch delivered
          (produce + ledger) in the background while the next one is prepared; placed as shipped: the stack's
          model server on a CPU of its own, this process (the consumer), SeaweedFS and Tansu on the others
          (``tagwatch.stack.cpus``, as `tagwatch moderate run` pins itself);
  isolated_cpus / shared_cpus  the same stream run, alternated ``--cpu-pairs`` times, with that placement and
          with every process on every CPU (the placement's worth: ``isolated_cpus_over_raw`` and
          ``shared_cpus_over_raw``, medians);
  stream_signals  the same consumer as shipped, with the caption signals (caption.offensive, caption.spam) scored
          on every post: the same posts (every post carries a caption in both arms), run right after ``stream``;
          ``signals_over_stream`` is the throughput ratio, the cost of the caption signals: the median over
          ``--signal-pairs`` alternated pairs of runs, with the range of the pairs' ratios beside it.
  stream_nudity  the image-model-only consumer plus the nudity model (open_nsfw, imported into the registry and
          served by the same Triton): each micro-batch goes to both models, two requests in flight;
          ``nudity_over_stream`` is its throughput ratio to ``stream`` (median of ``--nudity-pairs`` alternated
          runs, with the range); ``stream_nudity_sequential`` sends the nudity request before the image model's
          instead (``nudity_sequential_over_stream``): what running them concurrently saves.
          ``--only-nudity`` runs just these arms (no naive, caption or latency runs: a short check on a busy box).

Where the time goes: ``consumer_cpu_ms_per_post_by_stage`` (see ``StageClock``) and ``stream_cpu_seconds``
(CPU of the consumer, Triton, SeaweedFS and Tansu while the stream run lasted): on 2 cores the stream is
bound by the CPU all of them share, which the raw baseline (one thread, nothing else) does not pay.

Throughput is measured on a backlog (all posts published first; time from the first to the last decided batch).
Post-to-decision latency (p50/p99) is measured in a second stream run with posts published at half the stream's
throughput. Goals from the issue: stream >= 0.85 x raw, >= 5 x naive. Prints one JSON line.

    .venv/bin/python benchmarks/stream.py [--posts 1200] [--arch resnet18|tiny]
    .venv/bin/python benchmarks/stream.py --only-stream 1      # raw, Triton alone, the CPU arms, one stream run
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving import build_model  # noqa: E402

from tagwatch.clients import s3_client  # noqa: E402
from tagwatch.export import export_model  # noqa: E402
from tagwatch.export.export import load_parity_images  # noqa: E402
from tagwatch.export.onnx_model import ort_session  # noqa: E402
from tagwatch.moderation import consumer as consumer_module  # noqa: E402
from tagwatch.moderation.consumer import ConsumerOptions, ModerationConsumer  # noqa: E402
from tagwatch.moderation.signals.nudity import build_nudity_signal  # noqa: E402
from tagwatch.moderation.ledger import Ledger  # noqa: E402
from tagwatch.moderation.publish import new_post, publish_posts, upload_image  # noqa: E402
from tagwatch.moderation.scoring import TritonScorer  # noqa: E402
from tagwatch.preprocess import DEFAULT_PRESET  # noqa: E402
from tagwatch.registry import ModelRegistry  # noqa: E402
from tagwatch.registry.open_nsfw import import_open_nsfw, open_nsfw_registry  # noqa: E402
from tagwatch.settings import load_settings  # noqa: E402
from tagwatch.stack import Stack, with_stack_endpoints  # noqa: E402
from tests.support.stream import private_stream  # noqa: E402

CATEGORIES = [f"cat{i}" for i in range(8)]
# Captions for the posts, cycled: the probe set of benchmarks/caption_signals.py (lengths like real captions)
CAPTIONS = [json.loads(line)["text"] for line in
            (Path(__file__).resolve().parent / "data" / "caption_probe.jsonl").read_text().splitlines() if line]


def jpeg(seed: int, size: int = 256) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(small).resize((size, size), Image.BILINEAR).save(out, format="JPEG", quality=85)
    return out.getvalue()


def run_consumer(settings, scorer, options: ConsumerOptions, expect: int) -> dict:
    """Consume until ``expect`` posts are decided; seconds between the first and the last finished batch, and the
    CPU each stage of the consumer spent (``StageClock``)."""
    consumer = ModerationConsumer(settings, scorer, options=options, client_id="bench")
    marks: list[float] = []
    prepare, done = consumer._prepare, consumer._done

    decide_s: list[float] = []

    def first(records, after=None):  # the clock starts when the first batch starts
        t0 = time.perf_counter()
        if not marks:
            marks.append(t0)
        try:
            return prepare(records, after)
        finally:
            decide_s.append(time.perf_counter() - t0)

    def committed(records):  # ... and stops when the last one is committed
        done(records)
        marks.append(time.perf_counter())
        if consumer.stats.decided >= expect:
            stop.set()

    consumer._prepare, consumer._done = first, committed
    clock = StageClock()
    with clock.instrument(consumer):
        stop = threading.Event()
        cpu0 = time.process_time()
        stats = consumer.run(stop, idle_exit_s=20)
        cpu = time.process_time() - cpu0
    return {"decided": stats.decided, "seconds": marks[-1] - marks[0], "batches": stats.batches,
            "decide_s_per_batch": decide_s, "consumer_cpu_s": cpu, "stage_cpu_s": clock.cpu, "stage_wall_s": clock.wall, "thread_cpu_s": clock.threads}


class StageClock:
    """CPU (``time.thread_time``: the calling thread's, so concurrent calls add up correctly) and wall seconds per
    stage of the consumer, summed over the run. The stages wrap the functions the core and the checkpoint call:

      fetch       S3 GET of the image (boto3: request signing, HTTP, body read)
      sha256      the image's digest against the event's
      decode      Pillow decode with the guards
      pdq         the PDQ hash (bank matching, dedup)
      preprocess  the model's preset (resize, crop, normalise)
      score       the scorer call (gRPC to Triton: the request's encoding and waiting; the model's own CPU is
                  Triton's, counted under triton in stream_cpu_seconds)
      captions    the caption signals (moderation/signals/), one call per signal per batch
      decide      policy + Decision objects
      produce     events encoded and produced, acks awaited
      ledger      the ledger records (one conditional PUT per post, from the ledger pool's threads)
      commit      the offset commit
    Whatever the consumer spent outside these (polling, the group, the loop, kafka-python's I/O threads) is
    ``other``; ``threads`` splits the whole process's CPU by thread (pool name prefix), read from /proc just
    before the consumer closes: where ``other`` went.
    """

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.threads: dict[str, float] = {}
        self._lock = threading.Lock()

    def wrap(self, fn, name: str):
        def timed(*args, **kwargs):
            c0, w0 = time.thread_time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                c, w = time.thread_time() - c0, time.perf_counter() - w0
                with self._lock:
                    self.cpu[name] = self.cpu.get(name, 0.0) + c
                    self.wall[name] = self.wall.get(name, 0.0) + w

        return timed

    @contextlib.contextmanager
    def instrument(self, consumer):
        import tagwatch.moderation.core as core

        patched = [(core, "fetch_image_bytes", "fetch"), (core, "check_sha256", "sha256"),
                   (core, "decode_image", "decode"), (core, "pdq_hex", "pdq"), (core, "decide_all", "decide"),
                   (core, "score_captions", "captions"),
                   (consumer.delivery, "produce", "produce"), (consumer.delivery.ledger, "record", "ledger"),
                   (consumer.checkpoint, "commit", "commit"), (consumer.moderator, "scorer", None)]
        saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in patched]
        for owner, attr, name in patched:
            if name is not None:
                setattr(owner, attr, self.wrap(getattr(owner, attr), name))
        scorer = consumer.moderator.scorer
        consumer.moderator.scorer = _TimedScorer(scorer, self.wrap(scorer.score, "score"))
        preset = consumer.moderator.preset
        consumer.moderator.options = dataclasses.replace(consumer.moderator.options,
                                                         preset=self.wrap(preset, "preprocess"))
        close, before = consumer.close, thread_cpu()

        def snapshot_then_close():
            self.threads = {k: v - before.get(k, 0.0) for k, v in thread_cpu().items()}
            close()

        consumer.close = snapshot_then_close
        try:
            yield self
        finally:
            consumer.close = close
            for owner, attr, value in saved:
                setattr(owner, attr, value)


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process since it started, summed by name (digits dropped)."""
    import os
    import re

    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        name = re.sub(r"[-_]?\d+$", "", thread.name.split(" ")[0]) or "?"
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


class _TimedScorer:
    def __init__(self, inner, score) -> None:
        self.inner, self.score = inner, score

    def __getattr__(self, name):
        return getattr(self.inner, name)


def per_post_by_stage(run: dict, posts: int) -> dict[str, float]:
    """The consumer's CPU per post, by stage, plus ``other`` (the rest of the process) and ``total``."""
    stages = {k: 1000 * v / posts for k, v in sorted(run["stage_cpu_s"].items(), key=lambda kv: -kv[1])}
    total = 1000 * run["consumer_cpu_s"] / posts
    return {**{k: round(v, 2) for k, v in stages.items()}, "other": round(total - sum(stages.values()), 2),
            "total": round(total, 2)}


def cpu_snapshot(settings) -> dict[str, float]:
    """CPU seconds (user + system) so far of this process (the consumer) and of each stack service with its
    children (Triton's PyTriton backend)."""
    import psutil

    from tagwatch.stack.state import read_state

    def total(proc) -> float:
        times = proc.cpu_times()
        own = times.user + times.system
        try:
            return own + sum(c.cpu_times().user + c.cpu_times().system for c in proc.children(recursive=True))
        except psutil.Error:
            return own

    me = psutil.Process().cpu_times()
    out = {"consumer": me.user + me.system}  # not its children: the stack's services are started from here
    state = read_state(settings.paths.stack_file)
    for name, service in (state.services if state else {}).items():
        try:
            out[name] = total(psutil.Process(service.process.pid))
        except psutil.Error:
            pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=1200,
                        help="posts per run (a backlog): 600 left the first fetch and the last delivery ~10 %% of a run")
    parser.add_argument("--naive-posts", type=int, default=150, help="the naive run is slow; fewer posts")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--max-poll-records", type=int, default=ConsumerOptions().max_poll_records,
                        help="the stream run's batch (default: the consumer's)")
    parser.add_argument("--fetch-workers", type=int, default=ConsumerOptions().fetch_workers)
    parser.add_argument("--infer-workers", type=int, default=ConsumerOptions().infer_workers)
    parser.add_argument("--infer-batch", type=int, default=ConsumerOptions().infer_batch,
                        help="micro-batch sent to the model, in every arm (raw, Triton alone, stream)")
    parser.add_argument("--signal-pairs", type=int, default=3, help="stream / stream_signals runs, alternated: the "
                        "ratio's spread between pairs shows how much of it is noise")
    parser.add_argument("--nudity-pairs", type=int, default=3, help="stream / stream_nudity (/ sequential) runs, "
                        "alternated; 0: no nudity arm")
    parser.add_argument("--only-nudity", action="store_true", help="only the stream and nudity arms")
    parser.add_argument("--cpu-pairs", type=int, default=2,
                        help="stream runs with the model server on a CPU of its own (as shipped) and with every CPU "
                             "shared, alternated: what the isolation buys (0: no shared arm)")
    parser.add_argument("--only-latency", type=float, default=0, metavar="POSTS_S",
                        help="only the half-load latency run at POSTS_S / 2, isolated and with every CPU shared")
    parser.add_argument("--only-stream", type=int, default=0, metavar="RUNS",
                        help="only raw, Triton alone and RUNS stream runs (median, range, CPU by stage of the first): "
                             "a short check of a change to the consumer")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="tw-stream-bench-") as tmp:
        root = Path(tmp)
        base = load_settings(paths={"state_dir": root / "state"}, stack={"free_ports": True},
                             kafka={"partitions": 2})
        stack = Stack(base)
        stack.up()
        scorer = None
        try:
            settings = with_stack_endpoints(base)
            s3 = s3_client(settings.s3)
            parity = load_parity_images(DEFAULT_PRESET, count=16)
            policy = {"version": "bench-policy",
                      "categories": {c: {"remove_threshold": 0.9, "review_threshold": 0.6} for c in CATEGORIES}}
            result = export_model(build_model(args.arch), out_dir=root / "export", model_name=settings.triton.model_name,
                                  labels=[f"tag{i}" for i in range(1000)], categories=CATEGORIES, preset=DEFAULT_PRESET,
                                  parity_images=parity, policy=policy, max_batch_size=32,
                                  preferred_batch_sizes=(8, 16, 32), max_queue_delay_us=2000)
            ModelRegistry(s3, bucket=settings.s3.buckets.models, model_name=settings.triton.model_name).register(
                result.out_dir, alias="production")
            if args.nudity_pairs:
                import_open_nsfw(open_nsfw_registry(settings))
            stack.up()  # now with Triton serving `production` (and the nudity model beside it)
            settings = with_stack_endpoints(base)
            # every arm but the nudity ones runs without the nudity signal (Triton still holds the model, idle)
            image_only = settings.model_copy(update={"triton": settings.triton.model_copy(
                update={"nsfw_model_name": None})})
            scorer = TritonScorer(settings)

            blobs = [jpeg(i) for i in range(args.posts)]
            refs = [upload_image(s3, settings.s3.buckets.posts, b) for b in blobs]

            # raw: model compute only, on the same preprocessed images, batch 16, 1 thread (Triton's setting)
            arrays = np.stack([DEFAULT_PRESET(Image.open(io.BytesIO(b))) for b in blobs])
            session = ort_session(result.onnx_path, threads=settings.triton.ort_threads)
            mb = args.infer_batch
            session.run(None, {"images": arrays[:mb]})
            t0 = time.perf_counter()
            for i in range(0, len(arrays), mb):
                session.run(None, {"images": arrays[i : i + mb]})
            raw = len(arrays) / (time.perf_counter() - t0)

            # served: the same preprocessed images through Triton alone (the shipped scorer, micro-batches of 16,
            # infer_workers requests in flight): the serving path's own ceiling, no S3, no Kafka, no decoding
            from concurrent.futures import ThreadPoolExecutor

            chunks = [arrays[i : i + mb] for i in range(0, len(arrays), mb)]
            with ThreadPoolExecutor(args.infer_workers) as pool:
                list(pool.map(scorer.score, chunks[:2]))
                before, t0 = cpu_snapshot(settings), time.perf_counter()
                list(pool.map(scorer.score, chunks))
                served = len(arrays) / (time.perf_counter() - t0)
                served_cpu = {k: round(1000 * (v - before.get(k, 0.0)) / len(arrays), 2)
                              for k, v in cpu_snapshot(settings).items()}

            def backlog(options: ConsumerOptions, n: int, tag: str, cpu: bool = False, nudity: str | None = None) -> dict:
                s = private_stream(settings if nudity else image_only, partitions=1)
                posts = [new_post(f"{tag}-{i:05d}-{s.kafka.consumer_group}", *refs[i],
                                  caption=CAPTIONS[i % len(CAPTIONS)]) for i in range(n)]
                publish_posts(s, posts)
                before = cpu_snapshot(settings) if cpu else {}
                with nudity_mode(nudity):
                    result = run_consumer(s, scorer, options, n)
                if cpu:  # CPU seconds each process spent while the consumer ran (join, backlog, leave)
                    result["cpu_seconds"] = {k: round(v - before.get(k, 0.0), 1) for k, v in cpu_snapshot(settings).items()}
                return result

            def half_load_latency(stream_rate: float) -> dict:
                """Post-to-decision latency with posts published at half ``stream_rate`` while the consumer runs,
                and the issue's bound: batch window (a fetch waits at most fetch_max_wait_ms = 500 ms for data) +
                2 x the compute of a batch (the mean time to decide one at this load)."""
                s = private_stream(image_only, partitions=1)
                rate = stream_rate / 2
                n = min(args.posts, int(rate * 20))
                posts = [new_post(f"lat-{i:05d}-{s.kafka.consumer_group}", *refs[i]) for i in range(n)]
                holder: dict = {}
                consumer_thread = threading.Thread(
                    target=lambda: holder.update(run_consumer(s, scorer, shipped, n)))
                consumer_thread.start()
                time.sleep(4)  # let the consumer join its group first
                publish_posts(s, posts, rate=rate)
                consumer_thread.join()
                ledger = Ledger(s3, s.s3.buckets.ledger)
                latencies = np.array([ledger.get(p.post_id).latency_ms for p in posts])
                batch_compute_ms = 1000 * float(np.mean(holder["decide_s_per_batch"]))
                bound = 500 + 2 * batch_compute_ms
                p99 = float(np.percentile(latencies, 99))
                return {"latency_rate_posts_s": round(rate, 1), "latency_posts": n,
                        "post_to_decision_p50_ms": round(float(np.percentile(latencies, 50)), 1),
                        "post_to_decision_p99_ms": round(p99, 1), "batch_compute_ms": round(batch_compute_ms, 1),
                        "p99_bound_ms": round(bound, 1), "p99_within_bound": bool(p99 <= bound)}

            shipped = ConsumerOptions(max_poll_records=args.max_poll_records, fetch_workers=args.fetch_workers,
                                      infer_workers=args.infer_workers, infer_batch=args.infer_batch, signals=())
            # as `tagwatch moderate run` does: the consumer off the CPUs the stack gave the model server
            placement = cpu_placement(settings)
            if args.only_latency:  # at half of the given rate, with the model server isolated and with CPUs shared
                placement.isolated()
                isolated = half_load_latency(args.only_latency)
                placement.shared()
                shared = half_load_latency(args.only_latency)
                placement.isolated()
                print(json.dumps({"benchmark": "stream", "arch": args.arch, "cpus": placement.model,
                                  "isolated": isolated, "shared": shared}))
                return
            if args.only_stream:
                runs = [backlog(shipped, args.posts, f"only{k}", cpu=True) for k in range(args.only_stream)]
                rates = sorted(r["decided"] / r["seconds"] for r in runs)
                print(json.dumps({"benchmark": "stream", "arch": args.arch, "posts": args.posts,
                                  "max_poll_records": args.max_poll_records, "raw_onnxruntime_img_s": round(raw, 1),
                                  "triton_only_img_s": round(served, 1),
                                  "triton_only_cpu_ms_per_img_by_process": served_cpu,
                                  **placement.arms(backlog, shipped, args.posts, args.cpu_pairs, raw),
                                  "stream_posts_s_runs": [round(r, 1) for r in rates],
                                  "stream_over_raw": round(float(np.median(rates)) / raw, 2),
                                  "stream_over_raw_range": [round(rates[0] / raw, 2), round(rates[-1] / raw, 2)],
                                  "consumer_cpu_ms_per_post_by_stage": per_post_by_stage(runs[0], args.posts),
                                  "stream_cpu_ms_per_post_by_process": {
                                      k: round(1000 * v / args.posts, 2) for k, v in runs[0]["cpu_seconds"].items()}}))
                return
            nudity = nudity_arms(backlog, shipped, args.posts, args.nudity_pairs) if args.nudity_pairs else {}
            if args.only_nudity:
                print(json.dumps({"benchmark": "stream", "arch": args.arch, "posts": args.posts,
                                  "max_poll_records": args.max_poll_records, "infer_workers": args.infer_workers,
                                  "raw_onnxruntime_img_s": round(raw, 1), "triton_only_img_s": round(served, 1),
                                  **nudity}))
                return
            naive = backlog(ConsumerOptions(max_poll_records=1, infer_batch=1, fetch_workers=1, infer_workers=1,
                                            pipeline=False, signals=()), args.naive_posts, "naive")
            stream = backlog(shipped, args.posts, "stream", cpu=True)
            isolation = placement.arms(backlog, shipped, args.posts, args.cpu_pairs, raw)
            with_signals = backlog(dataclasses.replace(shipped, signals=None), args.posts, "signals")
            pair_rates = [(stream["decided"] / stream["seconds"], with_signals["decided"] / with_signals["seconds"])]
            for k in range(1, args.signal_pairs):
                plain = backlog(shipped, args.posts, f"stream{k}")
                signalled = backlog(dataclasses.replace(shipped, signals=None), args.posts, f"signals{k}")
                pair_rates.append((plain["decided"] / plain["seconds"], signalled["decided"] / signalled["seconds"]))
            ratios = sorted(b / a for a, b in pair_rates)
            signals_rate = float(np.median([b for _, b in pair_rates]))
            stream_cpu = stream["cpu_seconds"]
            naive_rate = naive["decided"] / naive["seconds"]
            stream_rate = stream["decided"] / stream["seconds"]

            lat = half_load_latency(stream_rate)
            print(json.dumps({
                "benchmark": "stream", "arch": args.arch, "posts": args.posts, "max_poll_records": args.max_poll_records,
                "fetch_workers": args.fetch_workers, "infer_workers": args.infer_workers,
                "raw_onnxruntime_img_s": round(raw, 1),
                "triton_only_img_s": round(served, 1), "triton_only_over_raw": round(served / raw, 2),
                "naive_consumer_posts_s": round(naive_rate, 1),
                "stream_posts_s": round(stream_rate, 1),
                "stream_seconds": round(stream["seconds"], 2),
                "stream_signals_posts_s": round(signals_rate, 1),
                "stream_posts_s_pairs": [round(a, 1) for a, _ in pair_rates],
                "stream_signals_posts_s_pairs": [round(b, 1) for _, b in pair_rates],
                "signals_over_stream": round(float(np.median(ratios)), 2),
                "signals_over_stream_range": [round(ratios[0], 2), round(ratios[-1], 2)],
                "signals_consumer_cpu_ms_per_post_by_stage": per_post_by_stage(with_signals, args.posts),
                "consumer_cpu_ms_per_post_by_stage": per_post_by_stage(stream, args.posts),
                "stage_wall_s": {k: round(v, 2) for k, v in stream["stage_wall_s"].items()},
                "consumer_cpu_ms_per_post_by_thread": {k: round(1000 * v / args.posts, 2) for k, v in
                                                       sorted(stream["thread_cpu_s"].items(), key=lambda kv: -kv[1])},
                "stream_cpu_seconds": stream_cpu,
                "stream_cpu_ms_per_post": round(1000 * sum(stream_cpu.values()) / args.posts, 1),
                "stream_over_raw": round(stream_rate / raw, 2),
                "stream_over_naive": round(stream_rate / naive_rate, 2),
                "stream_over_triton_only": round(stream_rate / served, 2),
                **lat,
                **isolation,
                **nudity,
            }))
        finally:
            if scorer is not None:
                scorer.close()
            stack.down()


class cpu_placement:
    """Where the stream runs: as shipped (the stack's model server on CPUs of its own, this process, the
    consumer, on the rest: ``tagwatch.stack.cpus``) or, for the comparison arm, every process on every CPU."""

    def __init__(self, settings) -> None:
        from tagwatch.stack.cpus import consumer_cpus, usable_cpus

        self.settings, self.all = settings, sorted(usable_cpus())
        self.rest = consumer_cpus(settings)
        self.model = sorted(set(self.all) - set(self.rest)) if self.rest else None
        self.isolated()

    def _apply(self, model: list[int] | tuple[int, ...], rest: list[int] | tuple[int, ...]) -> None:
        from tagwatch.stack.cpus import pin_process_tree, pin_this_process
        from tagwatch.stack.state import read_state

        for name, service in read_state(self.settings.paths.stack_file).services.items():
            pin_process_tree(service.process.pid, model if name == "triton" else rest)
        pin_this_process(rest)

    def isolated(self) -> None:
        if self.rest:
            self._apply(self.model, self.rest)

    def shared(self) -> None:
        self._apply(self.all, self.all)

    def arms(self, backlog, options, posts: int, pairs: int, raw: float) -> dict:
        """Isolated and shared runs, alternated ``pairs`` times (isolation left on at the end)."""
        out: dict = {"cpus": {"model_server": self.model, "consumer_and_storage": self.rest or self.all}}
        if not self.rest or not pairs:
            return out
        rates: dict[str, list[float]] = {"isolated": [], "shared": []}
        for k in range(pairs):
            for arm in ("shared", "isolated"):
                getattr(self, arm)()
                run = backlog(options, posts, f"cpu{arm}{k}")
                rates[arm].append(run["decided"] / run["seconds"])
        self.isolated()
        return {**out, **{f"{arm}_cpus_posts_s_runs": [round(r, 1) for r in v] for arm, v in rates.items()},
                "isolated_cpus_over_raw": round(float(np.median(rates["isolated"])) / raw, 2),
                "shared_cpus_over_raw": round(float(np.median(rates["shared"])) / raw, 2)}


@contextlib.contextmanager
def nudity_mode(mode: str | None):
    """``sequential``: the consumer's nudity signal sends its request before the image model's, not beside it."""
    if mode != "sequential":
        yield
        return
    shipped = consumer_module.build_image_signals
    consumer_module.build_image_signals = lambda s: [build_nudity_signal(s, concurrent=False)]
    try:
        yield
    finally:
        consumer_module.build_image_signals = shipped


def nudity_arms(backlog, options: ConsumerOptions, posts: int, pairs: int) -> dict:
    """stream, stream_nudity and stream_nudity_sequential runs, alternated ``pairs`` times: rates and ratios."""
    rates: dict[str, list[float]] = {"stream": [], "nudity": [], "sequential": []}
    for k in range(pairs):
        for arm, mode in (("stream", None), ("nudity", "concurrent"), ("sequential", "sequential")):
            run = backlog(options, posts, f"n{arm}{k}", nudity=mode)
            rates[arm].append(run["decided"] / run["seconds"])
    ratio = {arm: sorted(b / a for a, b in zip(rates["stream"], rates[arm], strict=True)) for arm in ("nudity", "sequential")}
    return {"nudity_pairs": pairs,
            "nudity_stream_posts_s_runs": [round(r, 1) for r in rates["stream"]],
            "stream_nudity_posts_s_runs": [round(r, 1) for r in rates["nudity"]],
            "stream_nudity_sequential_posts_s_runs": [round(r, 1) for r in rates["sequential"]],
            "nudity_over_stream": round(float(np.median(ratio["nudity"])), 2),
            "nudity_over_stream_range": [round(ratio["nudity"][0], 2), round(ratio["nudity"][-1], 2)],
            "nudity_sequential_over_stream": round(float(np.median(ratio["sequential"])), 2),
            "nudity_sequential_over_stream_range": [round(ratio["sequential"][0], 2), round(ratio["sequential"][-1], 2)]}


if __name__ == "__main__":
    main()
