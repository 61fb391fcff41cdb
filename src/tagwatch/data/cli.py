"""`tagwatch data ...`: ingest posts, inspect the hashtag vocabulary, build the sharded dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tagwatch.cli_context import cli_settings
from tagwatch.output import emit_json

data_app = typer.Typer(help="Posts corpus, hashtag vocabulary and sharded training data.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def _settings(ctx: typer.Context):
    from tagwatch.stack import with_stack_endpoints

    return with_stack_endpoints(cli_settings(ctx))


def _settings_and_client(ctx: typer.Context):
    from tagwatch.clients import s3_client

    settings = _settings(ctx)
    return settings, s3_client(settings.s3)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=err, transient=False,
    )


@data_app.command("fetch")
def fetch(
    ctx: typer.Context,
    source: Annotated[Optional[list[str]], typer.Argument(help="Sources to make present (default: all real ones).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only when something was downloaded.")] = False,
) -> None:
    """Download the sources that are not Debian packages (OpenMoji: pinned npm tarball, integrity-checked) into
    ${XDG_CACHE_HOME:-~/.cache}/tagwatch/sources; check the Debian ones are installed. Idempotent."""
    from tagwatch.data.sources import REAL_SOURCES, fetch_sources, parse_sources

    for result in fetch_sources(parse_sources(source) if source else REAL_SOURCES):
        if result.fetched or not quiet:
            out.print(f"{result.source}: {result.note} ({result.root})")


@data_app.command("ingest")
def ingest(
    ctx: typer.Context,
    source: Annotated[list[str], typer.Option(
        "--source", help="openclipart, openmoji, tuxpaint or synthetic; repeatable or comma-separated.")] = ["openclipart"],  # noqa: B006
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N items of each source.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds caption noise and synthetic images.")] = 0,
    workers: Annotated[Optional[int], typer.Option(help="Render processes (default: CPU count).")] = None,
    source_dir: Annotated[
        Optional[Path], typer.Option("--source-dir", help="The source's files (one source only; default: its own, "
                                     "e.g. /usr/share/openclipart/svg).")
    ] = None,
    retry_skipped: Annotated[
        bool, typer.Option("--retry-skipped", help="Also retry items an earlier run skipped (broken SVG, no keywords).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON (a list with several sources).")] = False,
) -> None:
    """Render a source's images, write images and post records to the posts bucket (resumable)."""
    from tagwatch.data.ingest import ingest_source
    from tagwatch.data.sources import parse_sources
    from tagwatch.errors import ConfigError

    names = parse_sources(source)
    if source_dir and len(names) > 1:
        raise ConfigError("--source-dir names one source's files", hint="ingest one --source at a time with it")
    settings, client = _settings_and_client(ctx)
    reports = []
    for name in names:
        with _progress() as progress:
            task = progress.add_task(f"ingest {name}", total=None)
            reports.append(ingest_source(
                client=client, bucket=settings.s3.buckets.posts, source=name, author_key=settings.privacy.author_key,
                limit=limit, seed=seed, workers=workers,
                root=source_dir, retry_skipped=retry_skipped,
                on_total=lambda n: progress.update(task, total=n),
                on_advance=lambda n: progress.advance(task, n),
            ))
    if as_json:
        emit_json(reports[0].to_json() if len(reports) == 1 else [r.to_json() for r in reports])
        return
    for report in reports:
        out.print(
            f"[green]ingested[/] {report.ingested} posts from {report.source} in {report.seconds:.1f}s "
            f"({report.already_there} already there, {report.known_bad} known bad, {report.posts_total} in "
            f"s3://{settings.s3.buckets.posts}/posts/{report.source}/)"
        )
        if report.skipped or report.bad_keywords:
            reasons = ", ".join(f"{reason} {count}" for reason, count in report.skipped.items()) or "none"
            out.print(f"[yellow]skipped[/] {sum(report.skipped.values())}: {reasons}; "
                      f"non-UTF-8 keywords dropped: {report.bad_keywords}")


def split_names(values) -> tuple[str, ...]:
    """["a,b", "c"] -> ("a", "b", "c"): repeatable options that also take comma-separated lists."""
    return tuple(dict.fromkeys(n.strip() for v in values for n in str(v).split(",") if n.strip()))


@data_app.command("vocab")
def vocab(
    ctx: typer.Context,
    top_k: Annotated[int, typer.Option("--top-k", help="Keep the K most frequent labels.")] = 1000,
    min_count: Annotated[int, typer.Option("--min-count", help="Drop labels on fewer train posts.")] = 5,
    plot: Annotated[Path, typer.Option("--plot", help="Where to save the rank-frequency (Zipf) plot.")] = Path(
        "vocab-zipf.png"
    ),
    show: Annotated[int, typer.Option("--show", help="How many top labels to list.")] = 25,
) -> None:
    """Compute the hashtag vocabulary of the posts now in S3; print a summary; save a Zipf plot."""
    from tagwatch.data.build import vocabulary_of_posts
    from tagwatch.data.build_request import BuildRequest
    from tagwatch.data.wordnet import load_wordnet

    settings, client = _settings_and_client(ctx)
    config = BuildRequest(top_k=top_k, min_count=min_count).build_config(
        consent_unknown=settings.privacy.consent_unknown)
    vocabulary, report, build_report = vocabulary_of_posts(
        client=client, posts_bucket=settings.s3.buckets.posts, config=config, wordnet=load_wordnet()
    )
    table = Table(title=f"hashtag vocabulary: {len(vocabulary.labels)} labels ({vocabulary.version})")
    for column in ("#", "label", "synset", "train posts", "aliases"):
        table.add_column(column)
    for label in vocabulary.labels[:show]:
        table.add_row(str(label.index), label.name, label.synset or "-", str(label.count), ", ".join(label.aliases[:6]))
    out.print(table)
    out.print(
        f"posts {build_report.posts_read} (train {report.posts}); raw hashtags {report.raw_tags}; distinct tokens "
        f"{report.distinct_tokens} -> canonical keys {report.distinct_keys}; stop-tag uses {report.stop_tags}; "
        f"folded into hypernyms {len(report.folded)}; too rare {report.too_rare}; too common "
        f"{report.too_common or 'none'}; beyond top-K {report.beyond_top_k}"
    )
    save_zipf_plot(counts=[label.count for label in vocabulary.labels], path=plot)
    out.print(f"Zipf plot: {plot}")


