"""The one entry for building a dataset from the posts in S3: ``tagwatch data build``, the pipeline's
build-dataset step and the demo each turn their inputs into a ``BuildRequest`` and call ``build_requested``.

The same request gives the same ``BuildConfig`` wherever it is made, so the demo's own build and the pipeline's
find the same dataset version.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from tagwatch.data.build import BuildConfig, BuildReport, Progress
from tagwatch.data.mapreduce import build_dataset, plan_build
from tagwatch.data.vocab import VocabConfig
from tagwatch.privacy.consent import UnknownPolicy

if TYPE_CHECKING:
    from tagwatch.settings import S3Settings


@dataclass(frozen=True)
class BuildRequest:
    """What a caller of a build chooses; every other ``BuildConfig`` field keeps its default."""

    name: str = "hashtags"
    version: str | None = None  # None: derived from the inputs and the config
    sources: tuple[str, ...] = ()  # empty: every source in the posts bucket
    shard_samples: int = 500
    top_k: int = 1000
    min_count: int = 5
    seed: int = 0
    categories_path: Path | None = None  # None: the package's categories.yaml
    categories_yaml: str = ""  # inline YAML text of the categories (a pipeline parameter); wins over the path
    review_labels: bool = False  # fold reviewers' outcomes (the ledger's post history) into train
    map_tasks: int = 1  # ranges of posts the map/reduce build cuts the work into (same dataset for any number)

    def build_config(self, *, categories_path: Path | None = None,
                     consent_unknown: UnknownPolicy = "exclude") -> BuildConfig:
        """The build's config; ``consent_unknown`` is the platform's policy (``settings.privacy``), not a choice
        of the request."""
        return BuildConfig(name=self.name, version=self.version, sources=tuple(self.sources),
                           shard_samples=self.shard_samples, seed=self.seed,
                           vocab=VocabConfig(top_k=self.top_k, min_count=self.min_count),
                           categories_path=categories_path or self.categories_path, consent_unknown=consent_unknown,
                           review_labels=self.review_labels)


@contextmanager
def _requested_config(request: BuildRequest, consent_unknown: UnknownPolicy) -> Iterator[BuildConfig]:
    with tempfile.TemporaryDirectory(prefix="tagwatch-categories-") as tmp:
        categories_path = None
        if request.categories_yaml.strip():  # the build reads a file (and stores its exact text with the dataset)
            categories_path = Path(tmp) / "categories.yaml"
            categories_path.write_text(request.categories_yaml, encoding="utf-8")
        yield request.build_config(categories_path=categories_path, consent_unknown=consent_unknown)


def build_requested(s3: S3Settings, request: BuildRequest, *, consent_unknown: UnknownPolicy = "exclude",
                    progress: Progress | None = None) -> BuildReport:
    """Build (or find already built) the dataset ``request`` describes from the posts in ``s3``'s posts bucket into
    its datasets bucket (``tagwatch.data.mapreduce.build_dataset``, ``request.map_tasks`` ranges one after another
    in this process: consent filter, vocabulary, splits, PDQ dedup, shards, manifest; with
    ``request.review_labels``, the review outcomes in its ledger bucket folded into train).
    ``consent_unknown``: ``settings.privacy.consent_unknown``."""
    from tagwatch.clients import s3_client
    from tagwatch.data.wordnet import load_wordnet

    with _requested_config(request, consent_unknown) as config:
        return build_dataset(client=s3_client(s3), posts_bucket=s3.buckets.posts, datasets_bucket=s3.buckets.datasets,
                             config=config, wordnet=load_wordnet(), progress=progress, ledger_bucket=s3.buckets.ledger,
                             map_tasks=request.map_tasks)


def plan_requested(s3: S3Settings, request: BuildRequest, *, consent_unknown: UnknownPolicy = "exclude") -> dict:
    """The first step of the same build run as separate tasks (the pipeline): ``tagwatch.data.mapreduce.plan_build``
    -> {plan_uri, ranges, dataset, up_to_date}; the later steps take the plan_uri."""
    from tagwatch.clients import s3_client
    from tagwatch.data.wordnet import load_wordnet

    with _requested_config(request, consent_unknown) as config:
        return plan_build(client=s3_client(s3), posts_bucket=s3.buckets.posts, datasets_bucket=s3.buckets.datasets,
                          config=config, wordnet=load_wordnet(), map_tasks=request.map_tasks,
                          ledger_bucket=s3.buckets.ledger)
