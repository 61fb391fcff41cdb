"""The demo's platform stages: stack up, ingest, serve on the local Triton, consumer processes, publish the held-out
posts, wait for every decision (ledger) or dead letter, and read them back."""

from __future__ import annotations

import json
import logging
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagwatch.data.posts import report_key
from tagwatch.demo.progress import DemoProgress
from tagwatch.demo.summary import PublishedPost
from tagwatch.errors import CheckFailedError, StackError
from tagwatch.settings import Settings, child_env

log = logging.getLogger(__name__)
QUICK_POSTS = 700


def demo_dir(settings: Settings) -> Path:
    return settings.paths.state_dir / "demo"


# -- stack ---------------------------------------------------------------------------------------------
def bring_stack_up(base: Settings, *, progress: DemoProgress):
    from tagwatch.stack import Stack

    result = Stack(base).up(report=progress.say)
    for name, why in result.skipped.items():
        if why.startswith("failed"):
            raise StackError(f"{name} {why}", hint=f"`tagwatch stack logs {name}`")
    return result


# -- ingest --------------------------------------------------------------------------------------------
QUICK_OTHERS = 40  # per added source (openmoji, tuxpaint) in the quick subset, beside all their positives


@dataclass
class CorpusIngest:
    """The ingest of every source: the sums run.py reports, and each source's own report."""

    reports: dict[str, Any] = field(default_factory=dict)

    def _sum(self, name: str) -> int:
        return sum(getattr(r, name) for r in self.reports.values())

    ingested = property(lambda self: self._sum("ingested"))
    already_there = property(lambda self: self._sum("already_there"))
    posts_total = property(lambda self: self._sum("posts_total"))

    @property
    def skipped(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for report in self.reports.values():
            for reason, count in report.skipped.items():
                total[reason] = total.get(reason, 0) + count
        return total


def select_quick_subset(*, source: str, root: Path | None, others: int = 0, total: int | None = None,
                        seed: int = 0) -> tuple[list[Any], int]:
    """Every item of ``source`` whose keywords put it in a moderation category, plus a seeded random sample of the
    rest (``others`` of them, or up to ``total`` items in all): a small corpus that still has positives to measure.
    Returns (items, positives)."""
    from tagwatch.data.categories import CategoryMatcher, load_categories
    from tagwatch.data.sources import get_source
    from tagwatch.data.wordnet import load_wordnet

    module = get_source(source)
    categories, _ = load_categories()
    matcher = CategoryMatcher(categories, load_wordnet())
    positives, rest = [], []
    for item in module.list_items(root=root):
        cats = matcher.post_categories(module.keywords_of(item))
        (positives if any(c != categories.other for c in cats) else rest).append(item)
    wanted = others if total is None else total - len(positives)
    sample = random.Random(seed).sample(rest, max(0, min(len(rest), wanted)))
    return sorted(positives + sample, key=lambda item: item.ref), len(positives)


def quick_root(settings: Settings) -> Path:
    """The quick subset: one folder per source, items at their original relative paths (so post ids match a full
    ingest's: a later full demo ingests only the rest)."""
    return demo_dir(settings) / "quick-sources"


def prepare_quick_source(settings: Settings, *, progress: DemoProgress) -> Path:
    """Write the quick subset (once): openclipart's positives + seeded others up to QUICK_POSTS, and each other
    real source's positives + QUICK_OTHERS seeded others. Returns its root (a folder per source)."""
    from tagwatch.data.sources import REAL_SOURCES, get_source

    target = quick_root(settings)
    listing = target / ".subset.json"
    if listing.exists():
        chosen = json.loads(listing.read_text())
        if list(chosen.get("sources", {})) == list(REAL_SOURCES):
            progress.say(f"reusing the quick subset in {target}")
            return target
    shutil.rmtree(target, ignore_errors=True)
    chosen = {"sources": {}}
    for name in REAL_SOURCES:
        module = get_source(name)
        if name == "openclipart":
            items, positives = select_quick_subset(source=name, root=None, total=QUICK_POSTS)
        else:
            items, positives = select_quick_subset(source=name, root=None, others=QUICK_OTHERS)
        module.copy_items(items, target / name)
        chosen["sources"][name] = {"refs": [item.ref for item in items], "positives": positives}
        progress.say(f"quick subset: {len(items)} {name} items, {positives} of them in a moderation category "
                     f"(all there are) + {len(items) - positives} seeded random others")
    listing.write_text(json.dumps(chosen))
    return target


def ingest_corpus(settings: Settings, *, quick: bool, progress: DemoProgress) -> CorpusIngest:
    """Ingest every real source (openclipart, OpenMoji, Tux Paint stamps), or their quick subsets."""
    from tagwatch.clients import s3_client
    from tagwatch.data.ingest import ingest_source
    from tagwatch.data.sources import REAL_SOURCES

    root = prepare_quick_source(settings, progress=progress) if quick else None
    client = s3_client(settings.s3)
    result = CorpusIngest()
    for name in REAL_SOURCES:
        label = f"render + upload {name}"
        report = ingest_source(
            client=client, bucket=settings.s3.buckets.posts, source=name, author_key=settings.privacy.author_key,
            root=root / name if root else None,
            on_total=lambda n, label=label: progress.update(label, completed=0, total=n),
            on_advance=lambda n, label=label: progress.advance(label, n))
        result.reports[name] = report
        progress.say(f"{name}: ingested {report.ingested} new posts in {report.seconds:.1f}s ({report.already_there} "
                     f"already in S3, {sum(report.skipped.values())} skipped: {report.skipped or 'none'}); "
                     f"{report.posts_total} {name} posts in S3"
                     + (f"; skipped items listed in s3://{settings.s3.buckets.posts}/{report_key(name)}"
                        if report.skipped else ""))
    return result


# -- serving -------------------------------------------------------------------------------------------
MODERATE_ARGS = ("--infer-batch", "16", "--max-poll-records", "32", "--idle-exit", "120")


class Consumers:
    """``tagwatch moderate`` processes started (and always stopped) by the demo. Logs (for people) go to
    ``consumer-<i>.log``; each process's final stats (for the demo) to ``consumer-<i>.stats.json``."""

    def __init__(self, settings: Settings, *, processes: int, log_dir: Path,
                 moderate_args: tuple[str, ...] = MODERATE_ARGS) -> None:
        self.settings, self.count, self.log_dir, self.moderate_args = settings, processes, log_dir, moderate_args
        self.children: list[subprocess.Popen] = []

    def stats_file(self, index: int) -> Path:
        return self.log_dir / f"consumer-{index}.stats.json"

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = child_env(self.settings)
        for i in range(self.count):
            sink = open(self.log_dir / f"consumer-{i}.log", "wb")
            self.children.append(subprocess.Popen(
                [sys.executable, "-m", "tagwatch", "moderate", *self.moderate_args, "--stats-out", str(self.stats_file(i))],
                env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True))
            sink.close()

    def wait_joined(self, *, progress: DemoProgress, timeout_s: float = 60.0) -> None:
        """Until every process has its Triton model and subscribed, then the group's first join (about
        session_timeout/2 on Tansu, PLATFORM.md): posts published earlier would wait out the join, and that
        start-up would count as post-to-decision latency."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            logs = [(self.log_dir / f"consumer-{i}.log").read_text(errors="replace") for i in range(self.count)]
            if all("moderating" in text for text in logs):
                break
            time.sleep(0.3)
        join_s = self.settings.kafka.session_timeout_ms / 1000
        progress.say(f"consumers subscribed; waiting {join_s:.0f}s for the group's first join")
        time.sleep(join_s)

    def check_alive(self) -> None:
        for i, child in enumerate(self.children):
            if child.poll() is not None:
                tail = (self.log_dir / f"consumer-{i}.log").read_text(errors="replace").strip().splitlines()[-2:]
                raise StackError(f"consumer {i} exited {child.returncode}: {' | '.join(tail)[:300]}",
                                 hint=f"read {self.log_dir / f'consumer-{i}.log'}")

    def last_warning(self) -> str:
        for i in range(len(self.children)):
            lines = [line for line in (self.log_dir / f"consumer-{i}.log").read_text(errors="replace").splitlines()
                     if "WARNING" in line or "ERROR" in line]
            if lines:
                return " ".join(lines[-1].split())
        return "no warnings"

    def stop(self, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        """SIGTERM (finish the batch, commit, leave the group), SIGKILL after ``timeout_s``; the final stats of
        each process that wrote its stats file (never parsed from the logs)."""
        from tagwatch.moderation.runstats import read_stats

        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in self.children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)
        stats = []
        for i, child in enumerate(self.children):
            found = read_stats(self.stats_file(i))
            if found is None:
                log.warning("consumer %d (exit %s) wrote no stats to %s; see %s", i, child.returncode,
                            self.stats_file(i), self.log_dir / f"consumer-{i}.log")
            else:
                stats.append(found)
        self.children = []
        return stats


# -- publish and wait ----------------------------------------------------------------------------------
def held_out_posts(settings: Settings, *, dataset: str, run_tag: str) -> list[tuple[Any, PublishedPost]]:
    """The dataset's held-out posts under run-unique ids (a rerun is decided again, not found in the ledger)."""
    from tagwatch.moderation.publish import holdout_posts

    name, _, version = dataset.partition("/")
    out = []
    for post, categories in holdout_posts(settings, dataset=name, version=version):
        demo_id = f"{post.post_id}.{run_tag}"[:128]
        out.append((post.model_copy(update={"post_id": demo_id}),
                    PublishedPost(post_id=demo_id, original_id=post.post_id, categories=list(categories),
                                  image_uri=post.image_uri)))
    return out


class DeadLetterReader:
    """Reads the DLQ topic from the start in a thread; keeps post_id (record key) -> reason for our posts."""

    def __init__(self, settings: Settings, wanted: set[str]) -> None:
        self.settings, self.wanted = settings, wanted
        self.found: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dlq-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from tagwatch.clients import kafka_config

        topic = self.settings.kafka.topics.dead_letter
        consumer = KafkaConsumer(enable_auto_commit=False, **kafka_config(self.settings.kafka, client_id="tagwatch-demo-dlq"))
        try:
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)  # Tansu's end offsets are unreliable: read everything, keep ours
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        key = (record.key or b"").decode("utf-8", errors="replace")
                        if key in self.wanted:
                            self.found[key] = json.loads(record.value).get("reason", "unknown")
        except Exception as error:  # the reader is best effort; the wait still counts the ledger
            log.warning("DLQ reader stopped: %s", type(error).__name__)
        finally:
            consumer.close()


