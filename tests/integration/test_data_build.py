"""Ingest a small openclipart subset + synthetic posts + deliberately corrupt inputs into the real embedded
SeaweedFS, build the dataset with the real CLI, read the manifest back and stream shards with webdataset (the
corpus: the session fixture ``built``, tests/integration/conftest.py)."""

from __future__ import annotations

import io
import json
import secrets


import jsonschema
import pytest
import webdataset as wds
import yaml
from PIL import Image

from tagwatch.data.categories import Categories, CategoryMatcher
from tagwatch.data.dedup import DedupReport, hamming_matrix, pdq_bits
from tagwatch.data.manifest import SPLITS, ShardSample, Vocabulary
from tagwatch.data.posts import list_post_ids, load_post_records
from tagwatch.data.shards import read_manifest, shard_urls
from tagwatch.data.wordnet import load_wordnet
from tagwatch.moderation.events import PostCreated
from tagwatch.schemas import load_schema
from tests.conftest import run_cli
from tests.support.corpus import OPENCLIPART_LIMIT, SYNTHETIC_LIMIT, post_index, post_records
from tests.support.published import read_back


def test_ingest_reports_and_skips_corrupt_inputs(built) -> None:
    oc = built["ingests"]["openclipart"]
    assert oc["listed"] == OPENCLIPART_LIMIT and oc["ingested"] + sum(oc["skipped"].values()) == OPENCLIPART_LIMIT
    assert oc["ingested"] >= 140
    assert built["ingests"]["synthetic"]["ingested"] == SYNTHETIC_LIMIT
    corrupt = built["ingests"]["corrupt"]
    assert corrupt["ingested"] == 1  # badkw.svg, with its two good keywords
    assert corrupt["skipped"] == {"no_keywords": 1, "render_failed": 1}
    assert corrupt["bad_keywords"] == 1
    assert {i["ref"]: i["reason"] for i in corrupt["skipped_items"]} == {
        "broken.svg": "render_failed", "nokw.svg": "no_keywords"}
    records = load_post_records(built["client"], built["posts"], "openclipart")
    schema = load_schema("post.v1.json")
    for record in records.values():
        jsonschema.validate(record, schema)  # what ingest writes is what the published schema says
    badkw = [r for r in records.values() if isinstance(r, dict) and r["source_ref"] == "badkw.svg"]
    assert badkw and badkw[0]["keywords"] == ["pistol", "red"]


def test_build_report_counts_bad_posts(built) -> None:
    report = built["report"]
    assert not report["up_to_date"]
    assert report["skipped"].get("empty_caption") == 1
    assert report["skipped"].get("invalid_post") == 1
    total_posts = built["ingests"]["openclipart"]["ingested"] + SYNTHETIC_LIMIT + 1 + 2
    assert report["posts_read"] == total_posts
    excluded = sum(report["consent"]["excluded"].values())  # synthetic posts without granted consent
    assert (sum(report["splits"].values()) + sum(report["skipped"].values()) + report["dedup_dropped"] + excluded
            == total_posts)


def test_manifest_verifies_and_its_files_match(built) -> None:
    client, bucket = built["client"], built["datasets"]
    manifest = read_manifest(client=client, bucket=bucket, name="hashtags")  # via latest.json; verify() inside
    assert manifest.version == built["report"]["version"]
    prefix = f"{manifest.name}/{manifest.version}"
    import hashlib

    for ref in (manifest.vocabulary, manifest.categories, manifest.dedup):
        data = client.get_object(Bucket=bucket, Key=f"{prefix}/{ref.path}")["Body"].read()
        assert hashlib.sha256(data).hexdigest() == ref.sha256
    vocabulary = Vocabulary.model_validate_json(
        client.get_object(Bucket=bucket, Key=f"{prefix}/vocabulary.json")["Body"].read()
    )
    assert len(vocabulary.labels) == manifest.num_labels > 10
    assert {"red", "circle", "square"} <= set(vocabulary.names)  # synthetic keywords survive the noise
    assert manifest.category_names[-1] == "other" and "weapons" in manifest.category_names
    assert {s.name for s in manifest.sources} == {"openclipart", "synthetic"}
    for split in SPLITS:
        info = manifest.splits[split]
        assert info.samples == sum(s.samples for s in info.shards) > 0
    assert len(manifest.splits["train"].shards) >= 4  # 2 ranks x 2 workers


