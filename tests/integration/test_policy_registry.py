"""Policy versions in the real S3 (SeaweedFS) through the real CLI: register, show, diff, list, promote (and the
refusal of a policy for another model than the model alias serves), rollback, the model promote warning, the
store's atomicity rules, and `calibrate` end to end on a model trained on a dataset the platform can reopen."""

from __future__ import annotations

import json
import uuid

import pytest

from tagwatch.clients import s3_client
from tagwatch.errors import IntegrityError, RegistryError
from tagwatch.registry import ModelRegistry
from tagwatch.registry.policies import PolicyStore, onnx_sha256
from tests.conftest import run_cli, stack_env
from tests.support.checkpoints import save_tiny_cnn_checkpoint
from tests.support.policies import policy_document
from tests.support.serving_models import CATEGORIES, export_tiny


@pytest.fixture(scope="module")
def two_models(stack_settings, tmp_path_factory):
    """A fresh model name with versions 1 and 2 (different weights); production -> 1."""
    name = f"test-policy-{uuid.uuid4().hex[:8]}"
    registry = ModelRegistry(s3_client(stack_settings.s3), bucket=stack_settings.s3.buckets.models, model_name=name)
    root = tmp_path_factory.mktemp("policy-models")
    registry.register(export_tiny(root / "v1", model_name=name, seed=0).out_dir, alias="production")
    registry.register(export_tiny(root / "v2", model_name=name, seed=1).out_dir)
    return registry, {**stack_env(stack_settings), "TAGWATCH_TRITON__MODEL_NAME": name}


def _ok(done):
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_register_show_diff_promote_refuse_rollback_through_the_cli(two_models, tmp_path):
    registry, env = two_models
    store = PolicyStore(registry)
    name = registry.model_name
    loose, strict = tmp_path / "loose.json", tmp_path / "strict.json"
    loose.write_text(json.dumps(policy_document(CATEGORIES, review=0.5, remove=0.9, version="hand-loose")))
    strict_doc = policy_document(CATEGORIES, review=0.3, remove=0.8, version="hand-strict")
    strict_doc["categories"]["alcohol"]["mode"] = "monitor"
    strict.write_text(json.dumps(strict_doc))

    out = _ok(run_cli("policy", "register", str(loose), "--model-version", "1", "--reason", "start", "--alias",
                      "production", env=env))
    assert f"registered {name}-policy-1 (policy version 1) for model version 1; production -> 1" in out
    _ok(run_cli("policy", "register", str(strict), "--model-version", "1", "--reason", "stricter", env=env))

    shown = json.loads(_ok(run_cli("policy", "show", "2", "--json", env=env)))
    meta = shown["metadata"]
    assert meta["policy_id"] == f"{name}-policy-2" and meta["derived_from"] == "hand-strict"
    assert meta["model_version"] == 1 and meta["model_sha256"] == onnx_sha256(registry.metadata(1)[0])
    assert meta["source"] == "import" and meta["parent"] == 1 and meta["reason"] == "stricter"
    assert shown["policy"]["version"] == f"{name}-policy-2" and shown["policy"]["model"]["registry_version"] == "1"
    text = _ok(run_cli("policy", "show", "production", env=env))
    assert f"{name}-policy-1" in text and "calibrated for" in text and "version 1" in text
    assert any(line.split()[:4] == ["weapons", "act", "0.500", "0.900"] for line in text.splitlines())

    diff = json.loads(_ok(run_cli("policy", "diff", "production", "latest", "--json", env=env)))
    rows = {r["category"]: r for r in diff["categories"]}
    assert diff["a"] == f"{name}-policy-1" and diff["b"] == f"{name}-policy-2"
    assert rows["weapons"]["changes"] == {"review_threshold": [0.5, 0.3], "remove_threshold": [0.9, 0.8]}
    assert rows["alcohol"]["changes"]["mode"] == ["act", "monitor"]
    assert "review_threshold: 0.500 -> 0.300" in _ok(run_cli("policy", "diff", "1", "2", env=env))

    _ok(run_cli("policy", "promote", "2", "--reason", "tighten", env=env))
    assert store.read_alias("production").version == 2 and store.read_alias("production").previous == [1]

    # a policy calibrated for model version 2 while production serves version 1: refused, naming both
    _ok(run_cli("policy", "register", str(loose), "--model-version", "2", env=env))
    refused = run_cli("policy", "promote", "3", env=env)
    assert refused.returncode == 11 and "Traceback" not in refused.stderr, refused.stderr
    assert "calibrated for" in refused.stderr and "version 2" in refused.stderr and "serves version 1" in refused.stderr
    assert "promote model version 2 first" in refused.stderr
    assert "tagwatch policy calibrate --model-version 1" in refused.stderr
    assert store.read_alias("production").version == 2  # unchanged

    listed = json.loads(_ok(run_cli("policy", "list", "--json", env=env)))
    assert [(r["number"], r["aliases"], r["model_version"]) for r in listed] == \
        [(1, [], 1), (2, ["production"], 1), (3, [], 2)]

    assert "rolled back to policy version 1" in _ok(run_cli("policy", "rollback", env=env))
    assert store.read_alias("production").version == 1

    # the model moves to version 2: a warning that the production policy is for version 1
    promoted = run_cli("model", "promote", "2", env=env)
    assert promoted.returncode == 0, promoted.stderr
    assert "warning:" in promoted.stderr and f"{name}-policy-1" in promoted.stderr
    assert "tagwatch policy calibrate --model-version 2" in " ".join(promoted.stderr.split())
    _ok(run_cli("policy", "promote", "3", env=env))  # now it is the served model's
    _ok(run_cli("model", "rollback", env=env))  # leave production on model version 1 for the other tests