def wait_for_outcomes(settings: Settings, *, wanted: set[str], dlq: DeadLetterReader, consumers: Consumers,
                      progress: DemoProgress, timeout_s: float, stall_s: float = 90.0) -> set[str]:
    """Poll the ledger until every wanted post has a record or a dead letter; returns the decided ids."""
    from tagwatch.clients import s3_client
    from tagwatch.moderation.ledger import Ledger

    ledger = Ledger(s3_client(settings.s3), settings.s3.buckets.ledger)
    deadline = time.monotonic() + timeout_s
    decided: set[str] = set()
    last_done, last_change = -1, time.monotonic()
    while True:
        decided = wanted & set(ledger.post_ids())
        done = len(decided | (set(dlq.found) & wanted))
        progress.update("posts decided or dead-lettered", completed=done, total=len(wanted),
                        detail=f"{len(dlq.found)} dead-lettered")
        if done >= len(wanted):
            return decided
        consumers.check_alive()
        if done != last_done:
            last_done, last_change = done, time.monotonic()
        stalled = time.monotonic() - last_change > stall_s
        if time.monotonic() > deadline or stalled:
            why = f"no progress for {stall_s:.0f}s" if stalled else f"after {timeout_s:.0f}s"
            raise CheckFailedError(f"{len(wanted) - done} of {len(wanted)} posts undecided ({why}); consumer says: "
                                   f"{consumers.last_warning()[:300]}",
                                   hint=f"consumer logs: {consumers.log_dir}; `tagwatch stack status`")
        time.sleep(1.0)


def read_decisions(settings: Settings, post_ids: set[str]) -> dict[str, dict[str, Any]]:
    from tagwatch.clients import s3_client
    from tagwatch.moderation.ledger import Ledger

    ledger = Ledger(s3_client(settings.s3), settings.s3.buckets.ledger)
    with ThreadPoolExecutor(8) as pool:
        records = dict(zip(post_ids, pool.map(ledger.get, post_ids), strict=True))
    return {k: v.model_dump(mode="json") for k, v in records.items() if v is not None}


def read_policy(settings: Settings, *, version: int) -> dict[str, Any]:
    from tagwatch.registry import open_registry

    registry = open_registry(settings)
    body = registry.s3.get_object(Bucket=registry.bucket, Key=f"{registry.version_prefix(version)}/policy.json")["Body"].read()
    return json.loads(body)


def read_dataset_manifest(settings: Settings, *, dataset: str):
    """The ``name/version`` dataset's manifest (its ``split_rates`` weight the holdout figures)."""
    from tagwatch.clients import s3_client
    from tagwatch.data.shards import read_manifest

    name, _, version = dataset.partition("/")
    return read_manifest(client=s3_client(settings.s3), bucket=settings.s3.buckets.datasets, name=name,
                         version=version or None)
