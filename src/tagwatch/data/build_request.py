"""The one entry for building a dataset from the posts in S3: ``tagwatch data build``, the pipeline's
build-dataset step and the demo each turn their inputs into a ``BuildRequest`` and call ``build_requested``.

The same request gives the same ``BuildConfig`` wherever it is made, so the demo's own build and the pipeline's
find the same dataset version.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tagwatch.data.build import BuildConfig, BuildReport, Progress, build_dataset
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

    def build_config(self, *, categories_path: Path | None = None,
                     consent_unknown: UnknownPolicy = "exclude") -> BuildConfig:
        """The build's config; ``consent_unknown`` is the platform's policy (``settings.privacy``), not a choice
        of the request."""
        return BuildConfig(name=self.name, version=self.version, sources=tuple(self.sources),
                           shard_samples=self.shard_samples, seed=self.seed,
                           vocab=VocabConfig(top_k=self.top_k, min_count=self.min_count),
                           categories_path=categories_path or self.categories_path, consent_unknown=consent_unknown,
                           review_labels=self.review_labels)


def build_requested(s3: S3Settings, request: BuildRequest, *, consent_unknown: UnknownPolicy = "exclude",
                    progress: Progress | None = None) -> BuildReport:
    """Build (or find already built) the dataset ``request`` describes from the posts in ``s3``'s posts bucket into
    its datasets bucket (``tagwatch.data.build.build_dataset``: consent filter, vocabulary, splits, PDQ dedup,
    shards, manifest; with ``request.review_labels``, the review outcomes in its ledger bucket folded into train).
    ``consent_unknown``: ``settings.privacy.consent_unknown``."""
    from tagwatch.clients import s3_client
    from tagwatch.data.wordnet import load_wordnet

    with tempfile.TemporaryDirectory(prefix="tagwatch-categories-") as tmp:
        categories_path = None
        if request.categories_yaml.strip():  # the build reads a file (and stores its exact text with the dataset)
            categories_path = Path(tmp) / "categories.yaml"
            categories_path.write_text(request.categories_yaml, encoding="utf-8")
        return build_dataset(client=s3_client(s3), posts_bucket=s3.buckets.posts, datasets_bucket=s3.buckets.datasets,
                             config=request.build_config(categories_path=categories_path,
                                                         consent_unknown=consent_unknown), wordnet=load_wordnet(),
                             progress=progress, ledger_bucket=s3.buckets.ledger)
