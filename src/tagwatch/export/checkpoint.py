"""Read a trainer checkpoint (local path or s3://) and rebuild its serving model through the trainer's seam.

The seam is ``tagwatch.train.models.build_serving_model(checkpoint_dict) -> nn.Module``; the checkpoint dict has
``model``, ``model_config`` {arch, num_labels, num_categories, preset, ...}, ``run_id``, ``manifest_hash``,
``vocabulary_version``. It is imported lazily so export works (and is tested) without the trainer installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tagwatch.errors import ExportError
from tagwatch.preprocess import DEFAULT_PRESET, Preset


def read_checkpoint(uri: str, *, s3=None) -> dict[str, Any]:
    """``uri``: ``s3://<checkpoints>/<run>`` (its latest, sha256-verified), ``.../step-N.pt``, or a local file.

    Read with the trainer's own loader (``tagwatch.train.checkpoint.load_checkpoint_uri``): its files carry numpy
    RNG states, so they need ``weights_only=False`` and must come from our own bucket. Without the trainer there
    is nothing to rebuild the model with, so that is reported first.
    """
    try:
        from tagwatch.train.checkpoint import load_checkpoint_uri
    except ImportError as error:
        raise _trainer_missing() from error
    try:
        checkpoint = load_checkpoint_uri(uri, s3=s3)
    except FileNotFoundError as error:
        raise ExportError(f"checkpoint {uri} does not exist", hint="pass a checkpoint file or s3:// URI") from error
    missing = [k for k in ("model", "model_config") if k not in checkpoint]
    if missing:
        raise ExportError(f"checkpoint {uri} lacks {', '.join(missing)}", hint="pass a checkpoint of `tagwatch train`")
    return checkpoint


def _trainer_missing() -> ExportError:
    return ExportError(
        "the trainer (tagwatch.train.models.build_serving_model) is not installed in this environment",
        hint="install tagwatch with the train extra on a build that includes the trainer",
    )


def build_model_from_checkpoint(checkpoint: dict[str, Any]):
    try:
        from tagwatch.train.models import build_serving_model
    except ImportError as error:
        raise _trainer_missing() from error
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
        "review_labels": checkpoint.get("review_labels"),  # labels from reviewers in its dataset (None: older runs)
        "arch": config.get("arch"),
        "epoch": checkpoint.get("epoch"),
        "recipe": (checkpoint.get("config") or {}).get("recipe"),  # how it was trained (train/recipe.py)
    }


def dataset_names(checkpoint: dict[str, Any], *, settings) -> tuple[list[str] | None, list[str] | None]:
    """(hashtag names, category names) from the dataset the checkpoint was trained on, if it names one.

    The trainer records its ``--dataset`` spec in ``checkpoint["config"]``; the vocabulary and the category list
    come from that dataset's verified manifest (the export must label columns exactly as training saw them).
    """
    spec = (checkpoint.get("config") or {}).get("dataset")
    if not spec:
        return None, None
    from tagwatch.train.runtime import open_dataset

    dataset = open_dataset(spec, settings=settings,
                           synthetic_labels=int((checkpoint.get("config") or {}).get("synthetic_labels")
                                                or checkpoint["model_config"]["num_labels"]),
                           seed=int((checkpoint.get("config") or {}).get("seed", 0)))
    if dataset.manifest.content_hash != checkpoint.get("manifest_hash", dataset.manifest.content_hash):
        raise ExportError(f"dataset {spec} is not the one this checkpoint was trained on (manifest hash differs)",
                          hint="pass --labels/--categories files of the training run's vocabulary")
    return list(dataset.vocabulary.names), list(dataset.manifest.category_names)


def names_of(checkpoint: dict[str, Any], key: str, *, override: Path | None, expected: int,
             fallback: list[str] | None = None) -> list[str]:
    """Column names of one head: ``override`` file (one per line), else the checkpoint's list, else ``fallback``."""
    if override is not None:
        names = [line.strip() for line in override.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        names = checkpoint.get(key) or checkpoint["model_config"].get(key) or fallback
        if not names:
            raise ExportError(f"no {key} names: the checkpoint names no dataset and carries no {key!r} list",
                              hint=f"pass --{key} FILE with one name per line ({expected} lines)")
        names = list(names)
    if len(names) != expected:
        raise ExportError(f"{len(names)} {key} names for a head with {expected} outputs",
                          hint=f"pass the {key} the model was trained with")
    return names
