"""JSON Schemas of the data build's own files (post records, the dedup report), generated from their models.

The dataset seam's schemas (manifest, vocabulary, shard sample) come from ``tagwatch.schemas`` with the same
rendering. The committed files in the package's schema dir (``tagwatch.schemas.SCHEMA_DIR``) must equal what
:func:`generate_schemas` returns (a unit test checks); after changing a model, regenerate them with
``python -m tagwatch.data.schemas [schemas-dir]`` (default: that packaged dir).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tagwatch.schemas import dump as render_schema
from tagwatch.schemas import export, schema_of


def _models() -> dict:
    from tagwatch.data.dedup import DedupReport
    from tagwatch.data.posts import Post

    return {"post.v1.json": Post, "dedup-report.v1.json": DedupReport}


def generate_schemas() -> dict[str, dict]:
    """file name -> JSON Schema."""
    return {file_name: schema_of(model, file_name) for file_name, model in _models().items()}


def write_schemas(directory: Path) -> list[Path]:
    return export(directory, _models())


__all__ = ["generate_schemas", "render_schema", "write_schemas"]


if __name__ == "__main__":
    from tagwatch.schemas import SCHEMA_DIR

    for written_path in write_schemas(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR):
        print(written_path)
