"""Hostile post records, one per way a record can be poison, each with the dead-letter reason it must get.

Shared by the poison tests and the chaos benchmark (which mixes them into a real stream).
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from datetime import datetime, timezone

import numpy as np
from PIL import Image

from tagwatch.moderation.events import EventType, encode
from tagwatch.moderation.publish import new_post


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG (tens of KB) that claims 400 M pixels: the classic decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def image_bytes(fmt: str, size: tuple[int, int], *, noise: bool = False) -> bytes:
    pixels = (np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3)) if noise
              else np.full((size[1], size[0], 3), 128)).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def cases(s3, bucket: str, tag: str, upload) -> list[tuple[str, bytes | None, bytes | None, list, str]]:
    """(name, key, value, headers, expected reason). ``upload(data) -> (uri, sha256)`` stores an image."""
    def post_event(post_id: str, uri: str, sha: str, **change):
        post = new_post(post_id, uri, sha)
        data = post.model_dump(mode="json") | change
        value, headers = encode(post, EventType.POST_CREATED)
        import json

        return json.dumps(data).encode(), headers

    good_uri, good_sha = upload(image_bytes("JPEG", (64, 64)))
    ok_value, ok_headers = post_event(f"x-{tag}", good_uri, good_sha)
    out: list = []

    def add(name, value, headers, reason, key=None, post_id=None):
        out.append((name, key if key is not None else (post_id or f"x-{tag}").encode(), value, headers, reason))

    def with_post(name, data_bytes, reason, *, sha=None, uri=None):
        pid = f"{name}-{tag}"
        u, s = upload(data_bytes) if uri is None else (uri, sha)
        value, headers = post_event(pid, u, sha or s)
        add(name, value, headers, reason, post_id=pid)

    def header_set(**changes):
        h = dict(ok_headers)
        for k, v in changes.items():
            if v is None:
                h.pop(k, None)
            else:
                h[k] = v
        return list(h.items())

    add("no-headers", ok_value, [], "not_a_cloudevent")
    add("binary-header", ok_value, header_set(ce_id=b"\xff\xfe"), "not_a_cloudevent")
    add("old-specversion", ok_value, header_set(ce_specversion=b"0.3"), "unsupported_specversion")
    add("foreign-type", ok_value, header_set(ce_type=b"com.example.thing.v1"), "unknown_event_type")
    add("future-type", ok_value, header_set(ce_type=b"io.tagwatch.post.created.v9"), "unknown_schema_version")
    add("not-json", b"{post_id: nope", ok_headers, "bad_json")
    add("json-array", b"[1, 2, 3]", ok_headers, "bad_json")
    add("not-utf8", b"\xff\xfe\xfd", ok_headers, "bad_json")
    add("tombstone", None, ok_headers, "bad_json")
    import json

    base = json.loads(ok_value)
    add("schema-v2", json.dumps(base | {"schema_version": 2}).encode(), ok_headers, "unknown_schema_version")
    add("missing-fields", json.dumps({"post_id": f"x-{tag}"}).encode(), ok_headers, "invalid_post")
    add("bad-sha-format", json.dumps(base | {"sha256": "abc"}).encode(), ok_headers, "invalid_post")
    add("bad-post-id", json.dumps(base | {"post_id": "../../etc/passwd"}).encode(), ok_headers, "invalid_post",
        key=b"../../etc/passwd")
    add("key-mismatch", ok_value, ok_headers, "key_mismatch", key=b"someone-else")
    # an invalid post of ~900 kB: its dead letter (original as base64, 1.2 MB) would exceed the producer's 1 MB
    add("huge-caption", json.dumps(base | {"caption": "x" * 900_000}).encode(), ok_headers, "invalid_post")
    with_post("dot-dot-key", b"", "bad_image_uri", uri=f"s3://{bucket}/images/../{tag}.jpg", sha=good_sha)
    with_post("empty-segment", b"", "bad_image_uri", uri=f"s3://{bucket}/images//{tag}.jpg", sha=good_sha)
    with_post("other-bucket", b"", "bucket_not_allowed", uri="s3://models/secret.onnx", sha=good_sha)
    with_post("missing-object", b"", "image_missing", uri=f"s3://{bucket}/images/none/{tag}.jpg", sha=good_sha)
    with_post("empty-object", b"", "image_empty")
    with_post("sha-mismatch", image_bytes("JPEG", (64, 64), noise=True), "sha256_mismatch", sha=hashlib.sha256(b"other").hexdigest())
    with_post("text-file", b"hello, this is not an image at all\n" * 10, "undecodable_image")
    with_post("truncated-jpeg", image_bytes("JPEG", (256, 256), noise=True)[:700], "undecodable_image")
    with_post("tiff", image_bytes("TIFF", (64, 64)), "unsupported_image_format")
    with_post("bomb", png_bomb(), "decompression_bomb")
    with_post("tiny", image_bytes("PNG", (4, 4)), "image_too_small")
    with_post("too-big", image_bytes("PNG", (400, 400), noise=True), "image_too_large")
    with_post("too-many-pixels", image_bytes("JPEG", (1500, 1500)), "image_too_many_pixels")
    return out

