from kfp import dsl
from kfp.dsl import Dataset, Input

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def plan_dataset(posts: Input[Dataset], name: str = "hashtags", sources: list = [], shard_samples: int = 500,
                 top_k: int = 1000, min_count: int = 5, seed: int = 0, categories_yaml: str = "",
                 review_labels: bool = False, map_tasks: int = 2) -> list:
    """Plan the map/reduce dataset build: read the posts once, derive the version, cut the posts into ranges.

    Args:
        posts: The ingest step's report (orders this step after ingest).
        name: Dataset name (prefix in the datasets bucket).
        sources: Only posts of these sources ([]: every source in the posts bucket).
        shard_samples: Samples per shard at most.
        top_k: Keep the K most frequent hashtags.
        min_count: Drop hashtags on fewer train posts.
        seed: Split seed.
        categories_yaml: Moderation categories as YAML text ("": the package's categories.yaml).
        review_labels: Fold reviewers' outcomes (the ledger's post history) into the train split.
        map_tasks: Ranges of posts, one map task (pod) each; the dataset is the same for any number.

    Returns:
        One item per range, "<plan_uri>#<index>" (the plan is s3://<datasets>/<name>/<version>/_build/N/plan.json).
    """
    from tagwatch.pipeline import steps

    plan = steps.plan_dataset(name=name, sources=[str(s) for s in sources], shard_samples=shard_samples,
                              top_k=top_k, min_count=min_count, seed=seed, categories_yaml=categories_yaml,
                              review_labels=review_labels, map_tasks=map_tasks)
    return plan["tasks"]
