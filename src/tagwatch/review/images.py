"""Post images shown to reviewers, served through the app from S3 (never a public bucket URL).

Only the posts bucket, and only keys under ``images/`` (where tagwatch writes every post image:
``images/<source>/<sha256>.jpg``, data/posts.py and moderation/publish.py) made of plain path segments: no ``..``
or ``.`` segment, no empty segment, no backslash, no ``%`` (the path arrives decoded once: a ``%`` left means
double encoding), nothing outside ``[A-Za-z0-9._-]``. The bytes must be an image format the app knows (PNG, JPEG,
WebP, GIF), served with that content type and ``nosniff``: an HTML or SVG object put under ``images/`` is never
rendered in the reviewers' origin.
"""

from __future__ import annotations

import re
from urllib.parse import quote

IMAGES_PREFIX = "images/"
MAX_IMAGE_BYTES = 20 * 1024 * 1024
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
          (b"GIF89a", "image/gif"))


class ImageRefused(Exception):
    """A request for something that is not a post image (HTTP 404: the app does not say what exists)."""


def check_image_address(bucket: str, key: str, *, posts_bucket: str) -> None:
    if bucket != posts_bucket:
        raise ImageRefused("not the posts bucket")
    if not key.startswith(IMAGES_PREFIX) or len(key) > 1024:
        raise ImageRefused("not under the images prefix")
    segments = key.split("/")
    if len(segments) < 2 or not all(_SEGMENT.match(segment) for segment in segments):
        raise ImageRefused("not a plain key")  # '..', '.', '', '%', '\\', ':' and the rest end here


def image_path(image_uri: str) -> str | None:
    """The app's URL path for an ``s3://bucket/key`` image, or None when it is not an s3 URI."""
    if not image_uri.startswith("s3://"):
        return None
    bucket, _, key = image_uri.removeprefix("s3://").partition("/")
    return f"/images/{quote(bucket, safe='')}/{quote(key, safe='/')}"


def content_type(data: bytes) -> str:
    """The image type of ``data`` by its magic bytes; ImageRefused if it is not one of the known formats."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise ImageRefused("not an image format the app serves")


def fetch_image(s3, bucket: str, key: str, *, posts_bucket: str) -> tuple[bytes, str]:
    """(bytes, content type) of a post image; ImageRefused for anything else, including a missing object."""
    from botocore.exceptions import ClientError

    check_image_address(bucket, key, posts_bucket=posts_bucket)
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchBucket"):
            raise ImageRefused("no such image") from error
        raise
    if int(response.get("ContentLength") or 0) > MAX_IMAGE_BYTES:
        raise ImageRefused("too large to show")
    data = response["Body"].read(MAX_IMAGE_BYTES + 1)
    return data, content_type(data)
