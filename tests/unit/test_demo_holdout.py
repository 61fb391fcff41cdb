"""The demo's figures on the held-out posts, from the stream's decisions: values worked out by hand on a constructed
run (tests/unit/demo_holdout_case.py), the summary.json object they go into (every field documented in
docs/demo.md) and the printed tables (review rate against the budget, each category's mode, 80 columns)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from tagwatch.demo.console import print_summary
from tagwatch.demo.holdout import budget_threshold, holdout_figures
from tagwatch.demo.summary import summarize
from tagwatch.train.population import AS_SAMPLED, NATURAL
from tests.unit.demo_holdout_case import CATEGORIES, MANIFEST, POLICY, T0, build_case

DOCS = Path(__file__).resolve().parents[2] / "docs" / "demo.md"


def _figures(manifest=MANIFEST) -> dict:
    published, decisions, _ = build_case()
    return holdout_figures(published=published, decisions=decisions, categories=CATEGORIES, policy=POLICY,
                           manifest=manifest, resamples=200)


def test_overall_figures_are_weighted_to_natural_traffic_beside_the_raw_stream_share() -> None:
    f = _figures()
    assert (f["holdout_posts"], f["population"], f["weighted"]) == (20, NATURAL, True)
    # reviewed: p2 (positive, 2.5), p5 and the bank match p7 (others, 10 each) -> 22.5 of 162.5; raw 3 of 20
    assert f["review_rate"]["value"] == pytest.approx(22.5 / 162.5)
    assert f["review_rate"]["low"] < f["review_rate"]["value"] < f["review_rate"]["high"]
    assert (f["review_rate"]["budget"], f["review_rate"]["within_budget"]) == (0.05, False)
    assert (f["review_rate_stream"]["value"], f["review_rate_stream"]["reviewed"]) == (pytest.approx(0.15), 3)
    assert f["remove_rate"]["value"] == pytest.approx(5 / 162.5)
    assert f["recall"]["value"] == pytest.approx(3 / 4)  # weapons positives caught; alcohol only monitors
    assert f["policy"]["version"] == "policy-test" and f["policy"]["constraints"]["review_budget"] == 0.05


def test_acting_category_figures_with_chance_and_operating_points() -> None:
    w = _figures()["categories"]["weapons"]
    assert (w["mode"], w["positives"], w["flagged"], w["removed"]) == ("act", 4, 4, 2)
    assert w["ap"]["value"] == pytest.approx((1 + 1 + 1 + 4 / 5) / 4)
    assert w["ap"]["low"] <= w["ap"]["value"] <= w["ap"]["high"]
    assert w["chance_ap"] == pytest.approx(4 / 20)  # AP is on the stream as sampled
    assert w["precision"]["value"] == pytest.approx(7.5 / 17.5)  # p0-p2 (2.5 each) and p5 (10) flagged
    assert w["chance"] == pytest.approx(10 / 162.5)
    assert w["recall"]["value"] == pytest.approx(0.75) and w["chance_recall"] == pytest.approx(17.5 / 162.5)
    assert w["review_rate"]["value"] == pytest.approx(12.5 / 162.5)
    assert w["remove_precision"]["value"] == 1.0 and w["remove_enabled"] is True
    assert w["confusion"] == [[15, 1, 0], [1, 1, 2]]
    points = w["points"]
    assert points["review"]["threshold"] == 0.5 and points["review"]["recall"]["value"] == pytest.approx(0.75)
    assert points["remove"]["recall"]["value"] == pytest.approx(0.5)
    # budget 5 % of 162.5 = 8.125: p0, p1, p2 (7.5) fit, p5 (10 more) does not
    assert points["budget"]["threshold"] == 0.7 and points["budget"]["share"] == pytest.approx(7.5 / 162.5)
    assert points["budget"]["precision"]["value"] == 1.0


def test_monitor_category_counts_hits_and_says_why() -> None:
    a = _figures()["categories"]["alcohol"]
    assert a["mode"] == "monitor" and "calibration positives" in a["reason"]
    assert (a["monitor_hits"], a["monitor_hits_stream"]) == (2, 2)  # p4 (positive), p6
    assert a["monitor_precision"]["value"] == pytest.approx(2.5 / 12.5)
    assert "precision" not in a and a["confusion"] == [[19, 0, 0], [1, 0, 0]]  # never actioned


def test_without_split_rates_the_figures_are_unweighted_and_say_so() -> None:
    f = _figures(manifest=None)
    assert (f["population"], f["weighted"]) == (AS_SAMPLED, False)
    assert f["review_rate"]["value"] == pytest.approx(f["review_rate_stream"]["value"])


def test_budget_threshold_keeps_ties_together() -> None:
    assert budget_threshold([0.9, 0.8, 0.8, 0.1], None, 0.5) == 0.9  # 0.8 twice would make 3 of 4
    assert budget_threshold([0.9, 0.8], None, 0.1) is None
    assert budget_threshold([], None, 0.1) is None


def _summary() -> dict:
    published, decisions, dead = build_case()
    s = summarize(published=published, decisions=decisions, dead_letters=dead, publish_started=T0,
                  model={"name": "m", "version": 2, "policy_version": "policy-test"})
    s.update(_figures())
    s.update({"mode": "quick", "dataset": "hashtags/v1", "run_tag": "d1", "reused": [], "ingest": {},
              "training": {"step_seconds": {"pretrain": 2.0}}, "consumers": [], "thresholds": {},
              "stage_seconds": {"report": 1.0}, "wall_seconds": 3.0})
    return s


def test_summary_json_is_one_documented_object(tmp_path: Path) -> None:
    from tests.unit.test_demo_report import write_test_report

    out = write_test_report(tmp_path, _summary())
    data = json.loads((out / "summary.json").read_text())
    assert data["schema_version"] == 2
    assert (data["posts"], data["decided"], data["dead_lettered"], data["lost"]) == (21, 20, 1, 0)
    assert data["actions"] == {"allow": 15, "review": 3, "remove": 2}
    assert set(data["review_rate"]) >= {"value", "low", "high", "budget", "within_budget"}
    assert data["categories"]["weapons"]["precision"]["low"] is not None
    documented = set(re.findall(r"^\| `([a-z_]+)`", DOCS.read_text(), flags=re.M))
    assert set(data) - documented == set(), "summary.json fields missing from the table in docs/demo.md"
    per_category = set(data["categories"]["weapons"]) | set(data["categories"]["alcohol"])
    assert {f"categories.{k}" for k in per_category} - set(re.findall(r"^\| `(categories\.[a-z_]+)`", DOCS.read_text(),
                                                                        flags=re.M)) == set()


def test_printed_tables_show_the_review_rate_and_every_mode_in_80_columns() -> None:
    buffer = io.StringIO()
    print_summary(Console(file=buffer, width=80, force_terminal=False, color_system=None), _summary())
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "review rate, natural traffic" in text and "vs budget 5.0 %" in text
    assert "review share of this stream" in text
    for name, mode in (("weapons", "act"), ("alcohol", "monitor:")):
        assert re.search(rf"{name}\s+│ mode\s+│ {mode}", text), text
    assert "auto-remove" in text and "monitor hits" in text
