"""Caption signals, one policy over all signals, and hash-bank exchange files (issue 21, parts 2-4), without services.

The offensive-language signal is alt-profanity-check's real shipped model; the image model is the colour ONNX model
of the stream tests, in-process.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from tagwatch.errors import ConfigError
from tagwatch.moderation.bank import BankEntry, BankMatcher, HashBank, pdq_hex
from tagwatch.moderation.bank_import import parse_entry, read_exchange_file
from tagwatch.moderation.core import LoadedImage, moderate_batch
from tagwatch.moderation.events import Decision, SignalScore
from tagwatch.moderation.policy import Policy, decide, monitor_hits
from tagwatch.moderation.publish import new_post
from tagwatch.moderation.scoring import OnnxScorer
from tagwatch.moderation.signals import build_text_signals, default_rules
from tagwatch.moderation.signals.spam import spam_features
from tagwatch.preprocess import DEFAULT_PRESET
from tests.support import colour_model as cm

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "banks"
ABUSIVE = "you are a stupid worthless idiot, shut the fuck up"
BENIGN = "sunset over the harbour with my grandmother"
SPAM = "FREE FOLLOWERS dm me now bit.ly/x1y2z3 " + " ".join(f"#tag{i}" for i in range(20))

SIGNAL_POLICY = Policy.model_validate({"version": "signals-policy-1", "categories": {
    **cm.POLICY.model_dump()["categories"],
    "offensive_text": {"mode": "act", "review_threshold": 0.8, "remove_threshold": 1.1,
                       "inputs": ["caption.offensive:offensive_text"]},
    "spam": {"mode": "act", "review_threshold": 0.6, "inputs": ["caption.spam:spam"]},
}})


@pytest.fixture(scope="module")
def signals():
    return build_text_signals(["caption.offensive", "caption.spam"])


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    path = tmp_path_factory.mktemp("colour") / "model.onnx"
    return OnnxScorer(path, cm.CATEGORIES, cm.build(path))


def test_offensive_caption_scores_abuse_high_and_ordinary_text_low(signals):
    offensive = signals[0]
    abusive, benign, empty = offensive.score([ABUSIVE, BENIGN, "  "])
    assert offensive.name == "caption.offensive" and offensive.version == "alt-profanity-check==1.9.1"
    assert abusive.scores["offensive_text"] > 0.9 > 0.2 > benign.scores["offensive_text"]
    assert empty.scores == {"offensive_text": 0.0} and empty.detail == "no caption"


def test_spam_heuristics_name_each_feature_and_leave_plain_captions_alone():
    assert spam_features(BENIGN) == {}
    features = spam_features(SPAM)
    assert set(features) == {"link_shortener", "links", "hashtag_stuffing", "bait_phrases"}
    assert features["link_shortener"] == 0.5 and features["hashtag_stuffing"] == 0.4
    assert spam_features("buy now buy now buy now buy now")
    assert spam_features("see https://example.org") == {"links": 0.15}


@pytest.mark.parametrize("hostile", ["a" * 10_000, "a." * 5_000, "a-" * 5_000 + "!", "ab" * 5_000, "#a" * 5_000,
                                     "https://" + "a." * 4_000])
def test_spam_heuristics_read_hostile_captions_token_by_token(hostile):
    """Each pattern sees one token of at most 200 characters (an unanchored URL pattern took 1.5 s on "a." * 5000)."""
    features = spam_features(hostile)
    assert set(features) <= {"repetition", "hashtag_stuffing", "links"} and sum(features.values()) <= 1


def test_unknown_signal_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown signal"):
        build_text_signals(["caption.sarcasm"])


def test_rules_read_signal_inputs_and_signals_default_to_monitor(signals):
    caption = [SignalScore(name="caption.offensive", version="v", scores={"offensive_text": 0.97}),
               SignalScore(name="caption.spam", version="v", scores={"spam": 0.7})]
    action, reasons = decide({"red": 0.1, "blue": 0.1}, SIGNAL_POLICY, signals=caption)
    assert action == "review"
    assert reasons[0] == "policy:offensive_text>=0.800 (0.970 via caption.offensive:offensive_text)"
    # the policy of the image model alone: the caption signals' own rules count the hits and never act
    action, reasons = decide({"red": 0.1, "blue": 0.1}, cm.POLICY, signals=caption, defaults=default_rules(signals))
    assert action == "allow" and monitor_hits(reasons) == ["offensive_text", "spam"]
    # a rule may combine signals: the highest present score counts
    combined = Policy.model_validate({"version": "c", "categories": {"hate": {
        "review_threshold": 0.5, "inputs": ["caption.offensive:offensive_text", "bank:hate", "image:red"]}}})
    assert decide({"red": 0.6}, combined, signals=[])[0] == "review"
    assert decide({"red": 0.1}, combined, signals=caption)[1] == [
        "policy:hate>=0.500 (0.970 via caption.offensive:offensive_text)"]


def _entry(category="terrorism", action="remove", pdq="0" * 64):
    return BankEntry(entry_id="ex-1", pdq=pdq, reason="propaganda", added_at="2026-11-01T00:00:00Z",
                     category=category, action=action)


def test_a_bank_match_takes_its_entry_action_unless_its_category_is_monitored():
    hit = ("tvec", _entry(), 3)
    assert decide({}, cm.POLICY, bank_hit=hit) == (
        "remove", ["bank:tvec:ex-1 category=terrorism (propaganda; distance 3)"])
    assert decide({}, cm.POLICY, bank_hit=("tvec", _entry(action="review"), 3))[0] == "review"
    monitored = Policy.model_validate({"version": "m", "categories": {"terrorism": {
        "mode": "monitor", "inputs": ["bank:terrorism"]}}})
    action, reasons = decide({}, monitored, bank_hit=hit)
    assert action == "allow" and monitor_hits(reasons) == ["terrorism"]
    off = Policy.model_validate({"version": "o", "categories": {"terrorism": {"mode": "off"}}})
    assert decide({}, off, bank_hit=hit) == ("allow", [])


def _posts(specs):
    blobs, posts = {}, []
    for n, (colour, caption) in enumerate(specs):
        data = cm.jpeg(colour, seed=n)
        uri = f"s3://posts/{n}.jpg"
        blobs[uri] = data
        posts.append(new_post(f"p{n}", uri, hashlib.sha256(data).hexdigest()).model_copy(update={"caption": caption}))
    return posts, blobs


def _images(blobs):
    def load(post):
        image = Image.open(io.BytesIO(blobs[post.image_uri]))
        image.load()
        return LoadedImage(image=image, sha256=post.sha256, pdq=pdq_hex(image)[0])
    return load


def test_the_batch_decision_lists_every_signal_and_flags_an_abusive_caption_on_an_allowed_image(scorer, signals):
    posts, blobs = _posts([(cm.GREY, ABUSIVE), (cm.GREY, BENIGN), (cm.GREY, SPAM)])
    bank = HashBank(name="tvec", entries=[_entry(pdq="f" * 64)])
    abusive, benign, spam = moderate_batch(
        posts, images=_images(blobs), scorer=scorer, banks=BankMatcher([bank]), policy=SIGNAL_POLICY,
        preset=DEFAULT_PRESET, signals=signals)
    assert (abusive.decision.action, benign.decision.action, spam.decision.action) == ("review", "allow", "review")
    assert abusive.decision.reasons[0].startswith("policy:offensive_text>=0.800")
    assert spam.decision.reasons[0].startswith("policy:spam>=0.600")
    names = [s.name for s in abusive.decision.signals]
    assert names == ["image", "caption.offensive", "caption.spam", "bank"]
    image = abusive.decision.signals[0]
    assert image.version == f"{scorer.model.name}/{scorer.model.version}" and image.scores == abusive.decision.scores
    assert abusive.review.signals == abusive.decision.signals
    assert abusive.decision.signals[3].detail == "no match"
    # the image alone would be allowed: same post, no caption signals
    (alone,) = moderate_batch(posts[:1], images=_images(blobs), scorer=scorer, banks=None, policy=SIGNAL_POLICY,
                              preset=DEFAULT_PRESET)
    assert alone.decision.action == "allow" and [s.name for s in alone.decision.signals] == ["image"]


def test_a_bank_remove_skips_the_model_and_a_bank_review_still_scores(scorer):
    posts, blobs = _posts([(cm.GREY, ""), (cm.BLUE, "")])
    hashes = [pdq_hex(Image.open(io.BytesIO(blobs[p.image_uri])))[0] for p in posts]
    bank = HashBank(name="tvec", entries=[_entry(pdq=hashes[0]),
                                          _entry(category="violent_extremism", action="review", pdq=hashes[1])])
    removed, reviewed = moderate_batch(posts, images=_images(blobs), scorer=scorer, banks=BankMatcher([bank]),
                                       policy=cm.POLICY, preset=DEFAULT_PRESET)
    assert removed.decision.action == "remove" and removed.decision.reasons[0].startswith(
        "bank:tvec:ex-1 category=terrorism")
    assert removed.decision.signals[0].detail == "not run: bank match"
    assert removed.decision.signals[-1].scores == {"terrorism": 1.0}
    assert reviewed.decision.signals[0].scores["blue"] > 0.9  # scored: the model's remove beats the bank's review
    assert reviewed.decision.action == "remove"
    assert reviewed.decision.reasons[1].startswith("bank:tvec:ex-1 category=violent_extremism")


def test_old_decisions_and_banks_still_parse():
    old = {"decision_id": "d", "post_id": "p", "action": "allow", "scores": {}, "reasons": [],
           "model": {"name": "m", "version": "1", "sha256": "x"}, "policy_version": "p1",
           "decided_at": "2026-11-01T00:00:00Z", "latency_ms": 1.0}
    assert Decision.model_validate(old).signals == []
    entry = BankEntry.model_validate({"entry_id": "e", "pdq": "0" * 64, "reason": "r",
                                      "added_at": "2026-11-01T00:00:00Z"})
    assert (entry.category, entry.action) == ("other", "remove")


def test_exchange_files_parse_and_bad_rows_are_skipped_with_a_reason():
    rows = read_exchange_file(FIXTURES / "example.csv")
    parsed = [parse_entry(row, category="other", action="remove", source="x") for _, row in rows]
    assert [p if isinstance(p, str) else (p.category, p.action) for p in parsed] == [
        ("terrorism", "remove"), ("violent_extremism", "review"), "quality < 50", "pdq not 64 hex digits"]
    (line, first), _ = read_exchange_file(FIXTURES / "example.json")
    entry = parse_entry(first, category="other", action="remove", source="x")
    assert line == 1 and entry.entry_id == "ex-0003" and entry.quality == 100 and entry.source == "example-hash-sharing"
    assert parse_entry({"pdq": "a" * 64}, category="other", action="remove", source="x") == "quality missing"
    assert parse_entry({"pdq": "a" * 64, "quality": "80", "category": "Not A Slug!"}, category="other",
                       action="remove", source="x") == "category not a slug"


def test_policy_v3_validates_and_v2_still_does():
    import jsonschema

    from tagwatch.train.policy import validate_policy
    from tests.support.policies import policy_document

    v2 = policy_document(["red", "blue"])
    validate_policy(v2)
    v3 = {**v2, "schema_version": 3, "categories": {**v2["categories"], "offensive_text": {
        "mode": "monitor", "reason": "no calibration data", "remove_threshold": 1.1, "review_threshold": 1.1,
        "monitor_threshold": 0.9, "positives": 0, "negatives": 0, "inputs": ["caption.offensive:offensive_text"]}}}
    validate_policy(v3)
    with pytest.raises(jsonschema.ValidationError):
        validate_policy({**v3, "categories": {"x": {**v3["categories"]["offensive_text"], "inputs": ["no colon"]}}})


def test_registering_checks_that_every_rule_reads_a_signal_that_exists():
    from tagwatch.registry.policies import check_signal_inputs

    rules = {"red": {}, "offensive_text": {"inputs": ["caption.offensive:offensive_text"]},
             "terrorism": {"inputs": ["bank:terrorism"]}, "hate": {"inputs": ["image:red", "caption.offensive:x"]}}
    check_signal_inputs({"categories": rules}, ["red", "blue"], "m version 1")
    with pytest.raises(ConfigError, match="does not score: spam"):
        check_signal_inputs({"categories": {"spam": {}}}, ["red"], "m version 1")
    with pytest.raises(ConfigError, match=r"unknown signals or scores: x: image:green, y: caption.sarcasm:s"):
        check_signal_inputs({"categories": {"x": {"inputs": ["image:green"]}, "y": {"inputs": ["caption.sarcasm:s"]}}},
                            ["red"], "m version 1")


def test_policy_diff_shows_a_changed_or_added_signal_input():
    from tagwatch.registry.policy_diff import diff_policies

    a = {"categories": {"hate": {"mode": "monitor", "inputs": ["caption.offensive:offensive_text"]}}}
    b = {"categories": {"hate": {"mode": "monitor", "inputs": ["caption.offensive:offensive_text", "bank:hate"]},
                        "terrorism": {"mode": "act", "inputs": ["bank:terrorism"]}}}
    rows = {r["category"]: r for r in diff_policies(a, b)}
    assert rows["hate"]["changes"] == {"inputs": [["caption.offensive:offensive_text"],
                                                  ["caption.offensive:offensive_text", "bank:hate"]]}
    assert rows["terrorism"]["status"] == "added"
    assert rows["terrorism"]["changes"]["inputs"] == [None, ["bank:terrorism"]]


def test_an_image_signal_plugs_in_beside_the_model(scorer):
    """The seam for a second image model (issue 21 part 1, nudity): prepared from the decoded image, scored per
    micro-batch, recorded, and
    decided by a rule that names it (here its own default rule, monitor mode)."""
    from tagwatch.moderation.policy import CategoryRule

    class Brightness:  # stands in for an NSFW classifier
        name, version = "image.brightness", "test-1"
        rules = {"bright": CategoryRule(mode="monitor", monitor_threshold=0.4, inputs=("image.brightness:bright",))}

        def prepare(self, image):
            import numpy as np

            return np.asarray(image.convert("L"), dtype=np.float32)

        def submit_batch(self, inputs):
            from concurrent.futures import Future

            done = Future()
            done.set_result([SignalScore(name=self.name, version=self.version,
                                         scores={"bright": round(float(row.mean()) / 255, 3)}) for row in inputs])
            return done

    posts, blobs = _posts([(cm.GREY, "")])
    (outcome,) = moderate_batch(posts, images=_images(blobs), scorer=scorer, banks=None, policy=cm.POLICY,
                                preset=DEFAULT_PRESET, image_signals=[Brightness()])
    assert [s.name for s in outcome.decision.signals] == ["image", "image.brightness"]
    assert outcome.decision.action == "allow" and monitor_hits(outcome.decision.reasons) == ["bright"]
