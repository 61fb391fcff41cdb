"""webdataset shards: plain uncompressed tar, written byte-for-byte reproducibly, read by streaming from S3.

Members of one sample: ``<post_id>.jpg`` (RGB JPEG) and ``<post_id>.json`` (ShardSample). Tar headers carry a
fixed mtime, owner and mode, so the same samples always give the same shard bytes and the same sha256 (the
manifest's content hash therefore only changes when the data does).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import tarfile
from typing import Any, Iterable

from tagwatch.data.manifest import DatasetManifest, ShardInfo, ShardSample
from tagwatch.errors import ManifestError

MTIME = 1_700_000_000  # fixed: reproducible shards


def shard_sizes(total: int, *, max_samples: int, min_shards: int = 1) -> list[int]:
    """Split ``total`` samples into near-equal shards of at most ``max_samples`` (at least ``min_shards`` when
    there are enough samples), so 2 ranks x 2 workers always have a shard each."""
    if total <= 0:
        return []
    count = max(math.ceil(total / max_samples), min(min_shards, total))
    base, extra = divmod(total, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def write_tar(samples: Iterable[tuple[ShardSample, bytes]]) -> bytes:
    """One shard's bytes. ``samples`` are (ShardSample, jpeg bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample, jpeg in samples:
            meta = json.dumps(sample.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()
            for suffix, data in (("jpg", jpeg), ("json", meta)):
                info = tarfile.TarInfo(f"{sample.post_id}.{suffix}")
                info.size, info.mtime, info.mode = len(data), MTIME, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = "tagwatch"
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def upload_shard(*, client: Any, bucket: str, prefix: str, path: str, data: bytes, samples: int) -> ShardInfo:
    client.put_object(Bucket=bucket, Key=f"{prefix}/{path}", Body=data, ContentType="application/x-tar")
    return ShardInfo(path=path, samples=samples, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def dataset_prefix(name: str, version: str) -> str:
    return f"{name}/{version}"


def read_manifest(*, client: Any, bucket: str, name: str, version: str | None = None) -> DatasetManifest:
    """The verified manifest of ``name/version`` (``version`` None: the one ``<name>/latest.json`` names)."""
    if version is None:
        version = read_latest_version(client=client, bucket=bucket, name=name)
    key = f"{dataset_prefix(name, version)}/manifest.json"
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey as error:
        raise ManifestError(
            f"no dataset manifest at s3://{bucket}/{key}", hint="build it with `tagwatch data build`"
        ) from error
    try:
        manifest = DatasetManifest.model_validate_json(body)
    except ValueError as error:
        raise ManifestError(
            f"s3://{bucket}/{key} is not a valid dataset manifest: {' '.join(str(error).split())[:200]}",
            hint="rebuild it with `tagwatch data build`",
        ) from error
    manifest.verify()
    return manifest


def read_latest_version(*, client: Any, bucket: str, name: str) -> str:
    try:
        body = client.get_object(Bucket=bucket, Key=f"{name}/latest.json")["Body"].read()
    except client.exceptions.NoSuchKey as error:
        raise ManifestError(
            f"dataset {name!r} has no build in s3://{bucket}/", hint="build it with `tagwatch data build`"
        ) from error
    return json.loads(body)["version"]


def shard_urls(
    *, client: Any, bucket: str, manifest: DatasetManifest, split: str, expires_s: int = 24 * 3600
) -> list[str]:
    """Presigned https/http URLs of a split's shards: ``webdataset.WebDataset(urls)`` streams them (via curl)."""
    prefix = dataset_prefix(manifest.name, manifest.version)
    return [
        client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": f"{prefix}/{shard.path}"}, ExpiresIn=expires_s
        )
        for shard in manifest.splits[split].shards
    ]
