from kfp import dsl

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def write_shards(item: str, reduced: str) -> str:
    """Shard writer of the dataset build: fetch, tar and upload the shards the reduce gave this writer.

    Args:
        item: One item of the plan step's list: "<plan_uri>#<writer index>" (writer i of n writes shards i, i+n, ...).
        reduced: The reduce step's exchange file (orders this step after the reduce).

    Returns:
        The exchange file it wrote (the ShardInfo of each shard).
    """
    from tagwatch.pipeline import steps

    return steps.write_shards(item=item)
