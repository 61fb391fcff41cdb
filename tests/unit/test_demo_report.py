"""The demo's report: a self-contained directory whose HTML parses, escapes what it shows, and links only images
that exist inside it; and the checker that says so (used by the demo and its integration test)."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from tagwatch.demo.holdout import holdout_figures
from tagwatch.demo.report import choose_examples, render_html, verify_report, write_report
from tagwatch.demo.summary import PublishedPost, summarize
from tests.unit.demo_holdout_case import MANIFEST, build_case

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def _run(n: int = 12):
    published, decisions = [], {}
    for i in range(n):
        pid = f"p{i}<script>alert(1)</script>" if i == 0 else f"p{i}"
        published.append(PublishedPost(pid, pid, ["weapons"] if i % 3 == 0 else ["other"], f"s3://posts/{i}.jpg"))
        action = ("remove", "review", "allow")[i % 3]
        decisions[pid] = {"action": action, "scores": {"weapons": 1 - i / n}, "latency_ms": 10.0 + i,
                          "decided_at": T0.replace(second=i % 60).isoformat()}
    thresholds = {"weapons": {"remove": 0.9, "review": 0.5}}
    policy = {"version": "p1", "categories": {"weapons": {"remove_threshold": 0.9, "review_threshold": 0.5}}}
    summary = summarize(published=published, decisions=decisions, dead_letters={}, publish_started=T0,
                        model={"name": "m<b>", "version": 1})
    summary.update(holdout_figures(published=published, decisions=decisions, categories=["weapons"], policy=policy,
                                   resamples=50))
    summary.update({"mode": "quick", "dataset": "hashtags/v1", "stage_seconds": {"ingest": 1.0},
                    "training": {"step_seconds": {"pretrain": 2.0}}, "reused": ["dataset <v1>"]})
    return published, decisions, thresholds, summary


def test_write_report_is_self_contained_and_verified(tmp_path: Path) -> None:
    published, decisions, thresholds, summary = _run()
    training_png = tmp_path / "curves.png"
    Image.new("RGB", (10, 10)).save(training_png, format="PNG")
    images = {p.image_uri: _jpeg((20 * i, 0, 0)) for i, p in enumerate(published)}
    out = tmp_path / "report"
    index = write_report(out_dir=out, summary=summary, published=published, decisions=decisions, thresholds=thresholds,
                         training_plots={"training_curves": str(training_png), "zipf": str(tmp_path / "missing.png")},
                         fetch_image=images.__getitem__)
    assert verify_report(out) == []
    text = index.read_text()
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text  # escaped, not executed
    assert "m&lt;b&gt;" in text and "dataset &lt;v1&gt;" in text
    assert (out / "training-training_curves.png").is_file() and not (out / "training-zipf.png").exists()
    assert len(list((out / "examples").glob("*.jpg"))) == len(published)  # fewer than the 24-example limit
    assert (out / "summary.json").is_file()


def write_test_report(tmp_path: Path, summary: dict) -> Path:
    """The constructed run of demo_holdout_case.py written as a report; returns its directory."""
    published, decisions, _ = build_case()
    images = {p.image_uri: _jpeg((10 * i, 0, 0)) for i, p in enumerate(published)}
    out = tmp_path / "report"
    write_report(out_dir=out, summary=summary, published=published, decisions=decisions, manifest=MANIFEST,
                 thresholds={"weapons": {"remove": 0.9, "review": 0.5}, "alcohol": {"remove": 2.0, "review": 2.0}},
                 training_plots={}, fetch_image=images.__getitem__)
    return out


def test_report_shows_operating_points_per_acting_category_and_the_monitor_list(tmp_path: Path) -> None:
    from tests.unit.test_demo_holdout import _summary

    out = write_test_report(tmp_path, _summary())
    assert verify_report(out) == []
    text = (out / "index.html").read_text()
    assert (out / "operating-point-00-weapons.png").is_file()  # acting: plotted
    assert not list(out.glob("operating-point-01-*"))  # alcohol monitors: listed, not plotted
    assert 'src="operating-point-00-weapons.png"' in text and "Monitor mode" in text
    assert "<b>alcohol</b>: 2 hits" in text and "calibration positives" in text
    assert "review rate, natural traffic (est.)" in text and "0.43 [" in text  # weapons precision with its CI
    assert Image.open(out / "operating-point-00-weapons.png").format == "PNG"
    # the review queue: how many went there, how to open the app, and its screenshot (docs/img, committed)
    assert "<h2>Review queue</h2>" in text and "tagwatch review serve" in text
    assert 'src="review-queue.png"' in text and Image.open(out / "review-queue.png").format == "PNG"


def test_verify_report_finds_what_is_broken(tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_text("not an image")
    (tmp_path / "index.html").write_text(
        '<html><body><div><img src="fake.png"><img src="gone.png"><img src="../outside.png">'
        '<img src="http://example.com/x.png"></div></body></html>')
    problems = verify_report(tmp_path)
    assert any("fake.png: neither PNG nor JPEG" in p for p in problems)
    assert any("gone.png: missing" in p for p in problems)
    assert any("../outside.png: not a file inside" in p for p in problems)
    assert any("http://example.com/x.png: not a file inside" in p for p in problems)
    (tmp_path / "index.html").write_text("<html><body><div><p>text</div></body></html>")
    assert any("unbalanced" in p or "unclosed" in p for p in verify_report(tmp_path))
    assert verify_report(tmp_path / "nowhere") != []


def test_examples_prefer_removes_reviews_and_misses() -> None:
    published, decisions, _, _ = _run(40)
    chosen = choose_examples(published, decisions, limit=24)
    actions = [decisions[p.post_id]["action"] for p in chosen]
    assert len(chosen) == 24 and actions[:8] == ["remove"] * 8 and actions[8:16] == ["review"] * 8
    assert len({p.post_id for p in chosen}) == 24


def test_render_html_without_decisions_still_renders() -> None:
    _, _, _, summary = _run(0)
    text = render_html(summary, figures={}, examples=[])
    assert text.startswith("<!DOCTYPE html>") and "tagwatch demo" in text
