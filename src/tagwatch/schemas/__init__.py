"""JSON Schemas of the moderation stream's events, generated from the pydantic models (one definition).

Also the data seam's manifest, vocabulary and shard sample. (tagwatch.data.schemas renders the post record and
dedup report the same way; the policy's schemas are policy.v1.json and v2, written by hand next to the trainer's
calibration.)

The JSON files ship inside this package (``SCHEMA_DIR``, package data of the wheel), so code reads them the same way
from a checkout, a wheel or the image. `python -m tagwatch.schemas` rewrites them there; a test fails when the
committed files drift from the models.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

SCHEMA_DIR = Path(__file__).resolve().parent


def load_schema(filename: str) -> dict:
    """A packaged JSON Schema by file name (e.g. ``policy.v2.json``)."""
    return json.loads((SCHEMA_DIR / filename).read_text(encoding="utf-8"))


def registry() -> dict[str, type[BaseModel]]:
    from tagwatch.data.manifest import DatasetManifest, ShardSample, Vocabulary
    from tagwatch.moderation.bank import HashBank
    from tagwatch.moderation.bank_store import BankVersionMetadata
    from tagwatch.moderation.claims import RedriveClaim
    from tagwatch.moderation.events import (Decision, DeadLetter, PostCreated, PostDeleted, ReviewOutcome,
                                           ReviewRequest)
    from tagwatch.registry.metadata import AliasRecord, PolicyVersionMetadata, VersionMetadata
    from tagwatch.shadow.report import ShadowReport

    return {
        "post-created.v1.json": PostCreated,
        "post-deleted.v1.json": PostDeleted,
        "moderation-decision.v1.json": Decision,
        "review-request.v1.json": ReviewRequest,
        "review-outcome.v1.json": ReviewOutcome,
        "dead-letter.v1.json": DeadLetter,
        "redrive-claim.v1.json": RedriveClaim,
        "hash-bank.v1.json": HashBank,
        "bank-version-metadata.v1.json": BankVersionMetadata,
        "dataset-manifest.v1.json": DatasetManifest,
        "vocabulary.v1.json": Vocabulary,
        "shard-sample.v1.json": ShardSample,
        "model-version-metadata.v1.json": VersionMetadata,
        "model-alias.v1.json": AliasRecord,
        "policy-version-metadata.v1.json": PolicyVersionMetadata,
        "shadow-report.v1.json": ShadowReport,
    }


def schema_of(model: type[BaseModel], filename: str) -> dict:
    """The JSON Schema of ``model`` as committed under ``filename`` (dialect and $id added)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"https://tagwatch.dev/schemas/{filename}",
            **model.model_json_schema()}


def dump(schema: dict) -> str:
    """The committed text of a schema (sorted keys, two-space indent, final newline)."""
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def render(model: type[BaseModel], filename: str) -> str:
    return dump(schema_of(model, filename))


def export(directory: Path, models: dict[str, type[BaseModel]] | None = None) -> list[Path]:
    """Write the schema of each model (default: ``registry()``) into ``directory``; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, model in (models or registry()).items():
        path = directory / filename
        path.write_text(render(model, filename))
        written.append(path)
    return written
