"""Issue 21 parts 2-4 on the real serving path: registry `production` -> the stack's Triton (the tiny model) ->
one `tagwatch moderate` process, posts through Tansu, images and the ledger in SeaweedFS.

One consumer run decides four posts under a registered policy.v3 (image rules, an acting `offensive_text` rule
on the caption.offensive signal, a `terrorism` rule on bank matches), with a bank imported from an exchange file
through the CLI:

  abusive   a grey image whose caption is abusive      -> review by offensive_text, the image's rules silent
  benign    a grey image, ordinary caption             -> allow (the same image content alone is allowed)
  spammy    a grey image, a spam caption                -> allow, with a monitor hit (spam: the signal's own rule)
  banned    a resized, re-encoded copy of an image whose PDQ hash the bank holds as terrorism -> remove, the
            reason naming bank, entry and category
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from tagwatch.clients import s3_client
from tagwatch.moderation.bank import pdq_hex
from tagwatch.moderation.publish import new_post, upload_image
from tagwatch.stack import with_stack_endpoints
from tests.conftest import make_settings, run_cli
from tests.support import colour_model as cm
from tests.support.policies import policy_document
from tests.support.serving_models import CATEGORIES, serve_tiny_model
from tests.support.stream import decide_posts, private_stream, stream_env

FIXTURES = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "banks"
ABUSIVE = "you are a stupid worthless idiot, shut the fuck up"
BENIGN = "sunset over the harbour with my grandmother"
SPAM = "FREE FOLLOWERS dm me now bit.ly/x1y2z3 " + " ".join(f"#tag{i}" for i in range(20))
IMAGE_REVIEW, IMAGE_REMOVE = 0.9, 0.95


def _policy_v3() -> dict:
    document = policy_document(CATEGORIES, review=IMAGE_REVIEW, remove=IMAGE_REMOVE, version="signals-1")
    never = {"remove_threshold": 1.1, "review_threshold": 1.1, "positives": 0, "negatives": 0}
    document["schema_version"] = 3
    document["categories"]["offensive_text"] = {
        **never, "mode": "act", "review_threshold": 0.8, "inputs": ["caption.offensive:offensive_text"],
        "reason": "test: review abusive captions"}
    document["categories"]["terrorism"] = {
        **never, "mode": "act", "inputs": ["bank:terrorism"], "reason": "test: bank entries act with their action"}
    return document


def _textured(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)).resize((128, 128), Image.BILINEAR)


@pytest.fixture(scope="module")
def decided(tmp_path_factory):
    """The four posts' decision events and ledger records (post name -> (event, ledger record)), and CLI output."""
    tmp = tmp_path_factory.mktemp("signals")
    base = make_settings(tmp / "state")
    env0 = stream_env(base)
    try:
        serve_tiny_model(base, env0, tmp / "export")
        settings = private_stream(with_stack_endpoints(base), partitions=1)
        env = {**stream_env(settings), "TAGWATCH_MODERATION__POLICY_POLL_S": "0.5"}
        s3 = s3_client(settings.s3)
        (tmp / "policy.json").write_text(json.dumps(_policy_v3()))
        registered = run_cli("policy", "register", str(tmp / "policy.json"), "--model-version", "1",
                             "--alias", "production", "--reason", "test: caption and bank rules", env=env)
        assert registered.returncode == 0, registered.stdout + registered.stderr

        banned = _textured(2121)
        pdq, quality = pdq_hex(banned)
        with open(tmp / "tvec.csv", "w", newline="") as f:
            csv.writer(f).writerows([["pdq", "quality", "category", "action", "reason", "source", "entry_id"],
                                     [pdq, quality, "terrorism", "remove", "test: propaganda still", "test", "tv-001"]])
        bank = f"tvec-{settings.kafka.consumer_group}"
        imported = run_cli("bank", "import", str(tmp / "tvec.csv"), "--bank", bank, env=env)
        example = run_cli("bank", "import", str(FIXTURES / "example.csv"), "--bank", f"{bank}-example", env=env)

        tag = settings.kafka.consumer_group
        copy = io.BytesIO()
        banned.resize((120, 120)).save(copy, format="JPEG", quality=70)  # a near-duplicate, not the same bytes
        images = {"abusive": cm.jpeg(cm.GREY, seed=1), "benign": cm.jpeg(cm.GREY, seed=2),
                  "spammy": cm.jpeg(cm.GREY, seed=3), "banned": copy.getvalue()}
        captions = {"abusive": ABUSIVE, "benign": BENIGN, "spammy": SPAM, "banned": BENIGN}
        posts = {}
        for name, data in images.items():
            uri, digest = upload_image(s3, settings.s3.buckets.posts, data)
            posts[name] = new_post(f"{name}-{tag}", uri, digest, caption=captions[name])
        decisions = decide_posts(settings, env, posts, log_path=tmp / "consumer.log", what="the four posts decided")
        yield {"decisions": decisions,
               "bank": bank, "model": settings.triton.model_name, "imported": imported, "example": example}
    finally:
        assert run_cli("stack", "down", env=env0).returncode == 0


