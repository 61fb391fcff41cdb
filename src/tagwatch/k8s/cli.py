"""`tagwatch manifests ...`: render and validate the kustomize overlays offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

manifests_app = typer.Typer(help="Render and validate the Kubernetes manifests offline.", no_args_is_help=True)
out = Console()



@manifests_app.command("validate")
def validate(
    overlay: Annotated[Optional[list[str]], typer.Argument(help="Overlay names (default: all under manifests/overlays).")] = None,
    manifests_dir: Annotated[Path, typer.Option(help="The manifests/ folder.")] = Path("manifests"),
    kubectl: Annotated[str, typer.Option(help="kubectl binary used for `kubectl kustomize`.")] = "kubectl",
) -> None:
    """Render each overlay and check core schemas, CRD schemas (manifests/crds) and security rules. Exit 7 on problems."""
    from tagwatch.k8s.validate import ManifestValidationError, count_kinds, validate_overlay

    overlays_dir = manifests_dir / "overlays"
    if not overlays_dir.is_dir():
        raise ManifestValidationError(f"{overlays_dir} does not exist", hint="run from the repository root or pass --manifests-dir")
    names = overlay or sorted(p.name for p in overlays_dir.iterdir() if p.is_dir())
    failed = 0
    for name in names:
        objects, problems = validate_overlay(overlays_dir / name, manifests_dir / "crds", kubectl)
        table = Table(title=f"overlay {name}: {len(objects)} objects, {len(problems)} problems")
        table.add_column("kind")
        table.add_column("count", justify="right")
        for kind, count in count_kinds(objects).items():
            table.add_row(kind, str(count))
        out.print(table)
        for problem in problems:
            out.print(f"[red]✗[/] {problem}", highlight=False)
        failed += len(problems)
    if failed:
        raise ManifestValidationError(f"{failed} problem(s) in the manifests", hint="fix the objects listed above")
    out.print("[green]manifests OK[/]")
