"""`tagwatch data build --review-labels` on the real embedded stack: reviewers' outcomes (written to a ledger
bucket's post history as the review app does) folded into the train split of the session's data corpus (``built``,
tests/integration/conftest.py). Builds go to datasets buckets of their own; the posts and the erasure this module
adds to the corpus's posts bucket are removed again before any test asserts."""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import tarfile
from datetime import datetime, timedelta, timezone

import jsonschema
import numpy as np
import pytest
from PIL import Image

from tagwatch.data.dedup import DedupReport, hamming_matrix, pdq_bits
from tagwatch.data.manifest import SPLITS, DatasetManifest, ShardSample
from tagwatch.data.posts import Post, image_key, post_key
from tagwatch.data.shards import read_manifest
from tagwatch.moderation.events import ReviewOutcome
from tagwatch.moderation.ledger import LedgerHistory
from tagwatch.schemas import load_schema
from tests.conftest import run_cli
from tests.support.corpus import post_records

BUILD = ("data", "build", "--min-count", "3", "--shard-samples", "100", "--json")
NEW = {"fresh": "synthetic-reviewnew00000a", "fresh_allow": "synthetic-reviewnew00000b",
       "near": "synthetic-reviewnear00000", "bytes": "synthetic-reviewbyte00000"}
NO_RECORD = "stream-post-without-record"


