"""The registry's two documents, as pure data: a version's metadata.json and an alias record.

Keys under ``s3://<buckets.models>/registry/<model_name>/``::

    versions/<NNNNNN>/_claim                 created first with If-None-Match: * (two registers never share N)
    versions/<NNNNNN>/repository/<model>/... the Triton repository (KServe ``storageUri`` points here)
    versions/<NNNNNN>/policy.json            optional thresholds that belong to this version
    versions/<NNNNNN>/metadata.json          written LAST: a version without it is incomplete and never listed
    aliases/<alias>.json                     one object, replaced by one conditional PUT (If-Match its ETag)
    policies/versions/<NNNNNN>/{_claim, policy.json, metadata.json}   policy versions (registry/policies.py),
    policies/aliases/<alias>.json                                       same rules, their own aliases

A version is immutable: nothing rewrites its keys. An alias record names a version and the sha256 of that
version's metadata.json, so a reader that resolves an alias also detects a metadata.json edited afterwards.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

METADATA_SCHEMA_VERSION = 1
POLICY_METADATA_SCHEMA_VERSION = 1
ALIAS_SCHEMA_VERSION = 1
ALIAS_HISTORY = 20
ALIAS_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
RESERVED_REFS = {"latest"}


class FileDigest(BaseModel):
    model_config = ConfigDict(frozen=True)

    sha256: str
    bytes: int


class VersionMetadata(BaseModel):
    """metadata.json of one registered version."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = METADATA_SCHEMA_VERSION
    model_name: str
    version: int
    created_at: datetime
    created_by: str
    storage_uri: str = Field(description="s3:// URI of the Triton repository root (KServe storageUri)")
    files: dict[str, FileDigest] = Field(description="path relative to the version prefix -> digest")
    lineage: dict[str, Any] = Field(default_factory=dict, description="run_id, manifest_hash, vocabulary_version, ...")
    parent_version: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    policy_version: str | None = None
    preset: dict[str, Any]
    layout: dict[str, Any]
    parity: dict[str, Any] = Field(default_factory=dict)

    def onnx_file(self) -> str:
        return f"repository/{self.model_name}/{self.version}/model.onnx"

    def total_bytes(self) -> int:
        return sum(d.bytes for d in self.files.values())


class PolicyVersionMetadata(BaseModel):
    """metadata.json of one policy version: which model version (and ONNX bytes) its thresholds were calibrated
    for, where it came from, and the sha256 of its policy.json."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = POLICY_METADATA_SCHEMA_VERSION
    model_name: str
    number: int = Field(description="the policy version number (versions/<NNNNNN>)")
    policy_id: str = Field(description="what decisions record as policy_version, e.g. <model_name>-policy-<number>")
    model_version: int = Field(description="the model registry version the thresholds were calibrated for")
    model_sha256: str = Field(description="sha256 of that version's model.onnx: consumers apply the policy only to it")
    created_at: datetime
    created_by: str
    policy_sha256: str = Field(description="sha256 of policy.json")
    source: Literal["calibrate", "import", "model-version"]
    derived_from: str | None = Field(default=None, description="the policy document's own version before registering")
    reason: str = ""
    parent: int | None = Field(default=None, description="policy version the alias named when this one was registered")
    constraints: dict[str, Any] = Field(default_factory=dict, description="the calibration constraints, if any")


class AliasRecord(BaseModel):
    """aliases/<alias>.json: which version the alias names, and the versions it named before (newest first)."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = ALIAS_SCHEMA_VERSION
    alias: str
    model_name: str
    version: int
    metadata_sha256: str
    previous: list[int] = Field(default_factory=list)
    updated_at: datetime
    updated_by: str
    reason: str = ""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_files(files: dict[str, bytes]) -> dict[str, FileDigest]:
    """path -> digest of the given contents (sorted by path, so metadata.json is stable)."""
    return {path: FileDigest(sha256=sha256_bytes(data), bytes=len(data)) for path, data in sorted(files.items())}


def compare_digests(expected: dict[str, FileDigest], actual: dict[str, FileDigest]) -> list[str]:
    """Human-readable problems: a changed, missing or unlisted file. Empty means intact."""
    problems = []
    for path, want in expected.items():
        have = actual.get(path)
        if have is None:
            problems.append(f"{path}: missing")
        elif have.sha256 != want.sha256:
            problems.append(f"{path}: sha256 {have.sha256[:12]}… != recorded {want.sha256[:12]}… "
                            f"({have.bytes} B vs {want.bytes} B)")
    problems.extend(f"{path}: not listed in metadata.json" for path in sorted(set(actual) - set(expected)))
    return problems


def moved_alias(current: AliasRecord | None, *, alias: str, model_name: str, version: int, metadata_sha256: str,
                by: str, reason: str, now: datetime | None = None) -> AliasRecord:
    """The record after pointing ``alias`` at ``version`` (history keeps where it pointed before)."""
    previous: list[int] = []
    if current is not None:
        previous = [current.version, *current.previous] if current.version != version else list(current.previous)
    return AliasRecord(alias=alias, model_name=model_name, version=version, metadata_sha256=metadata_sha256,
                       previous=previous[:ALIAS_HISTORY], updated_at=now or datetime.now(timezone.utc),
                       updated_by=by, reason=reason)


def rolled_back_alias(current: AliasRecord, *, metadata_sha256_of, by: str,
                      now: datetime | None = None) -> AliasRecord:
    """The record after moving ``current`` back to the version it named before; ``metadata_sha256_of(v)``."""
    if not current.previous:
        raise ValueError(f"alias {current.alias!r} has no earlier version to roll back to")
    target, rest = current.previous[0], current.previous[1:]
    return AliasRecord(alias=current.alias, model_name=current.model_name, version=target,
                       metadata_sha256=metadata_sha256_of(target), previous=rest,
                       updated_at=now or datetime.now(timezone.utc), updated_by=by,
                       reason=f"rollback from {current.version}")


def check_alias_name(alias: str) -> None:
    from tagwatch.errors import RegistryError

    if not ALIAS_NAME.match(alias) or alias in RESERVED_REFS or alias.isdigit():
        raise RegistryError(f"invalid alias name {alias!r}",
                            hint="lower-case letters, digits and dashes, starting with a letter (e.g. production)")
