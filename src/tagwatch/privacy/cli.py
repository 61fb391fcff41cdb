"""`tagwatch posts delete` and `tagwatch data lineage`: thin callers of tagwatch.privacy (mounted by tagwatch.cli)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tagwatch.cli_context import cli_settings
from tagwatch.output import emit_json


def _settings(ctx: typer.Context):
    from tagwatch.stack import with_stack_endpoints

    return with_stack_endpoints(cli_settings(ctx))


def delete(
    ctx: typer.Context,
    post_id: Annotated[str, typer.Argument(help="The post to erase.")],
    reason: Annotated[str, typer.Option(
        help="Why (kept on the erasure list and in the event; no personal data).")] = "",
    image_uri: Annotated[Optional[str], typer.Option(
        help="The image of a post that has no post record (one that only went through the stream).")] = None,
    force: Annotated[bool, typer.Option(
        help="Put the id on the erasure list even when nothing of it is found.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Erase a post: erasure list (no later build includes it), image and record removed from the posts bucket,
    post.deleted published; the ledger keeps its decision (no image). Rerun to finish an interrupted deletion.

    Example: tagwatch posts delete synthetic-0a1b2c3d4e5f6789 --reason "user request"
    """
    from tagwatch.privacy.deletion import erase_post

    settings = _settings(ctx)
    report = erase_post(settings, post_id, reason=reason, image_uri=image_uri, force=force)
    if as_json:
        emit_json(report.to_json())
        return
    print(f"erased {post_id}: erasure list {'added' if report.erasure_added else 'already listed'}; record "
          f"{'deleted' if report.record_removed else 'not found'}; image {report.image_note}; ledger decision "
          f"{'kept (' + report.ledger_decision + ')' if report.ledger_decision else 'none'}; post.deleted at "
          f"{settings.kafka.topics.deleted}[{report.event_partition}]@{report.event_offset}")
    print(f"earlier datasets and models: tagwatch data lineage {post_id}")


def lineage(
    ctx: typer.Context,
    post_id: Annotated[str, typer.Argument(help="The post to trace.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """List the dataset versions whose shards hold a post and the registered model versions trained on them, so
    an operator can decide what to rebuild or retrain (e.g. after `tagwatch posts delete`).

    Example: tagwatch data lineage synthetic-0a1b2c3d4e5f6789 --json
    """
    from tagwatch.clients import s3_client
    from tagwatch.privacy.lineage import find_lineage
    from tagwatch.registry.registry import open_registry

    settings = _settings(ctx)
    report = find_lineage(client=s3_client(settings.s3), datasets_bucket=settings.s3.buckets.datasets,
                          registry=open_registry(settings), post_id=post_id)
    if as_json:
        emit_json(report.to_json())
        return
    # plain print, not rich: operators grep and pipe this (rich wraps at 80 columns off a terminal)
    print(f"{post_id}: in {len(report.datasets)} of {report.searched} dataset versions")
    for hit in report.datasets:
        review = f", {hit.review_labels} reviewer labels" if hit.review_labels else ""
        print(f"  dataset {hit.name}/{hit.version} ({hit.split} split, manifest {hit.manifest_hash[:12]}{review})")
    for model in report.models:
        aliases = f" [{', '.join(model.aliases)}]" if model.aliases else ""
        print(f"  model   {model.model_name} version {model.version}{aliases} trained on {model.dataset}")
    for name in report.unreadable:
        print(f"  unreadable manifest: {name} (not searched)")