def test_an_abusive_caption_is_flagged_by_its_signal_while_the_image_is_allowed(decided):
    (abusive, abusive_ledger), (benign, _) = decided["decisions"]["abusive"], decided["decisions"]["benign"]
    assert abusive_ledger == abusive  # the ledger records the event, signals included
    assert abusive.action == "review" and benign.action == "allow"
    assert abusive.policy_version.endswith("-policy-1")
    assert abusive.reasons[0].startswith("policy:offensive_text>=0.800 (") and \
        abusive.reasons[0].endswith("via caption.offensive:offensive_text)")
    assert not any(r.startswith("policy:") and "offensive_text" not in r for r in abusive.reasons)
    assert max(abusive.scores.values()) < IMAGE_REVIEW  # the image's own rules stay silent
    signals = {s.name: s for s in abusive.signals}
    assert list(signals) == ["image", "caption.offensive", "caption.spam", "bank"]
    assert signals["image"].version == f"{decided['model']}/1" and signals["image"].scores == abusive.scores
    assert signals["caption.offensive"].version == "alt-profanity-check==1.9.1"
    assert signals["caption.offensive"].scores["offensive_text"] > 0.9
    assert signals["caption.spam"].version == "heuristics-1" and signals["bank"].detail == "no match"
    assert {s.name: s.scores["offensive_text"] for s in benign.signals if s.name == "caption.offensive"} \
        == {"caption.offensive": pytest.approx(0.0, abs=0.2)}
    spammy, _ = decided["decisions"]["spammy"]
    assert spammy.action == "allow" and any(r.startswith("monitor:spam>=0.600") for r in spammy.reasons)


def test_a_terrorism_bank_entry_removes_a_near_duplicate_naming_bank_entry_and_category(decided):
    banned, banned_ledger = decided["decisions"]["banned"]
    assert decided["imported"].returncode == 0, decided["imported"].stderr
    assert decided["imported"].stdout.strip() == f"bank {decided['bank']}: 1 of 1 entries added"
    assert banned_ledger == banned and banned.action == "remove"
    reason = banned.reasons[0]
    assert reason.startswith(f"bank:{decided['bank']}:tv-001 category=terrorism (test: propaganda still; distance ")
    bank_signal = banned.signals[-1]
    assert bank_signal.name == "bank" and bank_signal.scores == {"terrorism": 1.0}
    assert banned.signals[0].detail == "not run: bank match"
    # the example exchange file: two rows in, the flat image refused for its quality, the malformed row skipped
    example = decided["example"]
    assert example.returncode == 0, example.stderr
    assert example.stdout.strip() == (f"bank {decided['bank']}-example: 2 of 4 entries added; skipped 2: "
                                      "pdq not 64 hex digits: 1 (line 5); quality < 50: 1 (line 4)")
