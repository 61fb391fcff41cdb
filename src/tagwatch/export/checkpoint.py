"""Read a trainer checkpoint (local path or s3://) and rebuild its serving model through the trainer's seam.

The seam is ``tagwatch.train.models.build_serving_model(checkpoint_dict) -> nn.Module``; the checkpoint dict has
``model``, ``model_config`` {arch, num_labels, num_categories, preset, ...}, ``run_id``, ``manifest_hash``,
``vocabulary_version``. It is imported lazily so export works (and is tested) without the trainer installed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from tagwatch.errors import ExportError
from tagwatch.preprocess import DEFAULT_PRESET, Preset


def read_checkpoint(uri: str, *, s3_client_factory=None) -> dict[str, Any]:
    """``uri``: a local file or ``s3://bucket/key``; ``s3_client_factory()`` builds the S3 client when needed."""
    import torch

    if uri.startswith("s3://"):
        if s3_client_factory is None:
            raise ExportError(f"cannot read {uri} without S3 settings")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        client = s3_client_factory()
        try:
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey as error:
            raise ExportError(f"checkpoint {uri} does not exist", hint="list the checkpoints bucket") from error
        source: Any = io.BytesIO(data)
    else:
        if not Path(uri).is_file():
            raise ExportError(f"checkpoint {uri} does not exist", hint="pass a checkpoint file or s3:// URI")
        source = uri
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle/zip errors of many kinds: all mean "not a checkpoint we can read"
        raise ExportError(f"cannot read checkpoint {uri}: {type(error).__name__}",
                          hint="pass a checkpoint written by `tagwatch train`") from error
    missing = [k for k in ("model", "model_config") if k not in checkpoint]
    if missing:
        raise ExportError(f"checkpoint {uri} lacks {', '.join(missing)}", hint="pass a checkpoint of `tagwatch train`")
    return checkpoint


def build_model_from_checkpoint(checkpoint: dict[str, Any]):
    try:
        from tagwatch.train.models import build_serving_model
    except ImportError as error:
        raise ExportError(
            "the trainer (tagwatch.train.models.build_serving_model) is not installed in this environment",
            hint="install tagwatch with the train extra on a build that includes the trainer",
        ) from error
    return build_serving_model(checkpoint).eval()


def preset_of(checkpoint: dict[str, Any]) -> Preset:
    data = checkpoint["model_config"].get("preset")
    return Preset.from_dict(data) if data else DEFAULT_PRESET


def lineage_of(checkpoint: dict[str, Any], *, uri: str) -> dict[str, Any]:
    config = checkpoint["model_config"]
    return {
        "checkpoint": uri,
        "run_id": checkpoint.get("run_id"),
        "manifest_hash": checkpoint.get("manifest_hash"),
        "vocabulary_version": checkpoint.get("vocabulary_version"),
        "arch": config.get("arch"),
        "epoch": checkpoint.get("epoch"),
    }


def names_of(checkpoint: dict[str, Any], key: str, *, override: Path | None, expected: int) -> list[str]:
    """Column names of one head: from ``override`` (one per line), else the checkpoint's ``key`` list."""
    if override is not None:
        names = [line.strip() for line in override.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        names = checkpoint.get(key) or checkpoint["model_config"].get(key)
        if not names:
            raise ExportError(f"the checkpoint carries no {key!r} list",
                              hint=f"pass --{key} FILE with one name per line ({expected} lines)")
        names = list(names)
    if len(names) != expected:
        raise ExportError(f"{len(names)} {key} names for a head with {expected} outputs",
                          hint=f"pass the {key} the model was trained with")
    return names
