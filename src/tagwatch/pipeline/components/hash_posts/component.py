from kfp import dsl

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def hash_posts(item: str) -> str:
    """Map task of the dataset build: fetch, check and PDQ-hash one range's images (streamed, bounded memory).

    Args:
        item: One item of the plan step's list: "<plan_uri>#<range index>".

    Returns:
        The exchange file it wrote (the range's hashes and hashtag counts).
    """
    from tagwatch.pipeline import steps

    return steps.hash_posts(item=item)
