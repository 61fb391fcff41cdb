"""`tagwatch moderate --stats-out` and the demo's stats reader, run as a user's plain shell runs them.

The child processes get no terminal (stdout is a file), so a rich Console would wrap at 80 columns
(PLATFORM.md); the stats dict is longer than that. Real processes, real Tansu group, real ONNX model (no Triton).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tagwatch.clients import s3_client
from tagwatch.demo.stages import Consumers
from tagwatch.moderation.publish import new_post, publish_posts, upload_image
from tagwatch.moderation.runstats import child_stats_path
from tests.support import colour_model as cm
from tests.support.stream import private_stream, stream_env

POSTS = 6
FIELDS = {"consumed", "decided", "dead_lettered"}


@pytest.fixture
def stream(stack_settings, tmp_path):
    settings = private_stream(stack_settings, partitions=2)
    s3 = s3_client(settings.s3)
    posts = []
    for n in range(POSTS):
        uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg([cm.RED, cm.BLUE, cm.GREY][n % 3], seed=n))
        posts.append(new_post(f"stats-{n}-{settings.kafka.consumer_group}", uri, digest))
    assert publish_posts(settings, posts) == POSTS
    model, policy = tmp_path / "colour.onnx", tmp_path / "policy.json"
    cm.build(model)
    policy.write_text(cm.POLICY.model_dump_json())
    onnx_args = ("--onnx", str(model), "--categories", ",".join(cm.CATEGORIES), "--policy", str(policy),
                 "--max-poll-records", "8", "--idle-exit", "4")
    return settings, onnx_args


def test_stats_out_with_processes_writes_each_child_and_the_sums(stream, tmp_path):
    settings, onnx_args = stream
    stats_file = tmp_path / "out" / "stats.json"
    with open(tmp_path / "moderate.log", "wb") as log:
        result = subprocess.run([sys.executable, "-m", "tagwatch", "moderate", *onnx_args, "--processes", "2",
                                 "--stats-out", str(stats_file)],
                                env=stream_env(settings), stdout=log, stderr=subprocess.PIPE, timeout=120)
    output = (tmp_path / "moderate.log").read_text()
    assert result.returncode == 0, output + result.stderr.decode(errors="replace")[-3000:]
    children = [json.loads(child_stats_path(stats_file, i).read_text()) for i in range(2)]
    totals = json.loads(stats_file.read_text())
    assert totals["processes"] == 2 and totals["reported"] == 2
    assert totals["consumed"] == totals["decided"] == POSTS and totals["dead_lettered"] == 0
    for field in FIELDS:
        assert totals[field] == sum(child[field] for child in children), field
    # stdout (not a terminal) carries each child's stats as one unwrapped JSON line, logs went to stderr
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert sorted(lines, key=json.dumps) == sorted(children, key=json.dumps)
    assert all(len(json.dumps(child)) > 80 for child in children)  # long enough that an 80-column wrap would break it


def test_the_demo_reads_each_consumers_stats_file_not_its_log(stream, tmp_path, monkeypatch):
    settings, onnx_args = stream
    for name, value in stream_env(settings).items():  # Consumers.start passes its own environment on
        if name.startswith("TAGWATCH_"):
            monkeypatch.setenv(name, value)
    group = Consumers(settings, processes=2, log_dir=tmp_path / "logs", moderate_args=onnx_args)
    try:
        group.start()
        deadline = time.monotonic() + 120
        while any(child.poll() is None for child in group.children) and time.monotonic() < deadline:
            time.sleep(0.5)  # --idle-exit: both leave on their own once every post is decided
    finally:
        stats = group.stop()
    logs = [(tmp_path / "logs" / f"consumer-{i}.log").read_text(errors="replace") for i in range(2)]
    assert len(stats) == 2, logs
    assert sum(s["decided"] for s in stats) == POSTS, (stats, logs)
    assert all("moderating" in text for text in logs)  # the logs are still there for people
    assert all(len(json.dumps(s)) > 80 for s in stats)


def test_a_consumer_killed_before_its_end_reports_no_stats(stream, tmp_path, monkeypatch):
    """A stale or missing stats file is never passed off as this run's: the demo gets only what was written."""
    settings, onnx_args = stream
    stale = tmp_path / "logs" / "consumer-0.stats.json"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"consumed": 999, "decided": 999}))
    for name, value in stream_env(settings).items():
        if name.startswith("TAGWATCH_"):
            monkeypatch.setenv(name, value)
    group = Consumers(settings, processes=1, log_dir=tmp_path / "logs", moderate_args=onnx_args)
    group.start()
    deadline = time.monotonic() + 60
    log = tmp_path / "logs" / "consumer-0.log"
    while "moderating" not in log.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(group.children[0].pid, signal.SIGKILL)
    assert group.stop() == []
