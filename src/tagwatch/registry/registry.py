"""ModelRegistry: register, list, show, promote, rollback, verify and fetch model versions in S3.

Layout and atomicity rules: see ``tagwatch.registry.metadata``. Every read of a version for use (``fetch``)
recomputes the sha256 of each file and refuses the version (IntegrityError) on any difference.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tagwatch.errors import ExportError, IntegrityError, RegistryError
from tagwatch.export.export import EXPORT_INFO_FILE, POLICY_FILE, read_export_info
from tagwatch.export.triton_layout import ModelLayout, find_onnx, write_model_repository, read_label_file
from tagwatch.output import staged_dir
from tagwatch.registry.metadata import (
    AliasRecord,
    FileDigest,
    VersionMetadata,
    check_alias_name,
    compare_digests,
    digest_files,
    moved_alias,
    rolled_back_alias,
    sha256_bytes,
)

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
CLAIM_FILE = "_claim"
PREFIX = "registry"


@dataclass(frozen=True)
class VerifyReport:
    version: int
    files: int
    bytes: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class LocalModel:
    """A verified copy of one version on local disk."""

    metadata: VersionMetadata
    metadata_sha256: str
    root: Path  # holds repository/, policy.json, metadata.json

    @property
    def repository(self) -> Path:
        return self.root / "repository"

    @property
    def onnx_path(self) -> Path:
        return self.root / self.metadata.onnx_file()

    @property
    def policy(self) -> dict | None:
        path = self.root / POLICY_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def labels(self) -> list[str]:
        return read_label_file(self.repository / self.metadata.model_name / "hashtags.txt")

    def categories(self) -> list[str]:
        return read_label_file(self.repository / self.metadata.model_name / "categories.txt")


class ModelRegistry:
    """One model name's registry in ``bucket`` (``settings.s3.buckets.models``)."""

    def __init__(self, s3_client: Any, *, bucket: str, model_name: str, prefix: str = PREFIX) -> None:
        self.s3 = s3_client
        self.bucket = bucket
        self.model_name = model_name
        self.root = f"{prefix}/{model_name}"

    # -- keys ---------------------------------------------------------------------------------------
    def version_prefix(self, version: int) -> str:
        return f"{self.root}/versions/{version:06d}"

    def alias_key(self, alias: str) -> str:
        return f"{self.root}/aliases/{alias}.json"

    def storage_uri(self, version: int) -> str:
        return f"s3://{self.bucket}/{self.version_prefix(version)}/repository"

    # -- register -----------------------------------------------------------------------------------
    def register(self, export_dir: Path, *, metrics: dict | None = None, parent_version: int | None = None,
                 alias: str | None = None) -> VersionMetadata:
        """Upload an export directory as the next version; optionally point ``alias`` at it.

        ``parent_version`` defaults to what ``production`` names now (the model this one is meant to replace).
        """
        info = read_export_info(export_dir)
        if info.get("model_name") != self.model_name:
            raise RegistryError(
                f"export is for model {info.get('model_name')!r}, this registry holds {self.model_name!r}",
                hint="export with the same settings.triton.model_name",
            )
        if parent_version is None and (production := self.read_alias("production")) is not None:
            parent_version = production.version
        version = self._claim_next_version()
        with tempfile.TemporaryDirectory(prefix="tagwatch-register-") as tmp:
            files = self._stage_version(export_dir, info, version, Path(tmp))
            policy = json.loads(files[POLICY_FILE]) if POLICY_FILE in files else None
            metadata = VersionMetadata(
                model_name=self.model_name, version=version, created_at=datetime.now(timezone.utc),
                created_by=_who(), storage_uri=self.storage_uri(version), files=digest_files(files),
                lineage=info.get("lineage", {}), parent_version=parent_version, metrics=metrics or {},
                policy_version=str(policy["version"]) if policy else None, preset=info["preset"],
                layout={**info["layout"], "version": version}, parity=info.get("parity", {}),
            )
            prefix = self.version_prefix(version)
            for path, data in files.items():
                self.s3.put_object(Bucket=self.bucket, Key=f"{prefix}/{path}", Body=data)
            # Last, and only if absent: its presence is what makes the version exist.
            self._put(f"{prefix}/{METADATA_FILE}", _dump(metadata), if_none_match=True)
        log.info("registered %s version %d (%d files)", self.model_name, version, len(files))
        if alias:
            self.promote(version, alias=alias, reason="register")
        return metadata

    def _stage_version(self, export_dir: Path, info: dict, version: int, tmp: Path) -> dict[str, bytes]:
        src_repo = export_dir / "repository"
        onnx = find_onnx(src_repo, self.model_name)
        layout = ModelLayout.from_dict({**info["layout"], "version": version})
        model_dir = src_repo / self.model_name
        repo = tmp / "repository"
        write_model_repository(repo, layout=layout, onnx_path=onnx, labels=read_label_file(model_dir / "hashtags.txt"),
                               categories=read_label_file(model_dir / "categories.txt"))
        files = {f"repository/{p.relative_to(repo)}": p.read_bytes() for p in sorted(repo.rglob("*")) if p.is_file()}
        if (export_dir / POLICY_FILE).exists():
            files[POLICY_FILE] = (export_dir / POLICY_FILE).read_bytes()
        if sha256_bytes(files[f"repository/{self.model_name}/{version}/model.onnx"]) != info["onnx"]["sha256"]:
            raise ExportError(f"{onnx} changed since export ({EXPORT_INFO_FILE} records another sha256)",
                              hint="re-run `tagwatch model export`")
        return files

    def _claim_next_version(self) -> int:
        version = max(self._version_numbers(), default=0) + 1
        for _ in range(50):
            if self._put(f"{self.version_prefix(version)}/{CLAIM_FILE}", _who().encode(), if_none_match=True):
                return version
            version += 1  # someone else claimed it between our list and our put
        raise RegistryError("could not claim a version number after 50 tries", hint="is another register looping?")

    # -- read ---------------------------------------------------------------------------------------
    def _version_numbers(self) -> list[int]:
        numbers = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.root}/versions/", Delimiter="/"):
            for entry in page.get("CommonPrefixes", []):
                name = entry["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                if name.isdigit():
                    numbers.append(int(name))
        return sorted(numbers)

    def list_versions(self) -> list[VersionMetadata]:
        """Complete versions (metadata.json present), oldest first."""
        out = []
        for number in self._version_numbers():
            raw = self._get(f"{self.version_prefix(number)}/{METADATA_FILE}")
            if raw is not None:
                out.append(_parse_metadata(raw, number))
        return out

    def aliases(self) -> dict[str, AliasRecord]:
        out = {}
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.root}/aliases/"):
            for entry in page.get("Contents", []):
                name = entry["Key"].rsplit("/", 1)[-1].removesuffix(".json")
                if (record := self.read_alias(name)) is not None:
                    out[name] = record
        return out

    def read_alias(self, alias: str) -> AliasRecord | None:
        raw = self._get(self.alias_key(alias))
        return AliasRecord.model_validate_json(raw) if raw is not None else None

    def metadata(self, version: int) -> tuple[VersionMetadata, str]:
        """metadata.json of ``version`` and its sha256."""
        raw = self._get(f"{self.version_prefix(version)}/{METADATA_FILE}")
        if raw is None:
            known = ", ".join(str(v.version) for v in self.list_versions()) or "none"
            raise RegistryError(f"{self.model_name} has no version {version}", hint=f"registered versions: {known}")
        return _parse_metadata(raw, version), sha256_bytes(raw)

    def resolve(self, ref: str | int) -> tuple[VersionMetadata, str]:
        """A version number, an alias name or ``latest`` -> (metadata, its sha256); alias integrity checked."""
        text = str(ref)
        if text.isdigit():
            return self.metadata(int(text))
        if text == "latest":
            versions = self._version_numbers()
            for number in reversed(versions):
                if self._get(f"{self.version_prefix(number)}/{METADATA_FILE}") is not None:
                    return self.metadata(number)
            raise RegistryError(f"{self.model_name} has no registered version", hint="`tagwatch model register`")
        record = self.read_alias(text)
        if record is None:
            names = ", ".join(self.aliases()) or "none"
            raise RegistryError(f"{self.model_name} has no alias {text!r}", hint=f"aliases: {names}; "
                                "`tagwatch model promote VERSION --alias NAME` creates one")
        metadata, digest = self.metadata(record.version)
        if digest != record.metadata_sha256:
            raise IntegrityError(
                f"metadata.json of {self.model_name} version {record.version} changed after alias {text!r} "
                f"was set (sha256 {digest[:12]}… != {record.metadata_sha256[:12]}…)",
                hint="the version was tampered with; promote a verified version (`tagwatch model verify`)",
            )
        return metadata, digest

    # -- aliases ------------------------------------------------------------------------------------
    def promote(self, version: int, *, alias: str = "production", reason: str = "") -> AliasRecord:
        """Point ``alias`` at ``version`` after verifying every file of it; one conditional PUT."""
        check_alias_name(alias)
        report = self.verify(version)
        if not report.ok:
            raise IntegrityError(f"refusing to promote {self.model_name} version {version}: {report.problems[0]}",
                                 hint="`tagwatch model verify` lists every problem; register a fresh export")
        _, digest = self.metadata(version)
        current, etag = self._read_alias_with_etag(alias)
        record = moved_alias(current, alias=alias, model_name=self.model_name, version=version,
                             metadata_sha256=digest, by=_who(), reason=reason)
        self._swap_alias(alias, record, etag)
        log.info("alias %s -> %s version %d", alias, self.model_name, version)
        return record

    def rollback(self, alias: str = "production") -> AliasRecord:
        """Move ``alias`` back to the version it named before (which is verified first)."""
        current, etag = self._read_alias_with_etag(alias)
        if current is None:
            raise RegistryError(f"{self.model_name} has no alias {alias!r}", hint="nothing to roll back")
        if not current.previous:
            raise RegistryError(f"alias {alias!r} has no earlier version to roll back to",
                                hint=f"it names version {current.version} and has no history")
        target = current.previous[0]
        report = self.verify(target)
        if not report.ok:
            raise IntegrityError(f"refusing to roll {alias!r} back to version {target}: {report.problems[0]}",
                                 hint="promote another verified version instead")
        record = rolled_back_alias(current, metadata_sha256_of=lambda v: self.metadata(v)[1], by=_who())
        self._swap_alias(alias, record, etag)
        return record

    def _read_alias_with_etag(self, alias: str) -> tuple[AliasRecord | None, str | None]:
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=self.alias_key(alias))
        except self.s3.exceptions.NoSuchKey:
            return None, None
        return AliasRecord.model_validate_json(response["Body"].read()), response["ETag"]

    def _swap_alias(self, alias: str, record: AliasRecord, etag: str | None) -> None:
        """Compare-and-swap: the PUT succeeds only if the alias is still what we read (or still absent)."""
        body = _dump(record)
        ok = self._put(self.alias_key(alias), body, if_none_match=etag is None, if_match=etag)
        if not ok:
            raise RegistryError(f"alias {alias!r} was moved by someone else while this command ran",
                                hint="look at `tagwatch model list` and run the command again")

    # -- verify / fetch -----------------------------------------------------------------------------
    def verify(self, version: int) -> VerifyReport:
        """Download every file of ``version`` and recompute its sha256; also flags files not in metadata.json."""
        metadata, _ = self.metadata(version)
        prefix = self.version_prefix(version)
        actual: dict[str, FileDigest] = {}
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{prefix}/"):
            for entry in page.get("Contents", []):
                path = entry["Key"][len(prefix) + 1 :]
                if path in (METADATA_FILE, CLAIM_FILE):
                    continue
                data = self._get(entry["Key"]) or b""
                actual[path] = FileDigest(sha256=sha256_bytes(data), bytes=len(data))
        problems = compare_digests(metadata.files, actual)
        return VerifyReport(version=version, files=len(metadata.files), bytes=metadata.total_bytes(), problems=problems)

    def fetch(self, ref: str | int, *, dest: Path) -> LocalModel:
        """Download a version (number, alias or ``latest``) to ``dest/<version>-<sha12>``, verifying every file.

        Raises IntegrityError naming the first file whose sha256 differs; nothing half-verified is left behind.
        """
        metadata, digest = self.resolve(ref)
        target = dest / f"{metadata.version:06d}-{digest[:12]}"
        damaged = target.exists()
        if damaged and not _local_problems(target, metadata):
            return LocalModel(metadata=metadata, metadata_sha256=digest, root=target)
        # content-addressed: a copy another consumer installs meanwhile is kept; only a damaged one is replaced
        with staged_dir(target, prefix=".fetch-", replace=damaged) as staging:
            prefix = self.version_prefix(metadata.version)
            for path in metadata.files:
                data = self._get(f"{prefix}/{path}")
                if data is None:
                    raise IntegrityError(f"{self.model_name} version {metadata.version}: {path} is missing in S3",
                                         hint="the version is damaged; promote another one")
                out = staging / path
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
            problems = _local_problems(staging, metadata)
            if problems:
                raise IntegrityError(
                    f"refusing to load {self.model_name} version {metadata.version}: {problems[0]}",
                    hint="the stored file differs from metadata.json; `tagwatch model verify` lists all problems",
                )
            (staging / METADATA_FILE).write_text(_dump(metadata).decode())
        return LocalModel(metadata=metadata, metadata_sha256=digest, root=target)

    # -- S3 primitives ------------------------------------------------------------------------------
    def _get(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None

    def _put(self, key: str, body: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> bool:
        """PUT; False if a condition did not hold (412 / 409)."""
        from botocore.exceptions import ClientError

        from tagwatch.clients import condition_failed

        kwargs: dict[str, Any] = {}
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match:
            kwargs["IfMatch"] = if_match
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, **kwargs)
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True


def _local_problems(root: Path, metadata: VersionMetadata) -> list[str]:
    actual = {}
    for path in metadata.files:
        file = root / path
        if file.is_file():
            data = file.read_bytes()
            actual[path] = FileDigest(sha256=sha256_bytes(data), bytes=len(data))
    return compare_digests(metadata.files, actual)


def _parse_metadata(raw: bytes, version: int) -> VersionMetadata:
    try:
        return VersionMetadata.model_validate_json(raw)
    except ValueError as error:
        raise IntegrityError(f"metadata.json of version {version} is unreadable ({type(error).__name__})",
                             hint="the version is damaged; promote another one") from error


def _dump(model) -> bytes:
    return json.dumps(model.model_dump(mode="json"), indent=2, sort_keys=True).encode()


def _who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def open_registry(settings) -> ModelRegistry:
    """The registry of ``settings.triton.model_name`` in ``settings.s3.buckets.models``.

    ``settings`` must name the S3 endpoint: callers resolve it at their edge (``with_stack_endpoints`` for the
    embedded stack), so the registry never reaches up into ``tagwatch.stack``.
    """
    from tagwatch.clients import s3_client

    return ModelRegistry(s3_client(settings.s3), bucket=settings.s3.buckets.models,
                         model_name=settings.triton.model_name)
