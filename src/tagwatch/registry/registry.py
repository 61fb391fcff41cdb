"""ModelRegistry: register, list, show, promote, rollback, verify and fetch model versions in S3.

Layout and atomicity rules: see ``tagwatch.registry.metadata``. Every read of a version for use (``fetch``)
recomputes the sha256 of each file and refuses the version (IntegrityError) on any difference.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tagwatch.errors import ExportError, IntegrityError, RegistryError
from tagwatch.export.export import EXPORT_INFO_FILE, POLICY_FILE, read_export_info
from tagwatch.export.triton_layout import ModelLayout, find_onnx, write_model_repository, read_label_file
from tagwatch.output import staged_dir
from tagwatch.registry.metadata import AliasRecord, FileDigest, VersionMetadata, compare_digests, digest_files, sha256_bytes
from tagwatch.registry.store import CLAIM_FILE, METADATA_FILE, PREFIX, VersionStore, dump_json, who

log = logging.getLogger(__name__)


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


class ModelRegistry(VersionStore):
    """One model name's registry in ``bucket`` (``settings.s3.buckets.models``)."""

    metadata_model = VersionMetadata

    def __init__(self, s3_client: Any, *, bucket: str, model_name: str, prefix: str = PREFIX) -> None:
        super().__init__(s3_client, bucket=bucket, model_name=model_name, root=f"{prefix}/{model_name}")

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
        with tempfile.TemporaryDirectory(prefix="tagwatch-register-") as tmp:
            return self.register_files(
                lambda version: self._stage_version(export_dir, info, version, Path(tmp)),
                lineage=info.get("lineage", {}), parent_version=parent_version, metrics=metrics,
                preset=info["preset"], layout=info["layout"], parity=info.get("parity", {}), alias=alias)

    def register_files(self, stage, *, lineage: dict, preset: dict, layout: dict, parent_version: int | None = None,
                       metrics: dict | None = None, parity: dict | None = None,
                       alias: str | None = None) -> VersionMetadata:
        """Upload the files ``stage(version)`` returns (path -> bytes) as the next version; metadata.json last.

        ``register`` stages an export directory; a model imported as shipped (registry/open_nsfw.py) its own files.
        """
        version = self._claim_next_version()
        files = stage(version)
        policy = json.loads(files[POLICY_FILE]) if POLICY_FILE in files else None
        metadata = VersionMetadata(
            model_name=self.model_name, version=version, created_at=datetime.now(timezone.utc),
            created_by=who(), storage_uri=self.storage_uri(version), files=digest_files(files),
            lineage=lineage, parent_version=parent_version, metrics=metrics or {},
            policy_version=str(policy["version"]) if policy else None, preset=preset,
            layout={**layout, "version": version}, parity=parity or {},
        )
        prefix = self.version_prefix(version)
        for path, data in files.items():
            self.s3.put_object(Bucket=self.bucket, Key=f"{prefix}/{path}", Body=data)
        # Last, and only if absent: its presence is what makes the version exist.
        self._put(f"{prefix}/{METADATA_FILE}", dump_json(metadata), if_none_match=True)
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

    # -- aliases ------------------------------------------------------------------------------------
    def promote(self, version: int, *, alias: str = "production", reason: str = "") -> AliasRecord:
        """Point ``alias`` at ``version`` after verifying every file of it; one conditional PUT."""
        self._check_verified(version, f"refusing to promote {self.model_name} version {version}",
                             hint="`tagwatch model verify` lists every problem; register a fresh export")
        return self._move_alias(version, alias=alias, reason=reason)

    def rollback(self, alias: str = "production") -> AliasRecord:
        """Move ``alias`` back to the version it named before (which is verified first)."""
        return self._roll_back_alias(alias, lambda target: self._check_verified(
            target, f"refusing to roll {alias!r} back to version {target}", hint="promote another verified version instead"))

    def _check_verified(self, version: int, refusal: str, *, hint: str) -> None:
        report = self.verify(version)
        if not report.ok:
            raise IntegrityError(f"{refusal}: {report.problems[0]}", hint=hint)

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
            (staging / METADATA_FILE).write_text(dump_json(metadata).decode())
        return LocalModel(metadata=metadata, metadata_sha256=digest, root=target)


def _local_problems(root: Path, metadata: VersionMetadata) -> list[str]:
    actual = {}
    for path in metadata.files:
        file = root / path
        if file.is_file():
            data = file.read_bytes()
            actual[path] = FileDigest(sha256=sha256_bytes(data), bytes=len(data))
    return compare_digests(metadata.files, actual)


def open_registry(settings) -> ModelRegistry:
    """The registry of ``settings.triton.model_name`` in ``settings.s3.buckets.models``.

    ``settings`` must name the S3 endpoint: callers resolve it at their edge (``with_stack_endpoints`` for the
    embedded stack), so the registry never reaches up into ``tagwatch.stack``.
    """
    from tagwatch.clients import s3_client

    return ModelRegistry(s3_client(settings.s3), bucket=settings.s3.buckets.models,
                         model_name=settings.triton.model_name)
