"""Compile the pipelines to KFP IR YAML (``pipelines/compiled/<name>.yaml``, committed; a test recompiles and
diffs) and generate each component's README.md from its docstring."""

from __future__ import annotations

import inspect
from pathlib import Path

PIPELINES = ("pretrain_and_deploy", "transfer_only")
COMPONENTS = ("ingest", "build_dataset", "pretrain", "transfer", "export_model", "evaluate", "register_model",
              "deploy_model")


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def compile_pipeline(name: str, out_file: Path) -> Path:
    from kfp import compiler

    from tagwatch.pipeline.local import import_pipeline

    out_file.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(import_pipeline(name), str(out_file))
    return out_file


def compile_all(out_dir: Path | None = None) -> list[Path]:
    out_dir = out_dir or repo_root() / "pipelines" / "compiled"
    return [compile_pipeline(name, out_dir / f"{name}.yaml") for name in PIPELINES]


def component_readme(name: str) -> str:
    """README.md text of ``components/<name>``: its docstring, its inputs/outputs with types, the image."""
    import importlib

    from tagwatch.pipeline.image import IMAGE
    from tagwatch.pipeline.local import import_pipeline

    import_pipeline("pretrain_and_deploy")  # puts the repository root on sys.path
    component = getattr(importlib.import_module(f"components.{name}.component"), name)
    doc = inspect.getdoc(component.python_func) or ""
    summary, _, rest = doc.partition("\n")
    spec = component.component_spec
    rows = []
    for direction, specs in (("in", spec.inputs or {}), ("out", spec.outputs or {})):
        for key, io in specs.items():
            default = getattr(io, "default", None)
            rows.append(f"| `{key}` | {direction} | `{io.type}` | {'' if default is None else f'`{default!r}`'} |")
    return (f"# {name}\n\n{summary}\n\n"
            f"Generated from `component.py` by `tagwatch pipeline compile`; edit the docstring, not this file.\n\n"
            f"Image: `{IMAGE}` (one image for every component; `Dockerfile` at the repository root).\n"
            f"Logic: `tagwatch.pipeline.steps` (the component only wires KFP inputs/outputs).\n\n"
            "| name | in/out | type | default |\n|---|---|---|---|\n" + "\n".join(rows)
            + "\n\n```\n" + rest.strip() + "\n```\n")


def write_readmes(root: Path | None = None) -> list[Path]:
    root = root or repo_root() / "components"
    written = []
    for name in COMPONENTS:
        path = root / name / "README.md"
        path.write_text(component_readme(name), encoding="utf-8")
        written.append(path)
    return written
