"""The demo's summary figures from plain data: counts, nothing lost unnoticed, precision/recall and chance."""

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
    s = summarize(published=published, decisions=decisions, dead_letters=dlq, categories=["weapons", "alcohol"],
                  thresholds=THRESHOLDS, publish_started=T0, model={"name": "m", "version": 3})
    assert (s["posts_published"], s["decided"], s["dead_lettered"], s["lost"]) == (8, 6, 1, 1)
    assert s["lost_post_ids"] == ["p7.r"]
    assert s["decisions_by_action"] == {"allow": 2, "review": 3, "remove": 1}
    assert s["dlq_by_reason"] == {"undecodable_image": 1}  # another run's dead letter is not ours
    assert s["throughput_posts_s"] == pytest.approx(6 / 4)
    assert s["latency_ms"]["p50"] == pytest.approx(350)


def test_precision_recall_and_chance_per_category() -> None:
    published, decisions, dlq = _posts()
    s = summarize(published=published, decisions=decisions, dead_letters=dlq, categories=["weapons", "alcohol"],
                  thresholds=THRESHOLDS, publish_started=T0, model={})
    w = s["per_category"]["weapons"]
    # decided posts p0..p5: weapons positives p0, p1; flagged (>= 0.5) p0, p1, p2
    assert (w["posts"], w["positives"], w["flagged"], w["true_positives"]) == (6, 2, 3, 2)
    assert w["precision"] == pytest.approx(2 / 3) and w["recall"] == 1.0
    assert w["chance_precision"] == pytest.approx(2 / 6) and w["chance_recall"] == pytest.approx(3 / 6)
    assert w["precision_lift"] == pytest.approx(2.0) and w["recall_lift"] == pytest.approx(2.0)
    assert (w["removed"], w["remove_precision"], w["remove_recall"]) == (1, 1.0, 0.5)
    assert w["confusion"] == [[3, 1, 0], [0, 1, 1]]  # rows neg/pos, columns none/review/remove
    assert w["ap"] == pytest.approx(1.0)  # both positives have the top scores
    a = s["per_category"]["alcohol"]
    assert (a["positives"], a["flagged"], a["precision"], a["recall"]) == (1, 1, 1.0, 1.0)
    assert a["remove_precision"] is None  # never removes: no precision to speak of


def test_no_positives_gives_none_not_a_crash() -> None:
    published = [PublishedPost("a", "a", ["other"], "s3://p/a")]
    decisions = {"a": _decision("allow", {"weapons": 0.1}, after_s=0, latency_ms=5)}
    s = summarize(published=published, decisions=decisions, dead_letters={}, categories=["weapons"],
                  thresholds={"weapons": {"remove": 0.9, "review": 0.5}}, publish_started=T0, model={})
    w = s["per_category"]["weapons"]
    assert (w["recall"], w["precision"], w["ap"], w["base_rate"]) == (None, None, None, 0.0)
    assert s["throughput_posts_s"] is None  # one instant: no rate


def test_levels_follow_the_policy_rule() -> None:
    assert category_levels({"weapons": 0.9, "alcohol": 0.29}, THRESHOLDS) == {"weapons": "remove", "alcohol": "none"}
    assert category_levels({"weapons": 0.5}, THRESHOLDS) == {"weapons": "review", "alcohol": "none"}
    policy = {"categories": {"x": {"remove_threshold": 0.8, "review_threshold": 0.2, "positives": 3}}}
    assert thresholds_of(policy) == {"x": {"remove": 0.8, "review": 0.2}}