def test_stream_shards_from_s3_with_webdataset(built) -> None:
    client, bucket = built["client"], built["datasets"]
    manifest = read_manifest(client=client, bucket=bucket, name="hashtags")
    posts = {}
    for source in ("openclipart", "synthetic"):
        posts.update({k: v for k, v in load_post_records(client, built["posts"], source).items() if isinstance(v, dict)})
    seen: dict[str, list[ShardSample]] = {}
    for split in SPLITS:
        urls = shard_urls(client=client, bucket=bucket, manifest=manifest, split=split)
        samples = []
        for item in wds.WebDataset(urls, shardshuffle=False):
            image = Image.open(io.BytesIO(item["jpg"]))
            assert image.size == (256, 256) and image.mode == "RGB"
            sample = ShardSample.model_validate_json(item["json"])
            assert sample.post_id == item["__key__"]
            assert sample.labels == sorted(set(sample.labels)) and all(0 <= i < manifest.num_labels for i in sample.labels)
            assert sample.weight > 0 and sample.categories
            samples.append(sample)
        assert len(samples) == manifest.splits[split].samples
        seen[split] = samples
    assert all(s.labels for s in seen["train"])
    # Categories (the holdout's ground truth) come from the original keywords, not from the noisy caption hashtags:
    # recomputed here from each post record's keywords with the categories.yaml the build sealed in the manifest.
    categories_yaml = client.get_object(
        Bucket=bucket, Key=f"{manifest.name}/{manifest.version}/{manifest.categories.path}")["Body"].read()
    matcher = CategoryMatcher(Categories.model_validate(yaml.safe_load(categories_yaml)), load_wordnet())
    for split, samples in seen.items():
        for sample in samples:
            assert sample.categories == matcher.post_categories(posts[sample.post_id]["keywords"]), (split, sample)
    assert any(c != "other" for s in seen["holdout"] for c in s.categories)  # the check above is not vacuous
    # and one fixed by hand: badkw.svg's keywords are pistol + red (its caption need not say so)
    badkw = [s for split in SPLITS for s in seen[split] if posts[s.post_id]["source_ref"] == "badkw.svg"]
    assert [s.categories for s in badkw] == [["weapons"]]

    # The dedup guarantee on the real build: no train image within PDQ 31 of a val/holdout image (quality >= 50).
    dedup = DedupReport.model_validate_json(
        client.get_object(Bucket=bucket, Key=f"{manifest.name}/{manifest.version}/dedup.json")["Body"].read()
    )
    assert dedup.threshold == 31 and len(dedup.dropped) == manifest.dedup_dropped
    def good(ids):
        return [posts[i]["pdq"] for i in ids if (posts[i]["pdq_quality"] or 0) >= 50]
    train = good(s.post_id for s in seen["train"])
    evaluation = good(s.post_id for split in ("val", "holdout") for s in seen[split])
    assert hamming_matrix(pdq_bits(train), pdq_bits(evaluation)).min() > 31
    assert not {s.post_id for s in seen["train"]} & {d.post_id for d in dedup.dropped}


def test_rerun_is_a_no_op(built) -> None:
    result = run_cli("data", "ingest", "--source", "synthetic", "--limit", str(SYNTHETIC_LIMIT), "--json",
                     env=built["env"])
    assert result.returncode == 0 and json.loads(result.stdout)["ingested"] == 0
    assert json.loads(result.stdout)["already_there"] == SYNTHETIC_LIMIT
    # Items skipped for a permanent reason are remembered, not rendered again, and still counted.
    result = run_cli("data", "ingest", "--source", "openclipart", "--source-dir", str(built["corrupt"]), "--json",
                     env=built["env"])
    corrupt = json.loads(result.stdout)
    assert (corrupt["ingested"], corrupt["known_bad"], corrupt["already_there"]) == (0, 2, 1)
    assert corrupt["skipped"] == {"no_keywords": 1, "render_failed": 1}
    result = run_cli("data", "build", "--min-count", "3", "--shard-samples", "100", "--json", env=built["env"])
    assert result.returncode == 0, result.stderr[-2000:]
    again = json.loads(result.stdout)
    assert again["up_to_date"] and again["version"] == built["report"]["version"]