def test_bad_input_exits_with_the_documented_code_and_a_hint(two_models, tmp_path):
    registry, env = two_models
    for args, code, words in [
        (("policy", "show", "99"), 11, "has no policy version 99"),
        (("policy", "show", "canary"), 11, "has no policy alias 'canary'"),
        (("policy", "promote", "98"), 11, "has no policy version 98"),
        (("policy", "rollback", "--alias", "canary"), 11, "nothing to roll back"),
    ]:
        done = run_cli(*args, env=env)
        assert done.returncode == code and words in done.stderr and "hint:" in done.stderr, (args, done.stderr)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(policy_document(CATEGORIES) | {"schema_version": 2, "categories": {}}))
    done = run_cli("policy", "register", str(bad), "--model-version", "1", env=env)
    assert done.returncode == 3 and "fails its schema" in done.stderr and "hint:" in done.stderr, done.stderr
    bad.write_text(json.dumps(policy_document(["nudity"])))
    done = run_cli("policy", "register", str(bad), "--model-version", "1", env=env)
    assert done.returncode == 3 and "nudity" in done.stderr, done.stderr
    done = run_cli("policy", "register", str(bad.with_name("missing.json")), "--model-version", "1", env=env)
    assert done.returncode == 3 and "unreadable" in done.stderr
    bad.write_text(json.dumps(policy_document(CATEGORIES)))
    done = run_cli("policy", "register", str(bad), "--model-version", "77", env=env)
    assert done.returncode == 11 and "has no version 77" in done.stderr
    # the tiny model's own policy is a bare {version, categories}: not a policy.v1/v2 document
    done = run_cli("policy", "register", "--model-version", "1", env=env)
    assert done.returncode == 3 and "fails its schema" in done.stderr, done.stderr
    # the tiny model names no dataset it was trained on: calibrate says so, and what to pass
    done = run_cli("policy", "calibrate", "--model-version", "1", env=env, timeout=240)
    assert done.returncode == 3 and "names no calibration dataset" in done.stderr, done.stderr
    assert "--dataset NAME/VERSION" in done.stderr
    for command in ("list", "show", "diff", "register", "calibrate", "promote", "rollback"):
        help_text = " ".join(_ok(run_cli("policy", command, "--help", env=env)).split())
        assert "Example: tagwatch policy" in help_text and "Exit codes:" in help_text and "11" in help_text


