from kfp import dsl

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def hash_posts(plan_uri: str, index: int) -> str:
    """Map task of the dataset build: fetch, check and PDQ-hash one range's images (streamed, bounded memory).

    Args:
        plan_uri: The plan step's plan (s3://.../_build/N/plan.json).
        index: Which range.

    Returns:
        The exchange file it wrote (the range's hashes and hashtag counts).
    """
    from tagwatch.pipeline import steps

    return steps.hash_posts(plan_uri=plan_uri, index=index)
