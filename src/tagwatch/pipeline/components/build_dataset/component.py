from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def build_dataset(posts: Input[Dataset], dataset: Output[Dataset], summary: Output[Markdown],
                  name: str = "hashtags", sources: list = [], shard_samples: int = 500, top_k: int = 1000,
                  min_count: int = 5, seed: int = 0, categories_yaml: str = "", review_labels: bool = False):
    """Build the hashtag vocabulary, splits, PDQ dedup, webdataset shards and the sealed manifest from the posts.

    Args:
        posts: The ingest step's report (orders this step after ingest).
        dataset: The build report (JSON); metadata: dataset ("NAME/VERSION"), uri, splits, vocabulary_size.
        summary: Splits, vocabulary and holdout positives as Markdown.
        name: Dataset name (prefix in the datasets bucket).
        sources: Only posts of these sources ([]: every source in the posts bucket).
        shard_samples: Samples per shard at most.
        top_k: Keep the K most frequent hashtags.
        min_count: Drop hashtags on fewer train posts.
        seed: Split seed.
        categories_yaml: Moderation categories as YAML text ("": the package's categories.yaml).
        review_labels: Fold reviewers' outcomes (the ledger's post history) into the train split.
    """
    import json

    from tagwatch.pipeline import steps

    report = steps.build_dataset(name=name, sources=[str(s) for s in sources], shard_samples=shard_samples,
                                 top_k=top_k, min_count=min_count, seed=seed, categories_yaml=categories_yaml,
                                 review_labels=review_labels)
    with open(dataset.path, "w") as handle:
        json.dump(report, handle, indent=1, default=str)
    dataset.metadata.update({"dataset": report["dataset"], "uri": report["manifest_uri"], "splits": report["splits"],
                             "vocabulary_size": report["vocabulary_size"]})
    with open(summary.path, "w") as handle:
        handle.write(f"# dataset {report['dataset']}\n\n`{report['manifest_uri']}`\n\n| split | samples |\n|---|---|\n"
                     + "".join(f"| {k} | {v} |\n" for k, v in report["splits"].items())
                     + f"\nvocabulary: {report['vocabulary_size']} hashtags; holdout positives: "
                     f"{report['holdout_categories']}\n")