def test_vocab_command_prints_summary_and_plot(built, tmp_path) -> None:
    plot = tmp_path / "zipf.png"
    result = run_cli("data", "vocab", "--min-count", "3", "--plot", str(plot), env=built["env"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "hashtag vocabulary" in result.stdout and "folded into hypernyms" in result.stdout
    assert Image.open(plot).size[0] > 100


def test_build_without_posts_is_a_clear_error(built, stack_settings) -> None:
    client = built["client"]
    empty = f"test-empty-{secrets.token_hex(3)}"
    client.create_bucket(Bucket=empty)
    result = run_cli("data", "build", env={**built["env"], "TAGWATCH_S3__BUCKETS__POSTS": empty})
    assert result.returncode == 6
    assert "error:" in result.stderr and "hint:" in result.stderr and "Traceback" not in result.stderr


def test_holdout_posts_become_new_posts(built, stack_settings) -> None:
    """The load generator's --holdout: held-out posts of the build, images in S3 with the hash they claim."""
    import hashlib

    from tagwatch.moderation.publish import holdout_posts

    buckets = stack_settings.s3.buckets.model_copy(update={"posts": built["posts"], "datasets": built["datasets"]})
    settings = stack_settings.model_copy(update={"s3": stack_settings.s3.model_copy(update={"buckets": buckets})})
    held = holdout_posts(settings)
    manifest = read_manifest(client=built["client"], bucket=built["datasets"], name="hashtags")
    assert 0 < len(held) <= manifest.splits["holdout"].samples
    for post, categories in held[:20]:
        bucket, key = post.image_uri.removeprefix("s3://").split("/", 1)
        data = built["client"].get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(data).hexdigest() == post.sha256 and categories
    ids = built["corrupt"].parent / "holdout-ids.jsonl"
    result = run_cli("posts", "publish", "--holdout", "--n", "5", "--ids-out", str(ids), env=built["env"])
    assert result.returncode == 0 and "published 5 held-out posts" in result.stdout, result.stdout + result.stderr
    rows = [json.loads(line) for line in ids.read_text().splitlines()]
    assert [r["post_id"] for r in rows] == [post.post_id for post, _ in held[:5]]
    found = read_back(stack_settings, rows)  # each at the partition/offset the file gives
    assert {p: f.image_uri for p, f in found.items()} == {post.post_id: post.image_uri for post, _ in held[:5]}


# -- privacy (docs/privacy.md): consent, moderation of every post, deletion, lineage. Last in the module: the
# deletion changes the posts bucket the tests above read.

def test_manifest_records_the_consent_policy_and_only_consented_posts_are_in_the_shards(built) -> None:
    manifest = read_manifest(client=built["client"], bucket=built["datasets"], name="hashtags")
    records = post_records(built)
    by_consent = {c: {p for p, r in records.items() if r["training_consent"] == c}
                  for c in ("granted", "denied", "unknown")}
    assert all(r["source"] != "openclipart" or r["training_consent"] == "granted" for r in records.values())
    assert by_consent["denied"] and by_consent["unknown"]  # the synthetic mix makes the exclusion visible
    assert manifest.consent.policy == {"granted": "include", "denied": "exclude", "unknown": "exclude"}
    # the two posts of "another producer" in the fixture copy a synthetic record, so they carry its consent
    assert manifest.consent.excluded["denied"] >= len(by_consent["denied"]) - 2
    assert manifest.consent.excluded["unknown"] >= len(by_consent["unknown"]) - 2
    index = post_index(built, manifest.version)
    assert sum(manifest.splits[s].samples for s in SPLITS) == len(index)
    assert not set(index) & (by_consent["denied"] | by_consent["unknown"])
    assert set(index) <= by_consent["granted"]
    for record in records.values():  # authors are keyed pseudonyms, never the source's own name
        assert record["author_id"].startswith("u-") and len(record["author_id"]) == 18
    shard = manifest.splits["train"].shards[0]
    data = built["client"].get_object(Bucket=built["datasets"], Key=f"hashtags/{manifest.version}/{shard.path}")
    assert b"author" not in data["Body"].read()  # the trainer never sees author ids


@pytest.fixture(scope="module")
def moderated(built, stack_settings, tmp_path_factory):
    """One denied and one granted (trained-on, train split) post of the build, moderated by the real consumer."""
    import threading

    from tagwatch.moderation.consumer import ConsumerOptions, ModerationConsumer
    from tagwatch.moderation.ledger import Ledger
    from tagwatch.moderation.publish import publish_posts
    from tagwatch.moderation.scoring import OnnxScorer
    from tests.support import colour_model as cm
    from tests.support.stream import private_stream

    records = post_records(built)
    index = post_index(built, built["report"]["version"])
    denied = sorted(p for p, r in records.items() if r["training_consent"] == "denied")[0]
    images = [r["image_uri"] for r in records.values()]
    granted = sorted(p for p, split in index.items() if split == "train" and p.startswith("synthetic-")
                     and images.count(records[p]["image_uri"]) == 1)[0]  # an image no other post shares
    buckets = stack_settings.s3.buckets.model_copy(update={"posts": built["posts"], "datasets": built["datasets"]})
    settings = private_stream(stack_settings.model_copy(
        update={"s3": stack_settings.s3.model_copy(update={"buckets": buckets})}))
    events = [PostCreated(post_id=p, author_id=records[p]["author_id"], created_at=records[p]["created_at"],
                          caption=records[p]["caption"], image_uri=records[p]["image_uri"],
                          sha256=records[p]["image_sha256"], training_consent=records[p]["training_consent"])
              for p in (denied, granted)]
    assert publish_posts(settings, events) == 2
    path = tmp_path_factory.mktemp("colour") / "colour.onnx"
    scorer = OnnxScorer(path, cm.CATEGORIES, cm.build(path))
    stats = ModerationConsumer(settings, scorer, cm.POLICY, options=ConsumerOptions(max_poll_records=16)).run(
        threading.Event(), idle_exit_s=4.0)
    assert (stats.decided, stats.dead_lettered) == (2, 0)
    return {"denied": denied, "granted": granted, "settings": settings,
            "ledger": Ledger(built["client"], settings.s3.buckets.ledger)}


def test_a_post_with_denied_consent_is_moderated_but_never_trained_on(built, moderated) -> None:
    denied = moderated["denied"]
    decision = moderated["ledger"].get(denied)
    assert decision is not None and decision.post_id == denied  # moderation screened it like any post
    assert denied not in post_index(built, built["report"]["version"])
    result = run_cli("data", "build", "--min-count", "3", "--shard-samples", "100", "--json", env=built["env"])
    assert result.returncode == 0 and json.loads(result.stdout)["up_to_date"]  # the next build: same, without it


def test_the_erasure_list_is_append_only_per_post(built) -> None:
    from tagwatch.privacy.erasures import erased_post_ids, read_erasure, record_erasure

    bucket = f"test-erasures-{secrets.token_hex(3)}"
    built["client"].create_bucket(Bucket=bucket)
    assert record_erasure(built["client"], bucket, "p-1", reason="first")
    assert not record_erasure(built["client"], bucket, "p-1", reason="second")  # If-None-Match: the first stays
    assert record_erasure(built["client"], bucket, "p-2")
    assert erased_post_ids(built["client"], bucket) == {"p-1", "p-2"}
    assert read_erasure(built["client"], bucket, "p-1").reason == "first"


def test_a_deleted_post_is_gone_from_s3_and_every_later_build_and_lineage_names_where_it_was(built, moderated,
                                                                                           stack_settings) -> None:
    """The model version is stored, not exported and registered (tests.support.corpus.stored_model_version)."""
    from tagwatch.moderation.events import EventType, PostDeleted, header_map
    from tests.support.corpus import stored_model_version
    from tests.support.stream import read_topic

    client, post_id, first = built["client"], moderated["granted"], built["report"]["version"]
    record = post_records(built)[post_id]
    first_manifest = read_manifest(client=client, bucket=built["datasets"], name="hashtags", version=first)
    models = stored_model_version(client, model_name=stack_settings.triton.model_name,
                                  manifest_hash=first_manifest.content_hash)
    env = {**built["env"], "TAGWATCH_S3__BUCKETS__MODELS": models,
           "TAGWATCH_KAFKA__TOPICS__DELETED": moderated["settings"].kafka.topics.deleted}

    result = run_cli("posts", "delete", post_id, "--reason", "user request", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["erasure_added"] and report["record_removed"] and report["image_removed"], report
    assert report["ledger_decision"] is not None and moderated["ledger"].get(post_id) is not None  # audit kept
    bucket, key = record["image_uri"].removeprefix("s3://").split("/", 1)
    assert client.list_objects_v2(Bucket=bucket, Prefix=key)["KeyCount"] == 0  # the image is gone
    assert post_id not in list_post_ids(client, built["posts"], "synthetic")
    index = client.get_object(Bucket=built["posts"], Key="index/synthetic.jsonl")["Body"].read().decode()
    assert post_id not in index
    events = read_topic(moderated["settings"], moderated["settings"].kafka.topics.deleted, expect=1)
    assert [header_map(r.headers)["ce_type"] for r in events] == [EventType.POST_DELETED.value]
    assert [PostDeleted.model_validate_json(r.value).post_id for r in events] == [post_id]
    assert (events[0].partition, events[0].offset) == (report["event_partition"], report["event_offset"])

    # every later build: re-ingesting the source does not bring it back, and the next build leaves it out
    result = run_cli("data", "ingest", "--source", "synthetic", "--limit", str(SYNTHETIC_LIMIT), "--json", env=env)
    assert result.returncode == 0 and json.loads(result.stdout)["erased"] == 1, result.stdout + result.stderr
    result = run_cli("data", "build", "--min-count", "3", "--shard-samples", "100", "--json", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    second = json.loads(result.stdout)
    assert not second["up_to_date"] and second["version"] != first
    assert post_id not in post_index(built, second["version"])
    assert second["consent"]["erasure_list"] == 1

    result = run_cli("data", "lineage", post_id, "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lineage = json.loads(result.stdout)
    assert [(d["version"], d["split"]) for d in lineage["datasets"]] == [(first, "train")]
    assert lineage["searched"] == 2
    assert [(m["version"], m["dataset"]) for m in lineage["models"]] == [(1, f"hashtags/{first}")]
    text = run_cli("data", "lineage", post_id, env=env).stdout
    assert f"hashtags/{first}" in text and "version 1" in text
