"""What a client of a served model needs from its registry version, without downloading the model.

A moderation consumer never runs the ONNX file (Triton does): it needs the version's metadata (model name,
version, the ONNX file's sha256 for decision ids, the preprocessing preset), the category order and the
policy calibrated for it. ``read_serving_view`` reads exactly those: metadata.json (alias integrity checked
by ``resolve``), categories.txt and policy.json, each checked against the sha256 metadata.json records.
A few KB per consumer start or model change instead of the whole version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tagwatch.errors import IntegrityError
from tagwatch.export.export import POLICY_FILE
from tagwatch.registry.metadata import VersionMetadata, sha256_bytes


@dataclass(frozen=True)
class ServingView:
    metadata: VersionMetadata
    metadata_sha256: str
    categories: list[str]
    policy: dict | None


def read_serving_view(registry, ref: str | int) -> ServingView:
    """Metadata, categories and policy of a version (number, alias or ``latest``), each file sha256-checked."""
    metadata, digest = registry.resolve(ref)
    categories_path = f"repository/{metadata.model_name}/categories.txt"

    categories = read_version_file(registry, metadata, categories_path, required=True)
    policy = read_version_file(registry, metadata, POLICY_FILE)
    return ServingView(metadata=metadata, metadata_sha256=digest,
                       categories=categories.decode("utf-8").splitlines(),
                       policy=json.loads(policy) if policy is not None else None)


def read_version_file(registry, metadata: VersionMetadata, path: str, *, required: bool = False) -> bytes | None:
    """One file of a version, sha256-checked against metadata.json; None if the version has no such file (an
    IntegrityError instead when ``required``)."""
    expected = metadata.files.get(path)
    if expected is None:
        if required:
            raise IntegrityError(f"{metadata.model_name} version {metadata.version} has no {path}",
                                 hint="the version is damaged; promote another one")
        return None
    body = registry._get(f"{registry.version_prefix(metadata.version)}/{path}")  # the registry's own read
    if body is None:
        raise IntegrityError(f"{metadata.model_name} version {metadata.version}: {path} is missing in S3",
                             hint="the version is damaged; promote another one")
    if sha256_bytes(body) != expected.sha256:
        raise IntegrityError(f"refusing {metadata.model_name} version {metadata.version}: {path} differs from "
                             "metadata.json", hint="`tagwatch model verify` lists all problems")
    return body
