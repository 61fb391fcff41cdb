from kfp import dsl

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def reduce_dataset(plan_uri: str, hashed: list) -> str:
    """Reduce of the dataset build: merge the ranges, PDQ dedup (exact index), vocabulary, labels, shard plan.

    Args:
        plan_uri: The plan step's plan (s3://.../_build/N/plan.json).
        hashed: The map tasks' exchange files (collected: orders this step after every map task).

    Returns:
        The exchange file it wrote (reduce.json).
    """
    from tagwatch.pipeline import steps

    return steps.reduce_dataset(plan_uri=plan_uri)
