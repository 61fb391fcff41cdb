"""JSON Schemas of the data build's own files (post records, the dedup report), generated from their models.

The dataset seam's schemas (manifest, vocabulary, shard sample) come from ``tagwatch.schemas`` with the same
rendering. The committed files in the package's schema dir (``tagwatch.schemas.SCHEMA_DIR``) must equal what
:func:`generate_schemas` returns (a unit test checks); after changing a model, regenerate them with
``python -m tagwatch.data.schemas [schemas-dir]`` (default: that packaged dir).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def generate_schemas() -> dict[str, dict]:
    """file name -> JSON Schema."""
    from tagwatch.data.dedup import DedupReport
    from tagwatch.data.posts import Post

    models = {"post.v1.json": Post, "dedup-report.v1.json": DedupReport}
    schemas = {}
    for file_name, model in models.items():
        schema = model.model_json_schema()
        schemas[file_name] = {"$schema": SCHEMA_DIALECT, "$id": f"https://tagwatch.dev/schemas/{file_name}", **schema}
    return schemas


def render_schema(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, schema in generate_schemas().items():
        path = directory / file_name
        path.write_text(render_schema(schema))
        written.append(path)
    return written


if __name__ == "__main__":
    from tagwatch.schemas import SCHEMA_DIR

    for written_path in write_schemas(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR):
        print(written_path)
