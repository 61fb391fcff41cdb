"""What the model registry and the policy store share: numbered immutable versions and compare-and-swap aliases
under one S3 prefix.

Keys under ``root`` (``registry/<model_name>`` for models, ``registry/<model_name>/policies`` for policies)::

    versions/<NNNNNN>/_claim         created first with If-None-Match: * (two registers never share N)
    versions/<NNNNNN>/...            the version's files
    versions/<NNNNNN>/metadata.json  written LAST: a version without it is incomplete and never listed
    aliases/<alias>.json             one AliasRecord, replaced by one conditional PUT (If-Match its ETag)

A subclass names its metadata model (``metadata_model``) and the words its messages use; it adds what it
stores in a version and how a version is verified before an alias may name it.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from tagwatch.errors import IntegrityError, RegistryError
from tagwatch.registry.metadata import AliasRecord, check_alias_name, moved_alias, rolled_back_alias, sha256_bytes

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
CLAIM_FILE = "_claim"
PREFIX = "registry"


class VersionStore:
    """Numbered versions and aliases of one model name's ``root`` in ``bucket``."""

    metadata_model: type[BaseModel]
    noun = "version"  # "<model_name> has no <noun> 3"
    cli = "model"  # the `tagwatch <cli> ...` commands the hints name

    def __init__(self, s3_client: Any, *, bucket: str, model_name: str, root: str) -> None:
        self.s3 = s3_client
        self.bucket = bucket
        self.model_name = model_name
        self.root = root

    # -- keys ---------------------------------------------------------------------------------------
    def version_prefix(self, version: int) -> str:
        return f"{self.root}/versions/{version:06d}"

    def alias_key(self, alias: str) -> str:
        return f"{self.root}/aliases/{alias}.json"

    def metadata_key(self, version: int) -> str:
        return f"{self.version_prefix(version)}/{METADATA_FILE}"

    # -- versions -----------------------------------------------------------------------------------
    def _claim_next_version(self) -> int:
        version = max(self._version_numbers(), default=0) + 1
        for _ in range(50):
            if self._put(f"{self.version_prefix(version)}/{CLAIM_FILE}", who().encode(), if_none_match=True):
                return version
            version += 1  # someone else claimed it between our list and our put
        raise RegistryError("could not claim a version number after 50 tries", hint="is another register looping?")

    def _version_numbers(self) -> list[int]:
        numbers = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.root}/versions/", Delimiter="/"):
            for entry in page.get("CommonPrefixes", []):
                name = entry["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                if name.isdigit():
                    numbers.append(int(name))
        return sorted(numbers)

    def list_versions(self) -> list:
        """Complete versions (metadata.json present), oldest first."""
        out = []
        for number in self._version_numbers():
            raw = self._get(self.metadata_key(number))
            if raw is not None:
                out.append(self._parse_metadata(raw, number))
        return out

    def metadata(self, version: int) -> tuple[Any, str]:
        """metadata.json of ``version`` and its sha256."""
        raw = self._get(self.metadata_key(version))
        if raw is None:
            known = ", ".join(str(n) for n in self._version_numbers() if self._get(self.metadata_key(n))) or "none"
            raise RegistryError(f"{self.model_name} has no {self.noun} {version}",
                                hint=f"registered {self.noun}s: {known}")
        return self._parse_metadata(raw, version), sha256_bytes(raw)

    def resolve(self, ref: str | int) -> tuple[Any, str]:
        """A version number, an alias name or ``latest`` -> (metadata, its sha256); alias integrity checked."""
        text = str(ref)
        if text.isdigit():
            return self.metadata(int(text))
        if text == "latest":
            for number in reversed(self._version_numbers()):
                if self._get(self.metadata_key(number)) is not None:
                    return self.metadata(number)
            raise RegistryError(f"{self.model_name} has no registered {self.noun}",
                                hint=f"`tagwatch {self.cli} register`")
        record = self.read_alias(text)
        if record is None:
            names = ", ".join(self.aliases()) or "none"
            raise RegistryError(f"{self.model_name} has no {self.cli} alias {text!r}",
                                hint=f"aliases: {names}; `tagwatch {self.cli} promote VERSION --alias NAME` creates one")
        metadata, digest = self.metadata(record.version)
        if digest != record.metadata_sha256:
            raise IntegrityError(
                f"metadata.json of {self.model_name} {self.noun} {record.version} changed after alias {text!r} "
                f"was set (sha256 {digest[:12]}… != {record.metadata_sha256[:12]}…)",
                hint=f"the version was tampered with; promote a verified version (`tagwatch {self.cli} verify`)",
            )
        return metadata, digest

    def _parse_metadata(self, raw: bytes, version: int):
        try:
            return self.metadata_model.model_validate_json(raw)
        except ValueError as error:
            raise IntegrityError(f"metadata.json of {self.noun} {version} is unreadable ({type(error).__name__})",
                                 hint="the version is damaged; promote another one") from error

    # -- aliases ------------------------------------------------------------------------------------
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
        raw = self.alias_bytes(alias)
        return AliasRecord.model_validate_json(raw) if raw is not None else None

    def alias_bytes(self, alias: str) -> bytes | None:
        """The alias record as stored (one small GET: a cheap way to see whether it moved); None if absent."""
        return self._get(self.alias_key(alias))

    def _move_alias(self, version: int, *, alias: str, reason: str) -> AliasRecord:
        """Point ``alias`` at ``version`` (the caller verified it) in one conditional PUT."""
        check_alias_name(alias)
        _, digest = self.metadata(version)
        current, etag = self._read_alias_with_etag(alias)
        record = moved_alias(current, alias=alias, model_name=self.model_name, version=version,
                             metadata_sha256=digest, by=who(), reason=reason)
        self._swap_alias(alias, record, etag)
        log.info("%s alias %s -> %s %s %d", self.cli, alias, self.model_name, self.noun, version)
        return record

    def _roll_back_alias(self, alias: str, check: Callable[[int], None]) -> AliasRecord:
        """Move ``alias`` back to the version it named before; ``check(version)`` raises if that one may not be
        named (it is verified by the subclass)."""
        current, etag = self._read_alias_with_etag(alias)
        if current is None:
            raise RegistryError(f"{self.model_name} has no {self.cli} alias {alias!r}", hint="nothing to roll back")
        if not current.previous:
            raise RegistryError(f"alias {alias!r} has no earlier {self.noun} to roll back to",
                                hint=f"it names {self.noun} {current.version} and has no history")
        check(current.previous[0])
        record = rolled_back_alias(current, metadata_sha256_of=lambda v: self.metadata(v)[1], by=who())
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
        ok = self._put(self.alias_key(alias), dump_json(record), if_none_match=etag is None, if_match=etag)
        if not ok:
            raise RegistryError(f"alias {alias!r} was moved by someone else while this command ran",
                                hint=f"look at `tagwatch {self.cli} list` and run the command again")

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


def dump_json(model: BaseModel) -> bytes:
    return json.dumps(model.model_dump(mode="json"), indent=2, sort_keys=True).encode()


def who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
