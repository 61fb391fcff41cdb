"""The demo's stream summary from plain data: counts, nothing lost unnoticed, throughput and latency (the figures on
the held-out labels: test_demo_holdout.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tagwatch.demo.summary import PublishedPost, category_levels, summarize, thresholds_of

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
THRESHOLDS = {"weapons": {"remove": 0.9, "review": 0.5}, "alcohol": {"remove": 1.000001, "review": 0.3}}


def _decision(action: str, scores: dict[str, float], *, after_s: float, latency_ms: float) -> dict:
    return {"action": action, "scores": scores, "decided_at": (T0 + timedelta(seconds=after_s)).isoformat(),
            "latency_ms": latency_ms}


def _posts() -> tuple[list[PublishedPost], dict[str, dict], dict[str, str]]:
    cats = [["weapons"], ["weapons"], ["other"], ["other"], ["alcohol"], ["other"], ["weapons"], ["other"]]
    published = [PublishedPost(post_id=f"p{i}.r", original_id=f"p{i}", categories=c, image_uri=f"s3://posts/{i}.jpg")
                 for i, c in enumerate(cats)]
    decisions = {
        "p0.r": _decision("remove", {"weapons": 0.95, "alcohol": 0.1}, after_s=1, latency_ms=100),
        "p1.r": _decision("review", {"weapons": 0.6, "alcohol": 0.1}, after_s=2, latency_ms=200),
        "p2.r": _decision("review", {"weapons": 0.55, "alcohol": 0.0}, after_s=2, latency_ms=300),
        "p3.r": _decision("allow", {"weapons": 0.1, "alcohol": 0.2}, after_s=3, latency_ms=400),
        "p4.r": _decision("review", {"weapons": 0.1, "alcohol": 0.4}, after_s=3, latency_ms=500),
        "p5.r": _decision("allow", {"weapons": 0.2, "alcohol": 0.1}, after_s=4, latency_ms=600),
        # p6 dead-lettered, p7 lost
    }
    return published, decisions, {"p6.r": "undecodable_image", "other-run": "bad_json"}


def test_counts_and_nothing_lost_unnoticed() -> None:
    published, decisions, dlq = _posts()
    s = summarize(published=published, decisions=decisions, dead_letters=dlq, publish_started=T0,
                  model={"name": "m", "version": 3})
    assert (s["posts"], s["decided"], s["dead_lettered"], s["lost"]) == (8, 6, 1, 1)
    assert s["lost_post_ids"] == ["p7.r"]
    assert s["actions"] == {"allow": 2, "review": 3, "remove": 1}
    assert s["dlq_by_reason"] == {"undecodable_image": 1}  # another run's dead letter is not ours
    assert s["throughput_posts_s"] == pytest.approx(6 / 4)
    assert s["latency_ms"]["p50"] == pytest.approx(350)


def test_one_instant_gives_no_rate_not_a_crash() -> None:
    published = [PublishedPost("a", "a", ["other"], "s3://p/a")]
    decisions = {"a": _decision("allow", {"weapons": 0.1}, after_s=0, latency_ms=5)}
    s = summarize(published=published, decisions=decisions, dead_letters={}, publish_started=T0, model={})
    assert s["throughput_posts_s"] is None  # one instant: no rate
    assert (s["posts"], s["decided"], s["actions"]["allow"]) == (1, 1, 1)


def test_levels_follow_the_policy_rule() -> None:
    assert category_levels({"weapons": 0.9, "alcohol": 0.29}, THRESHOLDS) == {"weapons": "remove", "alcohol": "none"}
    assert category_levels({"weapons": 0.5}, THRESHOLDS) == {"weapons": "review", "alcohol": "none"}
    policy = {"categories": {"x": {"remove_threshold": 0.8, "review_threshold": 0.2, "positives": 3}}}
    assert thresholds_of(policy) == {"x": {"remove": 0.8, "review": 0.2}}


def test_the_consent_line_names_the_policy_and_what_it_left_out():
    from tagwatch.demo.summary import consent_text

    line = consent_text({"policy": {"granted": "include", "denied": "exclude", "unknown": "exclude"},
                         "excluded": {"denied": 3, "unknown": 2, "erased": 1}, "erasure_list": 4})
    assert "unknown consent excluded" in line and "6 posts left out" in line and "denied 3, unknown 2, erased 1" in line
    assert "4 ids on the erasure list" in line
    assert "not recorded" in consent_text(None)
