from kfp import dsl

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def reduce_dataset(tasks: list, hashed: list) -> str:
    """Reduce of the dataset build: merge the ranges, PDQ dedup (exact index), vocabulary, labels, shard plan.

    Args:
        tasks: The plan step's list ("<plan_uri>#<range index>" per range).
        hashed: The map tasks' exchange files (collected: orders this step after every map task).

    Returns:
        The exchange file it wrote (reduce.json).
    """
    from tagwatch.pipeline import steps

    return steps.reduce_dataset(tasks=[str(t) for t in tasks])
