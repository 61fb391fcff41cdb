"""Compile the packaged pipelines to KFP IR YAML and generate each component's README.md from its docstring.

The pipelines and components ship inside the package (``tagwatch.pipeline.definitions``, ``.components``), so this
works the same from a checkout, a wheel or the image. The output goes to ``DEFAULT_OUT`` relative to the current
directory unless a directory is given: run from the repository root, that is the committed IR
(``pipelines/compiled/<name>.yaml``; a test recompiles and diffs).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from tagwatch.pipeline.components import COMPONENTS
from tagwatch.pipeline.definitions import PIPELINES

__all__ = ["COMPONENTS", "DEFAULT_OUT", "PIPELINES", "compile_all", "compile_pipeline", "component_readme",
           "write_readmes"]

DEFAULT_OUT = Path("pipelines") / "compiled"


def compile_pipeline(name: str, out_file: Path) -> Path:
    from kfp import compiler

    from tagwatch.pipeline.local import import_pipeline

    out_file.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(import_pipeline(name), str(out_file))
    return out_file


def compile_all(out_dir: Path | None = None) -> list[Path]:
    out_dir = out_dir or DEFAULT_OUT
    return [compile_pipeline(name, out_dir / f"{name}.yaml") for name in PIPELINES]


def component_readme(name: str) -> str:
    """README.md text of component ``name``: its docstring, its inputs/outputs with types, the image."""
    from tagwatch.pipeline.image import IMAGE

    component = getattr(importlib.import_module(f"tagwatch.pipeline.components.{name}.component"), name)
    doc = inspect.getdoc(component.python_func) or ""
    summary, _, rest = doc.partition("\n")
    spec = component.component_spec
    rows = []
    for direction, specs in (("in", spec.inputs or {}), ("out", spec.outputs or {})):
        for key, io in specs.items():
            default = getattr(io, "default", None)
            rows.append(f"| `{key}` | {direction} | `{io.type}` | {'' if default is None else f'`{default!r}`'} |")
    return (f"# {name}\n\n{summary}\n\n"
            "Generated from `component.py` by `tagwatch pipeline compile --readmes`; edit the docstring, "
            "not this file.\n\n"
            f"Image: `{IMAGE}` (one image for every component; `Dockerfile` at the repository root).\n"
            f"Logic: `tagwatch.pipeline.steps` (the component only wires KFP inputs/outputs).\n\n"
            "| name | in/out | type | default |\n|---|---|---|---|\n" + "\n".join(rows)
            + "\n\n```\n" + rest.strip() + "\n```\n")


def components_dir() -> Path:
    """Where the component packages are: the source tree in a checkout (editable install), else site-packages."""
    import tagwatch.pipeline.components

    return Path(tagwatch.pipeline.components.__file__).resolve().parent


def write_readmes(root: Path | None = None) -> list[Path]:
    """Rewrite ``<root>/<name>/README.md`` (default: next to each component's source; a developer's step)."""
    root = root or components_dir()
    written = []
    for name in COMPONENTS:
        path = root / name / "README.md"
        path.write_text(component_readme(name), encoding="utf-8")
        written.append(path)
    return written
