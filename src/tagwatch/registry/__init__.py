"""The S3 model registry: immutable versions (a Triton repository + metadata.json with the sha256 of every file),
aliases (`candidate`, `production`) that move with one conditional PUT, verification before any load."""

from tagwatch.registry.metadata import AliasRecord, VersionMetadata
from tagwatch.registry.registry import LocalModel, ModelRegistry, VerifyReport, open_registry

__all__ = ["AliasRecord", "LocalModel", "ModelRegistry", "VerifyReport", "VersionMetadata", "open_registry"]
