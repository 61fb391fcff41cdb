from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def build_dataset(plan_uri: str, written: list, dataset: Output[Dataset], summary: Output[Markdown]):
    """Seal the map/reduce dataset build: vocabulary, dedup report, post index, the sealed manifest, latest.json.

    Args:
        plan_uri: The plan step's plan (s3://.../_build/N/plan.json).
        written: The shard writers' exchange files (collected: orders this step after every writer).
        dataset: The build report (JSON); metadata: dataset ("NAME/VERSION"), uri, splits, vocabulary_size.
        summary: Splits, vocabulary and holdout positives as Markdown.
    """
    import json

    from tagwatch.pipeline import steps

    report = steps.build_dataset(plan_uri=plan_uri)
    with open(dataset.path, "w") as handle:
        json.dump(report, handle, indent=1, default=str)
    dataset.metadata.update({"dataset": report["dataset"], "uri": report["manifest_uri"], "splits": report["splits"],
                             "vocabulary_size": report["vocabulary_size"]})
    with open(summary.path, "w") as handle:
        handle.write(f"# dataset {report['dataset']}\n\n`{report['manifest_uri']}`\n\n| split | samples |\n|---|---|\n"
                     + "".join(f"| {k} | {v} |\n" for k, v in report["splits"].items())
                     + f"\nvocabulary: {report['vocabulary_size']} hashtags; holdout positives: "
                     f"{report['holdout_categories']}\n")
