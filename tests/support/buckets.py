"""Private posts and datasets buckets on the session stack, so a data test never sees another test's posts."""

from __future__ import annotations

import secrets

from tagwatch.clients import s3_client
from tagwatch.settings import Settings


def private_data_buckets(settings: Settings) -> tuple[str, str, dict[str, str]]:
    """(posts bucket, datasets bucket, the CLI environment that points at them), buckets created."""
    from tests.conftest import stack_env

    client = s3_client(settings.s3)
    suffix = secrets.token_hex(3)
    posts, datasets = f"test-posts-{suffix}", f"test-datasets-{suffix}"
    for bucket in (posts, datasets):
        client.create_bucket(Bucket=bucket)
    env = {**stack_env(settings), "TAGWATCH_S3__BUCKETS__POSTS": posts, "TAGWATCH_S3__BUCKETS__DATASETS": datasets}
    return posts, datasets, env