def test_store_atomicity_a_claimed_number_is_skipped_a_stale_alias_swap_loses_a_tampered_policy_is_refused(
        two_models):
    registry, _ = two_models
    store = PolicyStore(registry)
    taken = max(store._version_numbers(), default=0) + 1
    assert store._put(f"{store.version_prefix(taken)}/_claim", b"someone", if_none_match=True)
    assert store._put(f"{store.version_prefix(taken)}/_claim", b"me", if_none_match=True) is False
    meta = store.register(policy_document(CATEGORIES), model_version=1, source="import")
    assert meta.number == taken + 1  # the claimed one was skipped
    assert taken not in [v.number for v in store.list_versions()]  # never complete: never listed
    with pytest.raises(RegistryError, match="has no policy version"):
        store.read(taken)

    stale, etag = store._read_alias_with_etag("production")
    store.promote(meta.number, reason="moved meanwhile")
    with pytest.raises(RegistryError, match="moved by someone else"):
        store._swap_alias("production", stale, etag)

    key = f"{store.version_prefix(meta.number)}/policy.json"
    store.s3.put_object(Bucket=store.bucket, Key=key, Body=b'{"version": "edited", "categories": {}}')
    with pytest.raises(IntegrityError, match="differs from metadata.json"):
        store.read(meta.number)
    with pytest.raises(IntegrityError):
        store.promote(meta.number)


def test_calibrate_scores_the_models_dataset_and_registers_a_policy_version(stack_settings, tmp_path):
    name = f"test-calibrate-{uuid.uuid4().hex[:8]}"
    env = {**stack_env(stack_settings), "TAGWATCH_TRITON__MODEL_NAME": name}
    uri = save_tiny_cnn_checkpoint(stack_settings, run_id=f"run-{uuid.uuid4().hex[:6]}")
    embedded = policy_document(["weapons", "violence", "drugs"], version="cal-1")
    embedded["calibration"]["dataset"] = "memory://synthetic:64"
    (tmp_path / "policy.json").write_text(json.dumps(embedded))
    _ok(run_cli("model", "export", "--checkpoint", uri, "--out", str(tmp_path / "out"), "--policy",
                str(tmp_path / "policy.json"), env=env, timeout=240))
    _ok(run_cli("model", "register", str(tmp_path / "out"), "--alias", "production", env=env))

    out = _ok(run_cli("policy", "calibrate", "--model-version", "1", "--review-budget", "0.2", "--min-positives",
                      "1", "--alias", "production", "--reason", "wider review", env=env, timeout=300))
    assert f"registered {name}-policy-1" in out and "review_budget=0.2" in out and "production -> 1" in out
    shown = json.loads(_ok(run_cli("policy", "show", "production", "--json", env=env)))
    meta, policy = shown["metadata"], shown["policy"]
    assert meta["source"] == "calibrate" and meta["model_version"] == 1 and meta["reason"] == "wider review"
    assert policy["constraints"]["review_budget"] == 0.2 and policy["constraints"]["min_positives"] == 1
    assert policy["constraints"]["remove_precision"] == 0.95  # kept from the version's own policy
    assert policy["calibration"]["dataset"] == "memory://synthetic:64" and policy["calibration"]["images"] == 8
    assert "registry version 1" in policy["calibration"]["split"]
    assert set(policy["categories"]) == {"weapons", "violence", "drugs"}

    # the model version's own policy, imported as a policy version of its own
    own = _ok(run_cli("policy", "register", "--model-version", "1", env=env))
    assert f"registered {name}-policy-2" in own
    imported = json.loads(_ok(run_cli("policy", "show", "2", "--json", env=env)))
    assert imported["metadata"]["source"] == "model-version" and imported["metadata"]["derived_from"] == "cal-1"
    assert imported["metadata"]["parent"] == 1  # what production named

    wrong = run_cli("policy", "calibrate", "--model-version", "1", "--dataset", "synthetic:32", env=env, timeout=240)
    assert wrong.returncode == 3 and "not the one" in wrong.stderr, wrong.stderr
