"""The model registry against the real SeaweedFS: register -> list/show -> promote -> rollback -> verify,
tampered files refused, alias compare-and-swap, and the same through the `tagwatch model` CLI."""

from __future__ import annotations

import json
import uuid

import pytest

from tagwatch.clients import s3_client
from tagwatch.errors import IntegrityError, RegistryError
from tagwatch.registry import ModelRegistry
from tests.conftest import run_cli, stack_env
from tests.support.serving_models import export_tiny


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Two exports of different weights (model name is per-module so tests never share a registry)."""
    name = f"test-registry-{uuid.uuid4().hex[:8]}"
    root = tmp_path_factory.mktemp("exports")
    return name, [export_tiny(root / f"e{seed}", model_name=name, seed=seed, policy_version=f"p{seed}")
                  for seed in (0, 1)]


def _fresh(stack_settings, model_name: str) -> ModelRegistry:
    """An empty registry for ``model_name`` under a prefix of its own."""
    return ModelRegistry(s3_client(stack_settings.s3), bucket=stack_settings.s3.buckets.models,
                         model_name=model_name, prefix=f"test-{uuid.uuid4().hex[:8]}")


def test_register_promote_rollback_verify(stack_settings, exports, tmp_path) -> None:
    name, (e0, e1) = exports
    registry = _fresh(stack_settings, name)
    v1 = registry.register(e0.out_dir, metrics={"map": 0.31})
    assert v1.version == 1 and v1.parent_version is None and v1.policy_version == "p0"
    registry.promote(1, alias="production")
    v2 = registry.register(e1.out_dir, alias="candidate")
    assert v2.version == 2 and v2.parent_version == 1  # parent defaults to what production named
    assert [v.version for v in registry.list_versions()] == [1, 2]
    assert {k: r.version for k, r in registry.aliases().items()} == {"production": 1, "candidate": 2}

    # Every file of the Triton layout is listed with its sha256; storageUri points at the repository root.
    assert sorted(v2.files) == [
        "policy.json",
        f"repository/{name}/2/model.onnx",
        f"repository/{name}/categories.txt",
        f"repository/{name}/config.pbtxt",
        f"repository/{name}/hashtags.txt",
    ]
    assert v2.storage_uri.endswith(f"{registry.version_prefix(2)}/repository")
    assert v2.lineage["run_id"] == "run-1" and v2.layout["version"] == 2
    assert "versions: [ 2 ]" in (registry.fetch(2, dest=tmp_path).repository / name / "config.pbtxt").read_text()

    record = registry.promote(2, alias="production")
    assert (record.version, record.previous) == (2, [1])
    assert registry.resolve("production")[0].version == 2
    back = registry.rollback("production")
    assert (back.version, back.previous) == (1, [])
    assert registry.resolve("production")[0].version == 1
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("production")
    assert all(registry.verify(v).ok for v in (1, 2))

    local = registry.fetch("production", dest=tmp_path / "cache")
    assert local.metadata.version == 1 and local.onnx_path.is_file()
    assert local.policy["version"] == "p0" and len(local.labels()) == 24 and local.categories()[0] == "weapons"


def test_tampered_model_is_refused_by_verify_fetch_and_promote(stack_settings, exports, tmp_path) -> None:
    _, (e0, _) = exports
    registry = _fresh(stack_settings, e0.info["model_name"])
    registry.register(e0.out_dir)
    key = f"{registry.version_prefix(1)}/repository/{registry.model_name}/1/model.onnx"
    body = bytearray(registry.s3.get_object(Bucket=registry.bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF  # one flipped byte in the weights
    registry.s3.put_object(Bucket=registry.bucket, Key=key, Body=bytes(body))

    report = registry.verify(1)
    assert not report.ok and report.problems[0].startswith(f"repository/{registry.model_name}/1/model.onnx: sha256")
    with pytest.raises(IntegrityError, match="refusing to load"):
        registry.fetch(1, dest=tmp_path)
    assert list(tmp_path.glob("0*")) == []  # nothing half-verified left behind
    with pytest.raises(IntegrityError, match="refusing to promote"):
        registry.promote(1, alias="production")


def test_edited_metadata_behind_an_alias_is_refused(stack_settings, exports) -> None:
    _, (e0, _) = exports
    registry = _fresh(stack_settings, e0.info["model_name"])
    registry.register(e0.out_dir, alias="production")
    key = f"{registry.version_prefix(1)}/metadata.json"
    meta = json.loads(registry.s3.get_object(Bucket=registry.bucket, Key=key)["Body"].read())
    meta["metrics"] = {"map": 0.99}  # someone "improves" the recorded figures
    registry.s3.put_object(Bucket=registry.bucket, Key=key, Body=json.dumps(meta).encode())
    with pytest.raises(IntegrityError, match="changed after alias 'production'"):
        registry.resolve("production")


def test_alias_swap_is_compare_and_swap(stack_settings, exports) -> None:
    """A writer holding a stale ETag loses: two promoters can never interleave into a mixed state."""
    name, (e0, _) = exports
    registry = _fresh(stack_settings, name)
    registry.register(e0.out_dir)
    registry.register(e0.out_dir)
    registry.promote(1, alias="production")
    stale_record, stale_etag = registry._read_alias_with_etag("production")
    registry.promote(2, alias="production")  # someone else moves it first
    with pytest.raises(RegistryError, match="moved by someone else"):
        registry._swap_alias("production", stale_record, stale_etag)
    assert registry.resolve("production")[0].version == 2
    # Version numbers are claimed with If-None-Match: a second claim of an existing number fails.
    assert registry._put(f"{registry.version_prefix(2)}/_claim", b"x", if_none_match=True) is False


def test_model_cli_round_trip(stack_settings, exports) -> None:
    name, (e0, e1) = exports
    env = {**stack_env(stack_settings), "TAGWATCH_TRITON__MODEL_NAME": f"{name}-cli"}
    # The export's model name must match the registry's: the CLI refuses another model's export.
    refused = run_cli("model", "register", str(e0.out_dir), env=env)
    assert refused.returncode == 11 and "error:" in refused.stderr and "Traceback" not in refused.stderr
    env["TAGWATCH_TRITON__MODEL_NAME"] = name
    listed_before = json.loads(run_cli("model", "list", "--json", env=env).stdout or "[]")
    first = run_cli("model", "register", str(e1.out_dir), "--alias", "candidate", env=env)
    assert first.returncode == 0, first.stderr
    version = max(v["version"] for v in json.loads(run_cli("model", "list", "--json", env=env).stdout))
    assert version == max([v["version"] for v in listed_before], default=0) + 1
    promote = run_cli("model", "promote", str(version), env=env)
    assert promote.returncode == 0, promote.stderr
    show = json.loads(run_cli("model", "show", "production", env=env).stdout)
    assert show["version"] == version and show["policy_version"] == "p1"
    verify = run_cli("model", "verify", "production", env=env)
    assert verify.returncode == 0 and "OK" in verify.stdout


def test_a_consumer_reads_the_serving_view_not_the_model_and_refuses_a_tampered_policy(stack_settings, exports) -> None:
    from tagwatch.registry.serving_view import read_serving_view

    _, (e0, _) = exports
    registry = _fresh(stack_settings, e0.info["model_name"])
    registry.register(e0.out_dir, alias="production")
    keys: list[str] = []
    get_object = registry.s3.get_object

    def recording(**kwargs):
        keys.append(kwargs["Key"])
        return get_object(**kwargs)

    registry.s3.get_object = recording  # records the keys read; every read goes to the real SeaweedFS
    try:
        view = read_serving_view(registry, "production")
    finally:
        registry.s3.get_object = get_object
    local = registry.fetch("production", dest=stack_settings.paths.state_dir / "test-serving-view")
    assert view.categories == local.categories() and view.policy == local.policy
    assert view.metadata == local.metadata and view.policy["version"] == "p0"
    assert not any(key.endswith(".onnx") for key in keys), keys
    prefix, files = registry.version_prefix(1), view.metadata.files
    read = [key[len(prefix) + 1 :] for key in keys if key.startswith(f"{prefix}/")]
    assert sorted(read) == sorted(["metadata.json", "policy.json", f"repository/{registry.model_name}/categories.txt"])
    assert sum(files[path].bytes for path in read if path in files) < view.metadata.total_bytes() / 10

    key = f"{registry.version_prefix(1)}/policy.json"
    policy = json.loads(registry.s3.get_object(Bucket=registry.bucket, Key=key)["Body"].read())
    policy["categories"] = {c: {**rule, "review_threshold": 0.99} for c, rule in policy["categories"].items()}
    registry.s3.put_object(Bucket=registry.bucket, Key=key, Body=json.dumps(policy).encode())
    with pytest.raises(IntegrityError, match="policy.json differs from metadata.json"):
        read_serving_view(registry, "production")
