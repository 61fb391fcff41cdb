"""`python -m tagwatch.schemas [DIR]`: rewrite the generated JSON Schemas (default: the packaged ``SCHEMA_DIR``)."""

import sys
from pathlib import Path

from tagwatch.schemas import SCHEMA_DIR, export

if __name__ == "__main__":
    for path in export(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR):
        print(path)
