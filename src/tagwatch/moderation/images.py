"""Fetch a post's image from S3 and refuse anything unsafe before it reaches the model.

Order matters: size from the response headers before reading the body; sha256 before decoding; format and
pixel count from the image header before decoding pixels (the decompression-bomb guard).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field

from PIL import Image

from tagwatch.data.posts import split_s3_uri
from tagwatch.errors import PoisonInputError, RetryableError
from tagwatch.moderation.deadletter import DeadLetterReason as R
from tagwatch.moderation.failures import classify_s3_error, validate_s3_key


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 8
    formats: frozenset[str] = field(default_factory=lambda: frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP"}))
    # pixels per byte above which an oversized image counts as a deliberate bomb, not just a big photo
    bomb_ratio: float = 200.0


def fetch_image_bytes(s3, uri: str, *, allowed_bucket: str, limits: ImageLimits) -> bytes:
    """GET the object; PoisonInputError for what can never succeed, RetryableError for S3 trouble
    (moderation/failures.py decides which)."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3_uri(uri)
    if bucket != allowed_bucket:
        raise PoisonInputError(R.BUCKET_NOT_ALLOWED, f"image_uri bucket {bucket!r} is not the posts bucket {allowed_bucket!r}")
    validate_s3_key(key)  # before any request
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError) as error:
        raise classify_s3_error(error, f"S3 GET {uri}", bucket_readable=lambda: _bucket_readable(s3, bucket)) from error
    length = int(response.get("ContentLength") or 0)
    body = response["Body"]
    try:
        if length > limits.max_bytes:
            raise PoisonInputError(R.IMAGE_TOO_LARGE, f"{length} bytes > limit {limits.max_bytes}")
        data = body.read(limits.max_bytes + 1)
    except (BotoCoreError, OSError) as error:
        raise RetryableError(f"S3 read of {uri} failed: {type(error).__name__}") from error
    finally:
        body.close()
    if len(data) > limits.max_bytes:
        raise PoisonInputError(R.IMAGE_TOO_LARGE, f"more than {limits.max_bytes} bytes")
    if not data:
        raise PoisonInputError(R.IMAGE_EMPTY, f"{uri} is empty")
    return data


def _bucket_readable(s3, bucket: str) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3.head_bucket(Bucket=bucket)
        return True
    except (BotoCoreError, ClientError):
        return False


def check_sha256(data: bytes, expected: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise PoisonInputError(R.SHA256_MISMATCH, f"image sha256 {actual[:12]}… != event's {expected[:12]}…")


def decode_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """Decode with the guards on; returns a loaded RGB-convertible image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Our own pixel limit (below) is checked from the header before any pixel is decoded and names the
            # reason; Pillow's coarser global one (~89 MP) would pre-empt it with its own.
            Image.MAX_IMAGE_PIXELS = None
            image = Image.open(io.BytesIO(data))
            fmt = image.format or "?"
            if fmt not in limits.formats:
                raise PoisonInputError(R.UNSUPPORTED_IMAGE_FORMAT, f"format {fmt} is not one of {sorted(limits.formats)}")
            width, height = image.size
            pixels = width * height
            if pixels > limits.max_pixels:
                reason = R.DECOMPRESSION_BOMB if pixels / max(1, len(data)) > limits.bomb_ratio else R.IMAGE_TOO_MANY_PIXELS
                raise PoisonInputError(reason, f"{width}x{height} = {pixels} pixels > limit {limits.max_pixels} ({len(data)} bytes)")
            if min(width, height) < limits.min_side:
                raise PoisonInputError(R.IMAGE_TOO_SMALL, f"{width}x{height} is below {limits.min_side} px")
            image.load()
    except PoisonInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise PoisonInputError(R.DECOMPRESSION_BOMB, str(error)[:300]) from error
    except Image.UnidentifiedImageError as error:
        raise PoisonInputError(R.UNDECODABLE_IMAGE, "not an image Pillow can identify") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise PoisonInputError(R.UNDECODABLE_IMAGE, f"{type(error).__name__}: {str(error)[:200]}") from error
    return image
