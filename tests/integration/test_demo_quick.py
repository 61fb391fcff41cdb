"""`tagwatch demo --quick` end to end as a user runs it: a private stack (own state dir, free ports) brought up by
the demo itself, the openclipart quick subset, a real (tiny) training run, the stack's Triton, two consumer
processes, the held-out posts published and every one decided. Checked from the run's summary.json: nothing lost,
the review rate with its CI and budget, every category's mode, quality far above chance where the holdout has
enough positives, and the report renders (HTML parses, every
image it links exists and is a PNG/JPEG). `stack down` in the cleanup stops everything, Triton included."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import psutil
import pytest

from tagwatch.demo.report import verify_report
from tests.conftest import run_cli

MIN_POSITIVES = 10  # below this a held-out precision/recall says nothing (openclipart: weapons only)


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~2.5 min here; the demo's own budget is 5 min, plus room for a loaded machine
def test_demo_quick_decides_every_post_and_writes_a_report(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TAGWATCH_")},
           "TAGWATCH_PATHS__STATE_DIR": str(tmp_path / "state"), "TAGWATCH_STACK__FREE_PORTS": "true",
           "TAGWATCH_STACK__START_TIMEOUT_S": "60", "TAGWATCH_S3__SECRET_ACCESS_KEY": f"demo-{secrets.token_hex(8)}"}
    report = tmp_path / "report"
    try:
        result = run_cli("demo", "--quick", "--report-dir", str(report), env=env, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        summary = json.loads((report / "summary.json").read_text())
        assert summary["posts"] > 50
        assert summary["lost"] == 0
        assert summary["decided"] + summary["dead_lettered"] == summary["posts"]
        assert sum(summary["actions"].values()) == summary["decided"]
        review = summary["review_rate"]
        assert review["value"] is not None and review["low"] <= review["value"] <= review["high"], review
        assert review["budget"] == summary["policy"]["constraints"]["review_budget"]
        assert summary["review_rate_stream"]["reviewed"] == summary["actions"]["review"]
        for name, c in summary["categories"].items():  # every category acts with figures or says why it does not
            assert c["mode"] in ("act", "monitor", "off"), (name, c)
            assert c["mode"] != "monitor" or c["reason"], (name, c)
            assert c["mode"] != "act" or "precision" in c and "remove_precision" in c, (name, c)
        measured = [c for c in summary["categories"].values() if c["positives"] >= MIN_POSITIVES]
        assert measured, summary["categories"]
        for c in measured:
            # chance: a random scorer's AP is the base rate; a random flagger of the same volume has precision =
            # the prevalence and recall = its flag rate
            assert c["ap"]["value"] >= 2 * c["chance_ap"], c
            if c["mode"] == "act" and c["flagged"]:
                assert c["precision"]["value"] > c["chance"], c
                assert c["recall"]["value"] > c["chance_recall"], c
        assert verify_report(report) == []
        # the nudity model ran beside the main one on every decided post (its category monitors)
        nudity = summary["signals"]["image.nudity"]
        assert nudity["posts"] == summary["decided"] and summary["signals"]["image"]["posts"] == summary["decided"]
        assert "<h2>Signals</h2>" in (report / "index.html").read_text()
        assert (report / "stream-pr.png").is_file() and (report / "training-zipf.png").is_file()
        assert len(list((report / "examples").glob("*.jpg"))) >= 10
        assert "lost" in result.stdout and "budget" in result.stdout  # Rich wraps at 80: single words only
        acting = [n for n, c in summary["categories"].items() if c["mode"] == "act"]
        assert all(summary["figures"].get(f"operating_point:{n}") for n in acting), summary["figures"]
    finally:
        down = run_cli("stack", "down", env=env, timeout=120)
        assert down.returncode == 0, down.stderr
    state = str(tmp_path / "state")
    leftovers = [p.pid for p in psutil.process_iter(["cmdline", "environ"])
                 if _mentions(p, state) and p.pid != os.getpid()]
    assert leftovers == [], f"processes of this demo still running: {leftovers}"


def _mentions(process: psutil.Process, state_dir: str) -> bool:
    try:
        return state_dir in " ".join(process.info["cmdline"] or []) or \
            (process.info["environ"] or {}).get("TAGWATCH_PATHS__STATE_DIR") == state_dir
    except (psutil.Error, TypeError):
        return False