def _shard_samples(client, bucket: str, manifest: DatasetManifest, split: str) -> dict[str, ShardSample]:
    found = {}
    for shard in manifest.splits[split].shards:
        data = client.get_object(Bucket=bucket, Key=f"{manifest.name}/{manifest.version}/{shard.path}")["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    sample = ShardSample.model_validate_json(tar.extractfile(member).read())
                    found[sample.post_id] = sample
    return found


def _post_index(client, bucket: str, manifest: DatasetManifest) -> dict[str, str]:
    body = client.get_object(Bucket=bucket, Key=f"{manifest.name}/{manifest.version}/{manifest.post_index.path}")
    return dict(line.split("\t") for line in body["Body"].read().decode().splitlines())


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _build(env: dict[str, str], *extra: str) -> dict:
    result = run_cli(*BUILD, *extra, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def reviewed(built):
    """A baseline build (no outcome yet); outcomes for every case; a build without the option into another bucket;
    then, with the new posts and one erasure in place, the build with review labels. New examples are granted posts
    whose captions carry no hashtag (the regular build skips them): two fresh images, a JPEG re-encode of a holdout
    image (a PDQ near-copy) and a byte copy of a val image."""
    from tagwatch.data.ingest import compute_pdq
    from tagwatch.privacy.erasures import erasure_key, record_erasure

    client, posts_bucket = built["client"], built["posts"]
    suffix = secrets.token_hex(3)
    ledger, datasets, elsewhere = f"test-ledger-{suffix}", f"test-datasets-rl-{suffix}", f"test-datasets-rl2-{suffix}"
    for bucket in (ledger, datasets, elsewhere):
        client.create_bucket(Bucket=bucket)
    env = {**built["env"], "TAGWATCH_S3__BUCKETS__DATASETS": datasets, "TAGWATCH_S3__BUCKETS__LEDGER": ledger}
    baseline_report = _build(env)
    baseline = read_manifest(client=client, bucket=datasets, name="hashtags", version=baseline_report["version"])
    train = _shard_samples(client, datasets, baseline, "train")
    holdout = _shard_samples(client, datasets, baseline, "holdout")
    index = _post_index(client, datasets, baseline)
    records = post_records(built)
    images = [r["image_uri"] for r in records.values()]

    def unique(post_id: str) -> bool:
        return images.count(records[post_id]["image_uri"]) == 1

    plain = sorted(p for p, s in train.items() if s.categories == ["other"] and unique(p))
    positive = sorted(p for p, s in train.items() if s.categories != ["other"] and unique(p))
    roles = {"remove": plain[0], "unknown_category": plain[1], "erased": plain[2], "appeal": (positive or plain[3:])[0],
             "denied": sorted(p for p, r in records.items() if r["training_consent"] == "denied")[0],
             "in_holdout": sorted((p for p in holdout if unique(p)), key=lambda p: (holdout[p].categories == ["other"],
                                                                                     p))[0]}
    near_of = sorted(p for p in holdout if p != roles["in_holdout"] and unique(p)
                     and (records[p]["pdq_quality"] or 0) >= 60)[0]
    byte_of = sorted(p for p, split in index.items() if split == "val")[0]

    def fetch(uri: str) -> bytes:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()

    rng = np.random.default_rng(7)
    near = _jpeg(Image.open(io.BytesIO(fetch(records[near_of]["image_uri"]))), quality=55)
    near_pdq, near_quality = compute_pdq(Image.open(io.BytesIO(near)))
    assert near_quality >= 50 and hamming_matrix(pdq_bits([near_pdq]), pdq_bits([records[near_of]["pdq"]]))[0, 0] <= 31
    uploads = {NEW["fresh"]: _jpeg(Image.fromarray(rng.integers(0, 255, (256, 256, 3), np.uint8))),
               NEW["fresh_allow"]: _jpeg(Image.fromarray(rng.integers(0, 255, (256, 256, 3), np.uint8))),
               NEW["near"]: near}
    new_images: dict[str, tuple[str, str]] = {}  # post_id -> (image_uri, sha256)
    for post_id, data in uploads.items():
        sha = hashlib.sha256(data).hexdigest()
        client.put_object(Bucket=posts_bucket, Key=image_key("synthetic", sha), Body=data)
        new_images[post_id] = (f"s3://{posts_bucket}/{image_key('synthetic', sha)}", sha)
    new_images[NEW["bytes"]] = (records[byte_of]["image_uri"], records[byte_of]["image_sha256"])

    history, t0 = LedgerHistory(client, ledger), datetime(2026, 11, 30, tzinfo=timezone.utc)

    def review(post_id: str, action: str, categories=(), *, minutes: int = 0, uri: str | None = None) -> None:
        history.append_review(ReviewOutcome(
            outcome_id=hashlib.sha256(f"{post_id}:{minutes}".encode()).hexdigest()[:32], post_id=post_id,
            decision_id=f"d-{post_id}", action=action, categories=list(categories), reviewer="reviewer-1",
            reviewed_at=t0 + timedelta(minutes=minutes), requested_at=t0, time_to_decision_s=60.0 * minutes,
            image_uri=uri or (records[post_id]["image_uri"] if post_id in records else new_images[post_id][0]),
            model_version="1", policy_version="p-1"))

    review(roles["remove"], "remove", ["weapons"])
    review(roles["appeal"], "remove", ["weapons"], minutes=1)
    review(roles["appeal"], "allow", minutes=5)  # on appeal: the latest outcome is the one folded
    review(roles["unknown_category"], "remove", ["not-a-category"])
    review(roles["erased"], "remove", ["weapons"])
    review(roles["in_holdout"], "remove", ["weapons"])  # a val/holdout post keeps its own labels
    review(roles["denied"], "remove", ["weapons"])
    review(NO_RECORD, "remove", ["weapons"], uri=new_images[NEW["fresh"]][0])  # no record: consent unknown
    review(NEW["fresh"], "remove", ["weapons"])
    review(NEW["fresh_allow"], "allow")
    review(NEW["near"], "remove", ["weapons"])
    review(NEW["bytes"], "remove", ["weapons"])
    off = _build({**env, "TAGWATCH_S3__BUCKETS__DATASETS": elsewhere})  # outcomes in the ledger, option off

    added = [post_key("synthetic", post_id) for post_id in new_images]
    try:
        for post_id, (uri, sha) in new_images.items():
            record = Post(post_id=post_id, author_id="u-0123456789abcdef", created_at=t0, caption="just a photo",
                          image_uri=uri, image_sha256=sha, source="synthetic", training_consent="granted")
            client.put_object(Bucket=posts_bucket, Key=post_key("synthetic", post_id),
                              Body=record.model_dump_json().encode())
        assert record_erasure(client, posts_bucket, roles["erased"], reason="test")
        on = _build(env, "--review-labels")
    finally:
        for key in [*added, erasure_key(roles["erased"])]:
            client.delete_object(Bucket=posts_bucket, Key=key)
    return {"client": client, "datasets": datasets, "elsewhere": elsewhere, "env": env, "roles": roles,
            "baseline": baseline, "baseline_report": baseline_report, "off": off, "on": on, "byte_of": byte_of}


def test_review_labels_reach_train_only_with_exact_counts(reviewed) -> None:
    client, datasets, roles, on = reviewed["client"], reviewed["datasets"], reviewed["roles"], reviewed["on"]
    assert on["review_labels"] == {
        "enabled": True, "outcomes_read": 12, "posts_reviewed": 11, "added_to_train": 2, "overrode": 2,
        "left_in_eval": 1, "dropped_near_duplicate_of_eval": 2,
        "excluded_privacy": {"denied": 1, "unknown": 1, "erased": 1}, "skipped": {"unknown_category": 1}}
    manifest = read_manifest(client=client, bucket=datasets, name="hashtags", version=on["version"])
    assert manifest.review_labels.model_dump() == on["review_labels"] and manifest.review_label_count == 4
    jsonschema.validate(json.loads(manifest.model_dump_json()), load_schema("dataset-manifest.v1.json"))
    baseline = reviewed["baseline"]
    index, before = _post_index(client, datasets, manifest), _post_index(client, datasets, baseline)

    # never val or holdout: evaluation is exactly what it was without review labels
    assert {p: s for p, s in index.items() if s != "train"} == {p: s for p, s in before.items() if s != "train"}
    samples = {split: _shard_samples(client, datasets, manifest, split) for split in SPLITS}
    for split in ("val", "holdout"):  # and their moderation labels (hashtag indices follow the train vocabulary)
        assert ({p: s.categories for p, s in samples[split].items()}
                == {p: s.categories for p, s in _shard_samples(client, datasets, baseline, split).items()})
    assert samples["train"][NEW["fresh"]].categories == ["weapons"]
    assert samples["train"][NEW["fresh"]].labels == []  # no hashtag in its caption: a reviewed label is enough
    assert samples["train"][NEW["fresh_allow"]].categories == ["other"]  # allow: a reviewed negative
    assert samples["train"][roles["remove"]].categories == ["weapons"]
    assert samples["train"][roles["appeal"]].categories == ["other"]
    for left_out in (NEW["near"], NEW["bytes"], roles["erased"], roles["denied"], NO_RECORD):
        assert left_out not in index, left_out
    # the dedup dropped both copies of eval images, as it drops any train image
    dedup = DedupReport.model_validate_json(
        client.get_object(Bucket=datasets, Key=f"hashtags/{manifest.version}/dedup.json")["Body"].read())
    dropped = {d.post_id: (d.nearest_post_id, d.reason) for d in dedup.dropped}
    assert dropped[NEW["near"]][1] == "pdq" and dropped[NEW["bytes"]] == (reviewed["byte_of"], "sha256")
    assert on["dedup_dropped"] == reviewed["baseline_report"]["dedup_dropped"] + 2
    assert on["consent"]["excluded"]["erased"] == 1  # the erased post is out of the regular posts as well


def test_without_the_option_the_build_is_the_one_before_it(reviewed) -> None:
    """Outcomes in the ledger change nothing until asked for: same version, same sealed manifest."""
    off = reviewed["off"]
    assert off["version"] == reviewed["baseline"].version and not off["review_labels"]
    manifest = read_manifest(client=reviewed["client"], bucket=reviewed["elsewhere"], name="hashtags",
                             version=off["version"])
    assert manifest.review_labels is None and manifest.content_hash == reviewed["baseline"].content_hash
    assert reviewed["on"]["version"] != off["version"]


def test_lineage_counts_the_labels_that_came_from_review(reviewed, stack_settings) -> None:
    """The model version is stored, not exported and registered (tests.support.corpus.stored_model_version)."""
    from tests.support.corpus import stored_model_version

    client = reviewed["client"]
    manifest = read_manifest(client=client, bucket=reviewed["datasets"], name="hashtags",
                             version=reviewed["on"]["version"])
    models = stored_model_version(client, model_name=stack_settings.triton.model_name,
                                  manifest_hash=manifest.content_hash, review_labels=4)
    env = {**reviewed["env"], "TAGWATCH_S3__BUCKETS__MODELS": models}
    result = run_cli("data", "lineage", NEW["fresh"], "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lineage = json.loads(result.stdout)
    assert [(d["version"], d["split"], d["review_labels"]) for d in lineage["datasets"]] == [
        (manifest.version, "train", 4)]
    assert [(m["version"], m["review_labels"]) for m in lineage["models"]] == [(1, 4)]
    assert "4 reviewer labels" in run_cli("data", "lineage", NEW["fresh"], env=env).stdout


def test_a_missing_ledger_bucket_is_a_clear_error(built) -> None:
    env = {**built["env"], "TAGWATCH_S3__BUCKETS__LEDGER": f"test-no-ledger-{secrets.token_hex(3)}"}
    result = run_cli(*BUILD, "--review-labels", env=env)
    assert result.returncode == 3, result.stderr[-2000:]  # ConfigError
    assert "ledger bucket" in result.stderr and "hint:" in result.stderr and "Traceback" not in result.stderr
