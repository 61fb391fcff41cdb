"""Folding reviewer outcomes into a build's train split (tagwatch.data.review_labels): the pure rules. The fetch and
the dedup run for real in tests/integration/test_data_build.py."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from tagwatch.data.build import BuildConfig, BuildReport, PreparedPost, input_version, label_samples
from tagwatch.data.manifest import Vocabulary, VocabularyLabel
from tagwatch.data.posts import Post
from tagwatch.data.review_labels import (FoldedReviews, ReviewedImage, ReviewLabel, fold_review_labels,
                                         review_categories, review_post, review_report, screen_outcomes)
from tagwatch.moderation.events import ReviewOutcome
from tagwatch.moderation.ledger import latest_outcomes

pytestmark = pytest.mark.unit

NAMES = ["weapons", "drugs", "other"]
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def outcome(post_id: str, action: str = "remove", categories=("weapons",), *, minutes: int = 0) -> ReviewOutcome:
    return ReviewOutcome(
        outcome_id=hashlib.md5(f"{post_id}:{minutes}".encode()).hexdigest(), post_id=post_id, decision_id="d-1",
        action=action, categories=list(categories) if action == "remove" else [], reviewer="alice",
        reviewed_at=T0 + timedelta(minutes=minutes), requested_at=T0, time_to_decision_s=60.0 * minutes,
        image_uri=f"s3://posts/images/synthetic/{post_id}.jpg", model_version="3", policy_version="p-1")


def post(post_id: str, consent: str = "granted", caption: str = "#dog") -> Post:
    return Post(post_id=post_id, author_id="u-0123456789abcdef", created_at=T0, caption=caption,
                image_uri=f"s3://posts/images/synthetic/{post_id}.jpg", image_sha256="a" * 64, source="synthetic",
                training_consent=consent)


def test_remove_keeps_its_categories_in_the_builds_order_and_allow_is_a_reviewed_negative() -> None:
    assert review_categories(outcome("p1", categories=("drugs", "weapons")), names=NAMES, other="other") == (
        ("weapons", "drugs"), "")
    assert review_categories(outcome("p1", "allow"), names=NAMES, other="other") == (("other",), "")
    assert review_categories(outcome("p1", categories=("gore",)), names=NAMES, other="other") == (
        None, "unknown_category")
    assert review_categories(outcome("p1", categories=("other",)), names=NAMES, other="other") == (
        None, "unknown_category")
    assert review_categories(outcome("p1", categories=()), names=NAMES, other="other") == (
        None, "remove_without_category")


def test_the_latest_outcome_of_a_post_wins() -> None:
    first, appeal = outcome("p1", minutes=1), outcome("p1", "allow", minutes=9)
    assert latest_outcomes([appeal, first, outcome("p2")])["p1"] == appeal


def test_privacy_is_screened_with_the_posts_rule_before_anything_is_fetched() -> None:
    latest = {p: outcome(p) for p in ("erased-1", "denied-1", "unknown-1", "norecord", "granted-1", "badcat")}
    latest["badcat"] = outcome("badcat", categories=("gore",))
    records = {p.post_id: p for p in (post("erased-1"), post("denied-1", "denied"), post("unknown-1", "unknown"),
                                      post("granted-1"), post("badcat"))}
    screened = screen_outcomes(latest, outcomes_read=9, records=records, unknown="exclude", erased={"erased-1"},
                               names=NAMES, other="other")
    assert [label.post_id for label in screened.labels] == ["granted-1"]
    assert screened.labels[0].record == records["granted-1"] and screened.labels[0].categories == ("weapons",)
    assert screened.excluded == {"erased": 1, "denied": 1, "unknown": 2}  # no record reads as unknown
    assert screened.skipped == {"unknown_category": 1}
    assert (screened.outcomes_read, screened.posts_reviewed) == (9, 6)

    included = screen_outcomes(latest, outcomes_read=9, records=records, unknown="include", erased={"erased-1"},
                               names=NAMES, other="other")
    assert [label.post_id for label in included.labels] == ["granted-1", "norecord", "unknown-1"]
    assert included.excluded == {"erased": 1, "denied": 1, "unknown": 0}
    odd = screen_outcomes({"Stream.Post:1": outcome("Stream.Post:1")}, outcomes_read=1, records={},
                          unknown="include", erased=set(), names=NAMES, other="other")
    assert not odd.labels and odd.skipped == {"unsupported_post_id": 1}  # a shard key ends at the first dot


def label(post_id: str, categories=("weapons",)) -> ReviewLabel:
    return ReviewLabel(post_id=post_id, outcome_id="0" * 32, categories=tuple(categories),
                       image_uri=f"s3://posts/images/x/{post_id}.jpg", reviewed_at=T0)


def test_folding_relabels_train_leaves_val_and_holdout_alone_and_adds_the_rest() -> None:
    splits = {"t": "train", "v": "val", "h": "holdout"}
    folded = fold_review_labels([label("h"), label("n"), label("t", ("other",)), label("v")], splits)
    assert folded.overrides == {"t": ("other",)}
    assert [lab.post_id for lab in folded.new] == ["n"]
    assert folded.left_in_eval == 2


def test_the_report_counts_each_outcome_once_after_the_dedup() -> None:
    ids = ("p-a", "p-b", "p-c", "p-d", "p-e")
    screened = screen_outcomes({p: outcome(p) for p in ids}, outcomes_read=5,
                               records={p: post(p) for p in ids}, unknown="exclude", erased={"p-e"}, names=NAMES,
                               other="other")
    image = ReviewedImage(label=label("p-c"), jpeg=b"", sha256="b" * 64, pdq="0" * 64, pdq_quality=90)
    near = ReviewedImage(label=label("p-d"), jpeg=b"", sha256="c" * 64, pdq="0" * 64, pdq_quality=90)
    folded = FoldedReviews(overrides={"p-a": ("weapons",)}, new=[label("p-c"), label("p-d")], left_in_eval=1,
                           images=[image, near], fetch_skipped=Counter())
    report = review_report(screened, folded, dedup_dropped={"p-d", "unrelated-train-post"})
    assert (report.added_to_train, report.overrode, report.left_in_eval, report.dropped_near_duplicate_of_eval) == (
        1, 1, 1, 1)
    assert report.excluded_privacy == {"denied": 0, "unknown": 0, "erased": 1} and report.labels == 2
    assert report.posts_reviewed == (report.added_to_train + report.overrode + report.left_in_eval
                                     + report.dropped_near_duplicate_of_eval + sum(report.excluded_privacy.values())
                                     + sum(report.skipped.values()))


def test_a_new_example_keeps_its_records_caption_or_stands_alone_without_one() -> None:
    with_record = ReviewedImage(label=ReviewLabel(post_id="post-1", outcome_id="0" * 32, categories=("other",),
                                                  image_uri="s3://posts/images/x/new.jpg", record=post("post-1")),
                                jpeg=b"j", sha256="d" * 64, pdq="1" * 64, pdq_quality=70)
    made = review_post(with_record)
    assert (made.caption, made.source, made.image_sha256, made.pdq) == ("#dog", "synthetic", "d" * 64, "1" * 64)
    alone = review_post(ReviewedImage(label=label("stream-post-1"), jpeg=b"j", sha256="e" * 64, pdq="2" * 64,
                                      pdq_quality=70))
    assert (alone.post_id, alone.caption, alone.source) == ("stream-post-1", "", "review")


def test_review_labels_off_keeps_the_version_a_build_had_before_the_option() -> None:
    posts = [post("post-1"), post("post-2")]
    off = BuildConfig()
    assert "review_labels" not in off.fingerprint()  # the fingerprint of every build before the option
    assert input_version(posts, off, "cats") == input_version(posts, off, "cats", reviews=None)
    on = BuildConfig(review_labels=True)
    assert input_version(posts, on, "cats", reviews=[]) != input_version(posts, off, "cats")
    one = input_version(posts, on, "cats", reviews=[label("post-1")])
    assert one == input_version(list(reversed(posts)), on, "cats", reviews=[label("post-1")])  # deterministic
    assert one != input_version(posts, on, "cats", reviews=[label("post-1", ("other",))])  # the label is an input


def test_a_reviewed_train_sample_needs_no_hashtag_label() -> None:
    vocabulary = Vocabulary(version="v", labels=[VocabularyLabel(index=0, name="dog", count=3)], sha256="x")
    items = [PreparedPost(post=post("plain"), keys=[], categories=["other"]),
             PreparedPost(post=post("reviewed"), keys=[], categories=["weapons"], reviewed=True)]
    report = BuildReport(name="n")
    samples = label_samples(prepared=items, vocabulary=vocabulary, key_map={}, report=report)
    assert [(s.post_id, s.categories, s.labels, s.weight) for s, _ in samples["train"]] == [
        ("reviewed", ["weapons"], [], 1.0)]
    assert report.skipped == {"no_labels_train": 1}


def test_the_model_lineage_carries_the_count_from_its_checkpoint() -> None:
    from tagwatch.export.checkpoint import lineage_of

    assert lineage_of({"model_config": {"arch": "tiny_cnn"}, "review_labels": 4}, uri="s3://c/r")["review_labels"] == 4
    assert lineage_of({"model_config": {}}, uri="s3://c/r")["review_labels"] is None  # a run from before the field
