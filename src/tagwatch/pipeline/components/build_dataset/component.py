from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def build_dataset(tasks: list, written: list, dataset: Output[Dataset], summary: Output[Markdown]):
    """Seal the map/reduce dataset build: vocabulary, dedup report, post index, the sealed manifest, latest.json.

    Args:
        tasks: The plan step's list ("<plan_uri>#<range index>" per range).
        written: The shard writers' exchange files (collected: orders this step after every writer).
        dataset: The build report (JSON); metadata: dataset ("NAME/VERSION"), uri, splits, vocabulary_size.
        summary: Splits, vocabulary and holdout positives as Markdown.
    """
    import json

    from tagwatch.pipeline import steps

    report = steps.build_dataset(tasks=[str(t) for t in tasks])
    with open(dataset.path, "w") as handle:
        json.dump(report, handle, indent=1, default=str)
    dataset.metadata.update({"dataset": report["dataset"], "uri": report["manifest_uri"], "splits": report["splits"],
                             "vocabulary_size": report["vocabulary_size"]})
    with open(summary.path, "w") as handle:
        handle.write(f"# dataset {report['dataset']}\n\n`{report['manifest_uri']}`\n\n| split | samples |\n|---|---|\n"
                     + "".join(f"| {k} | {v} |\n" for k, v in report["splits"].items())
                     + f"\nvocabulary: {report['vocabulary_size']} hashtags; holdout positives: "
                     f"{report['holdout_categories']}\n")
