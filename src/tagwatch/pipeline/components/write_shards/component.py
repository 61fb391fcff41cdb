from kfp import dsl

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def write_shards(plan_uri: str, reduced: str, index: int) -> str:
    """Shard writer of the dataset build: fetch, tar and upload the shards the reduce gave writer ``index``.

    Args:
        plan_uri: The plan step's plan (s3://.../_build/N/plan.json).
        reduced: The reduce step's exchange file (orders this step after the reduce).
        index: Which writer (writer i of n writes shards i, i+n, ...).

    Returns:
        The exchange file it wrote (the ShardInfo of each shard).
    """
    from tagwatch.pipeline import steps

    return steps.write_shards(plan_uri=plan_uri, index=index)
