"""The data tests' corpus: a small openclipart subset, synthetic posts and deliberately corrupt inputs ingested into
private buckets on the session stack, then built (both with the real CLI). Slow (the openclipart renders), so one
corpus serves every data test of a session: the ``built`` fixture in tests/integration/conftest.py."""

from __future__ import annotations

import json

from tagwatch.clients import s3_client
from tagwatch.data.posts import Post, list_post_ids, load_post_records, post_key
from tagwatch.data.shards import read_manifest
from tests.conftest import run_cli
from tests.support.buckets import private_data_buckets
from tests.unit.test_data_sources import _svg

OPENCLIPART_LIMIT = 150
SYNTHETIC_LIMIT = 120


def build_corpus(stack_settings, tmp_path_factory) -> dict:
    """Buckets of its own on the session stack; ingest (CLI), corrupt inputs, build (CLI)."""
    client = s3_client(stack_settings.s3)
    posts, datasets, env = private_data_buckets(stack_settings)

    ingests = {}
    for source, limit in (("openclipart", OPENCLIPART_LIMIT), ("synthetic", SYNTHETIC_LIMIT)):
        result = run_cli("data", "ingest", "--source", source, "--limit", str(limit), "--workers", "2", "--json",
                         env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        ingests[source] = json.loads(result.stdout)

    # Corrupt inputs a real source has: an SVG that does not render, a non-UTF-8 keyword, no keywords.
    corrupt = tmp_path_factory.mktemp("corrupt-svg")
    (corrupt / "broken.svg").write_bytes(_svg(b"knife").replace(b"</svg>", b"<rect"))
    (corrupt / "badkw.svg").write_bytes(_svg(b"pistol", b"caf\xe9", b"red"))
    (corrupt / "nokw.svg").write_bytes(_svg())
    result = run_cli("data", "ingest", "--source", "openclipart", "--source-dir", str(corrupt), "--json", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    ingests["corrupt"] = json.loads(result.stdout)
    # Posts from another producer: an empty caption and a record that is not a post.
    good = Post.model_validate_json(
        client.get_object(Bucket=posts, Key=post_key("synthetic", sorted(list_post_ids(client, posts, "synthetic"))[0]))[
            "Body"
        ].read()
    )
    empty = good.model_copy(update={"post_id": "synthetic-emptycaption01", "caption": "   "})
    client.put_object(Bucket=posts, Key=post_key("synthetic", empty.post_id), Body=empty.model_dump_json().encode())
    client.put_object(Bucket=posts, Key=post_key("synthetic", "synthetic-notapost0001"), Body=b'{"post_id": 3}')

    result = run_cli("data", "build", "--min-count", "3", "--shard-samples", "100", "--json", env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return {"client": client, "posts": posts, "datasets": datasets, "env": env, "ingests": ingests, "corrupt": corrupt,
            "report": json.loads(result.stdout)}


def post_records(built) -> dict[str, dict]:
    """Every post record of the corpus (post_id -> the record as JSON)."""
    records = {}
    for source in ("openclipart", "synthetic"):
        records.update({k: v for k, v in load_post_records(built["client"], built["posts"], source).items()
                        if isinstance(v, dict) and "source" in v})  # not the fixture's record that is no post
    return records


def post_index(built, version: str) -> dict[str, str]:
    """post_id -> split of a build of the corpus (its post_index.tsv)."""
    manifest = read_manifest(client=built["client"], bucket=built["datasets"], name="hashtags", version=version)
    body = built["client"].get_object(
        Bucket=built["datasets"], Key=f"hashtags/{version}/{manifest.post_index.path}")["Body"].read().decode()
    return dict(line.split("\t") for line in body.splitlines())


def stored_model_version(client, *, model_name: str, manifest_hash: str, **lineage) -> str:
    """A model version written as the registry stores one (metadata.json under its version prefix, in a bucket of
    its own) whose lineage names the dataset ``manifest_hash``: what `data lineage` joins on. Registering itself is
    tested in test_registry_s3.py. Returns the models bucket."""
    import secrets
    from datetime import datetime, timezone

    from tagwatch.registry.metadata import VersionMetadata
    from tagwatch.registry.registry import ModelRegistry

    models = f"test-models-{secrets.token_hex(3)}"
    client.create_bucket(Bucket=models)
    registry = ModelRegistry(client, bucket=models, model_name=model_name)
    metadata = VersionMetadata(
        model_name=model_name, version=1, created_at=datetime.now(timezone.utc), created_by="test",
        storage_uri=registry.storage_uri(1), files={}, preset={}, layout={},
        lineage={"run_id": "r1", "manifest_hash": manifest_hash, **lineage})
    client.put_object(Bucket=models, Key=f"{registry.version_prefix(1)}/metadata.json",
                      Body=metadata.model_dump_json().encode())
    return models