def save_zipf_plot(*, counts: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    axis.loglog(range(1, len(counts) + 1), counts, marker=".", linestyle="none")
    axis.set_xlabel("rank")
    axis.set_ylabel("train posts with the label")
    axis.set_title("hashtag rank-frequency")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


@data_app.command("build")
def build(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Dataset name (prefix in the datasets bucket).")] = "hashtags",
    version: Annotated[Optional[str], typer.Option(help="Version (default: a hash of the inputs).")] = None,
    source: Annotated[Optional[list[str]], typer.Option(
        "--source", help="Only these sources (repeatable or comma-separated; default: all in the posts bucket).")] = None,
    shard_samples: Annotated[int, typer.Option(help="Samples per shard at most.")] = 500,
    top_k: Annotated[int, typer.Option("--top-k")] = 1000,
    min_count: Annotated[int, typer.Option("--min-count")] = 5,
    categories: Annotated[Optional[Path], typer.Option(help="Categories YAML (default: the package's).")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    review_labels: Annotated[bool, typer.Option(
        "--review-labels", help="Fold reviewers' outcomes (the ledger's post history) into the train split.")] = False,
    map_tasks: Annotated[int, typer.Option(
        "--map-tasks", min=1, help="Cut the posts into N ranges, mapped one after another (the pipeline runs them "
        "in parallel); the dataset is the same for any N.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Build vocabulary, splits, PDQ dedup, shards and the sealed manifest (a rerun on the same posts is a no-op)."""
    from dataclasses import asdict

    from tagwatch.data.build_request import BuildRequest, build_requested

    settings = _settings(ctx)
    request = BuildRequest(name=name, version=version, sources=split_names(source or ()), shard_samples=shard_samples,
                           top_k=top_k, min_count=min_count, seed=seed, categories_path=categories,
                           review_labels=review_labels, map_tasks=map_tasks)
    with _progress() as progress:
        tasks: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        report = build_requested(settings.s3, request, consent_unknown=settings.privacy.consent_unknown,
                                 progress=on_progress)
    if as_json:
        emit_json(asdict(report))
        return
    if report.up_to_date:
        out.print(f"[green]up to date[/]: {report.manifest_uri} ({report.posts_read} posts read)")
        return
    out.print(f"[green]built[/] {report.manifest_uri} in {report.seconds.get('total', 0):.1f}s")
    out.print(f"  splits      {report.splits}")
    out.print(f"  vocabulary  {report.vocabulary_size} labels; top: "
              + ", ".join(f"{n} ({c})" for n, c in report.top_tags[:10]))
    out.print(f"  holdout     {report.holdout_categories}")
    out.print(f"  dedup       {report.dedup_dropped} train images dropped (PDQ <= 31 of an eval image)")
    excluded = report.consent.get("excluded", {})
    out.print(f"  consent     {sum(excluded.values())} posts left out ({', '.join(f'{k} {v}' for k, v in excluded.items())}"
              f"; unknown consent: {report.consent.get('policy', {}).get('unknown')})")
    if report.review_labels:
        review = report.review_labels
        out.print(f"  review      {review['added_to_train']} added to train, {review['overrode']} train labels "
                  f"replaced, {review['left_in_eval']} left in val/holdout, {review['dropped_near_duplicate_of_eval']}"
                  f" dropped (near-copy of an eval image), {sum(review['excluded_privacy'].values())} left out for "
                  f"privacy, skipped {review['skipped'] or 'none'} ({review['posts_reviewed']} posts reviewed)")
    if report.skipped:
        out.print(f"  [yellow]skipped[/]     {report.skipped}")


@data_app.command("sources")
def sources(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Dataset name.")] = "hashtags",
    version: Annotated[Optional[str], typer.Option(help="Dataset version (default: the latest build).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest's sources as JSON.")] = False,
) -> None:
    """Each source of a built dataset: licence, attribution, posts, samples and positives per category."""
    from tagwatch.data.provenance import manifest_of, sources_table

    settings, client = _settings_and_client(ctx)
    manifest = manifest_of(client, settings.s3.buckets.datasets, name, version)
    if as_json:
        emit_json([info.model_dump(mode="json") for info in manifest.sources])
        return
    print(sources_table(manifest), end="")  # Markdown for docs: not through rich (it wraps at 80 columns)
    for info in manifest.sources:
        if info.attribution:
            print(f"- {info.name}: {info.attribution}")
