"""A trainer checkpoint of a tiny_cnn on a synthetic dataset, saved in S3 the way the trainer's loop saves one:
what `tagwatch model export --checkpoint` turns into a model whose training data the platform can open again."""

from __future__ import annotations

DATASET = "synthetic:64"


def save_tiny_cnn_checkpoint(settings, run_id: str, dataset: str = DATASET) -> str:
    """What the trainer's loop saves, minus optimizer/RNG state (export reads model, model_config, lineage);
    returns the checkpoint root URI."""
    from tagwatch.preprocess import DEFAULT_PRESET
    from tagwatch.settings import load_settings
    from tagwatch.train.checkpoint import CheckpointStore
    from tagwatch.train.models import create_model_from_config, model_config
    from tagwatch.train.runtime import open_dataset

    handle = open_dataset(dataset, settings=load_settings(), synthetic_labels=16, seed=0)
    config = model_config(arch="tiny_cnn", num_labels=handle.manifest.num_labels,
                          num_categories=len(handle.manifest.category_names), preset=DEFAULT_PRESET.to_dict(),
                          width=8, depth=2)
    checkpoint = {
        "format": 1, "model": create_model_from_config(config).state_dict(), "model_config": config, "step": 10,
        "epoch": 1.0, "config": {"dataset": dataset, "seed": 0, "synthetic_labels": 16},
        "manifest_hash": handle.manifest.content_hash, "vocabulary_version": handle.vocabulary.version,
        "run_id": run_id, "metrics": {"final_loss": 0.5},
    }
    root = f"s3://{settings.s3.buckets.checkpoints}/{run_id}"
    CheckpointStore(root, s3=settings.s3).save(checkpoint)
    return root
