"""`python -m tagwatch.schemas [DIR]`: rewrite the generated JSON Schemas (default: the packaged ``SCHEMA_DIR``)."""

import sys
from pathlib import Path

from tagwatch.schemas import SCHEMA_DIR, export

if __name__ == "__main__":
    if any(arg.startswith("-") for arg in sys.argv[1:]):
        print("usage: python -m tagwatch.schemas [DIR]\nRewrite the generated JSON Schemas in DIR (default: the "
              "packaged schema directory)." if "-h" in sys.argv or "--help" in sys.argv else
              f"unknown option {sys.argv[1]!r}; usage: python -m tagwatch.schemas [DIR]", file=sys.stderr)
        sys.exit(0 if "-h" in sys.argv or "--help" in sys.argv else 2)
    for path in export(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR):
        print(path)
