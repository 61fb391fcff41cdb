"""Registry documents as pure logic: file digests, tamper detection, alias moves and rollbacks."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pytest

from tagwatch.errors import RegistryError
from tagwatch.registry.metadata import (
    ALIAS_HISTORY,
    check_alias_name,
    compare_digests,
    digest_files,
    moved_alias,
    rolled_back_alias,
)

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_digests_are_sha256_of_content_and_sorted() -> None:
    digests = digest_files({"b.txt": b"bee", "a/model.onnx": b"\x00" * 10})
    assert list(digests) == ["a/model.onnx", "b.txt"]
    assert digests["b.txt"].sha256 == hashlib.sha256(b"bee").hexdigest() and digests["b.txt"].bytes == 3


def test_compare_flags_changed_missing_and_extra_files() -> None:
    recorded = digest_files({"model.onnx": b"weights", "labels.txt": b"a\nb\n"})
    assert compare_digests(recorded, digest_files({"model.onnx": b"weights", "labels.txt": b"a\nb\n"})) == []
    problems = compare_digests(recorded, digest_files({"model.onnx": b"weightz", "extra.bin": b"?"}))
    assert problems[0] == "labels.txt: missing" and problems[1].startswith("model.onnx: sha256")
    assert problems[2] == "extra.bin: not listed in metadata.json" and len(problems) == 3


def _move(current, version):
    return moved_alias(current, alias="production", model_name="m", version=version, metadata_sha256=f"sha{version}",
                       by="t", reason="", now=NOW)


def test_alias_moves_keep_history_newest_first() -> None:
    record = None
    for version in (1, 2, 3):
        record = _move(record, version)
    assert record.version == 3 and record.previous == [2, 1] and record.metadata_sha256 == "sha3"
    # Re-promoting the same version does not push itself into its own history.
    assert _move(record, 3).previous == [2, 1]


def test_alias_history_is_bounded() -> None:
    record = None
    for version in range(1, ALIAS_HISTORY + 5):
        record = _move(record, version)
    assert len(record.previous) == ALIAS_HISTORY and record.previous[0] == ALIAS_HISTORY + 3


def test_rollback_pops_history_and_refuses_when_empty() -> None:
    record = _move(_move(_move(None, 1), 2), 3)
    back = rolled_back_alias(record, metadata_sha256_of=lambda v: f"sha{v}", by="t", now=NOW)
    assert (back.version, back.previous, back.metadata_sha256) == (2, [1], "sha2")
    back = rolled_back_alias(back, metadata_sha256_of=lambda v: f"sha{v}", by="t", now=NOW)
    assert (back.version, back.previous) == (1, [])
    with pytest.raises(ValueError, match="no earlier version"):
        rolled_back_alias(back, metadata_sha256_of=lambda v: f"sha{v}", by="t", now=NOW)


@pytest.mark.parametrize("name", ["production", "candidate", "canary-2"])
def test_valid_alias_names(name) -> None:
    check_alias_name(name)


@pytest.mark.parametrize("name", ["latest", "3", "Prod", "a/b", "", "x" * 41])
def test_invalid_alias_names(name) -> None:
    with pytest.raises(RegistryError):
        check_alias_name(name)


def test_metadata_and_alias_documents_validate_against_committed_schemas() -> None:
    import json

    import jsonschema

    from tagwatch.registry.metadata import VersionMetadata

    from tagwatch.schemas import SCHEMA_DIR as schemas
    metadata = VersionMetadata(
        model_name="m", version=3, created_at=NOW, created_by="t@h", storage_uri="s3://models/registry/m/versions/000003/repository",
        files=digest_files({"repository/m/3/model.onnx": b"w"}), lineage={"run_id": "r"}, parent_version=2,
        metrics={"map": 0.3}, policy_version="p1", preset={"name": "tagwatch-128"}, layout={"version": 3},
    )
    jsonschema.validate(json.loads(metadata.model_dump_json()),
                        json.loads((schemas / "model-version-metadata.v1.json").read_text()))
    alias = _move(None, 3)
    schema = json.loads((schemas / "model-alias.v1.json").read_text())
    jsonschema.validate(json.loads(alias.model_dump_json()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**json.loads(alias.model_dump_json()), "version": "three"}, schema)
