"""The map/reduce data build on the real SeaweedFS: the corpus (the session fixture ``built``) built with 1, 2 and 3
map tasks into fresh datasets buckets gives the same manifest digest and the same shard bytes; the CLI's
``--map-tasks`` runs the same steps; the exchange files stay under the version's ``_build/`` folder."""

from __future__ import annotations

import hashlib
import json
import secrets

import pytest

from tagwatch.data.build_request import BuildRequest
from tagwatch.data.mapreduce import build_dataset, parse_task_item, plan_ranges, task_item
from tagwatch.errors import ConfigError
from tagwatch.data.shards import dataset_prefix, read_manifest
from tagwatch.data.wordnet import load_wordnet
from tests.conftest import run_cli

REQUEST = BuildRequest(min_count=3, shard_samples=100)  # the corpus build's options (tests.support.corpus)


def _build(built, map_tasks: int) -> tuple[str, dict]:
    """(datasets bucket, {path: sha256 of the object's bytes} of every file the manifest names + the manifest)."""
    client = built["client"]
    datasets = f"test-mapreduce-{secrets.token_hex(3)}"
    client.create_bucket(Bucket=datasets)
    report = build_dataset(client=client, posts_bucket=built["posts"], datasets_bucket=datasets,
                           config=REQUEST.build_config(), wordnet=load_wordnet(), map_tasks=map_tasks)
    assert not report.up_to_date
    manifest = read_manifest(client=client, bucket=datasets, name="hashtags", version=report.version)
    prefix = dataset_prefix("hashtags", report.version)
    paths = [shard.path for split in manifest.splits.values() for shard in split.shards]
    paths += [manifest.vocabulary.path, manifest.dedup.path, manifest.post_index.path, manifest.categories.path]
    digests = {path: hashlib.sha256(client.get_object(Bucket=datasets, Key=f"{prefix}/{path}")["Body"].read())
               .hexdigest() for path in paths}
    return datasets, {"content_hash": manifest.content_hash, "version": report.version, "files": digests,
                      "splits": report.splits, "dedup_dropped": report.dedup_dropped}


def test_plan_ranges_cover_every_post_once() -> None:
    for total in (0, 1, 5, 17):
        for n in (1, 2, 3, 8):
            ranges = plan_ranges(total, n)
            assert [i for start, stop in ranges for i in range(start, stop)] == list(range(total))
            assert len(ranges) == max(1, min(n, total))


def test_task_items_carry_the_plan_and_the_index() -> None:
    uri = "s3://datasets/hashtags/v1/_build/2/plan.json"
    assert parse_task_item(task_item(uri, 1)) == (uri, 1)
    with pytest.raises(ConfigError):
        parse_task_item("s3://datasets/plan.json")


@pytest.mark.slow
def test_one_two_and_three_map_tasks_build_the_same_dataset(built) -> None:
    one_bucket, one = _build(built, 1)
    for n in (2, 3):
        bucket, other = _build(built, n)
        assert other == one, f"{n} map tasks built another dataset than 1"
        folder = f"{dataset_prefix('hashtags', other['version'])}/_build/{n}/"
        keys = [o["Key"] for o in built["client"].list_objects_v2(Bucket=bucket, Prefix=folder)["Contents"]]
        assert sum("/hashed-" in k and k.endswith(".jsonl") for k in keys) == n  # streamed out by each map task
        assert sum("/written-" in k for k in keys) == n
    assert sum(one["splits"].values()) > 200 and len(one["files"]) > 6

    # the CLI runs the same steps: into the 1-task bucket, the version is found already built
    env = {**built["env"], "TAGWATCH_S3__BUCKETS__DATASETS": one_bucket}
    result = run_cli("data", "build", "--min-count", "3", "--shard-samples", "100", "--map-tasks", "2", "--json",
                     env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["up_to_date"] and report["version"] == one["version"]
