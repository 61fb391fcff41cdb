"""`tagwatch policy calibrate`: new operating points for a registered model version under new constraints.

The version's model.onnx (fetched and sha256-verified) scores the ``val`` split of the dataset it was trained on,
the way the pipeline's evaluation scores a split (``pipeline/evaluation.predict_onnx``, same preset); the
transfer step's calibrator turns the scores into a policy (``train/policy_step.policy_from_scores``), which is
registered as a policy version with source ``calibrate``. The dataset is the one the version's own policy was
calibrated on (or ``--dataset``), and must be the one the model was trained on (same manifest hash).

A head fitted on train + val (the lbfgs probe's cross-fitted policies) has seen the val posts: its val scores are
in-sample and the policy says so in ``calibration.split``.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from tagwatch.errors import ConfigError
from tagwatch.registry.metadata import PolicyVersionMetadata
from tagwatch.registry.policies import PolicyStore

log = logging.getLogger(__name__)

SPLIT = "val"


def dataset_spec_of(policy: dict[str, Any] | None, *, datasets_bucket: str) -> str | None:
    """The ``open_dataset`` spec of the dataset a policy was calibrated on (its ``calibration.dataset`` URI)."""
    uri = str(((policy or {}).get("calibration") or {}).get("dataset") or "")
    if uri.startswith("memory://synthetic:"):
        return uri.removeprefix("memory://")
    prefix = f"s3://{datasets_bucket}/"
    if uri.startswith(prefix) and uri.count("/") == 4:
        return uri.removeprefix(prefix)
    return None


def constraints_for(base: dict[str, Any] | None, overrides: dict[str, Any]):
    """The calibrator's Constraints: its defaults, then ``base`` (the model version's own policy's), then the
    ``overrides`` given (None values ignored)."""
    from tagwatch.train.operating_points import Constraints

    names = {f.name for f in fields(Constraints)}
    known = {k: v for k, v in (base or {}).items() if k in names}
    return replace(Constraints(**known), **{k: v for k, v in overrides.items() if v is not None})


def calibrate_policy(settings, store: PolicyStore, *, model_version: int, overrides: dict[str, Any],
                     dataset: str | None = None, alias: str | None = None, reason: str = "",
                     workdir: Path | None = None) -> PolicyVersionMetadata:
    """Score the calibration split with ``model_version``'s ONNX, calibrate, register (and promote to ``alias``)."""
    import numpy as np

    from tagwatch.pipeline.comparison import line_up
    from tagwatch.pipeline.evaluation import OnnxCandidate, predict_onnx
    from tagwatch.preprocess import Preset
    from tagwatch.train.policy_step import policy_from_scores
    from tagwatch.train.report import clean_json
    from tagwatch.train.runtime import open_dataset

    with tempfile.TemporaryDirectory(prefix="tagwatch-calibrate-", dir=workdir) as tmp:
        local = store.models.fetch(model_version, dest=Path(tmp))
        meta = local.metadata
        spec = dataset or dataset_spec_of(local.policy, datasets_bucket=settings.s3.buckets.datasets)
        if spec is None:
            raise ConfigError(
                f"{meta.model_name} version {model_version} names no calibration dataset (its policy.json records "
                "none in calibration.dataset)",
                hint="pass --dataset NAME/VERSION: the dataset it was trained on, whose val split is scored")
        handle = open_dataset(spec, settings=settings)
        trained_on = meta.lineage.get("manifest_hash")
        if trained_on and handle.manifest.content_hash != trained_on:
            raise ConfigError(
                f"dataset {spec} is not the one {meta.model_name} version {model_version} was trained on "
                f"(manifest hash {handle.manifest.content_hash[:12]}… != lineage {str(trained_on)[:12]}…)",
                hint="pass --dataset with the training run's dataset (the version's lineage names its manifest hash)")
        if handle.split_samples(SPLIT) == 0:
            raise ConfigError(f"dataset {spec} has no {SPLIT} posts to calibrate on",
                              hint="calibrate a model trained on a dataset with a val split")
        candidate = OnnxCandidate(local.onnx_path, Preset.from_dict(meta.preset), local.categories())
        predictions = predict_onnx(candidate, handle, split=SPLIT, threads=settings.triton.ort_threads or 1)
    scored = line_up(predictions, model_categories=candidate.categories, categories=handle.manifest.category_names)
    base = local.policy or {}
    in_sample = "out-of-fold" in str((base.get("calibration") or {}).get("split", ""))
    source = f"{SPLIT}, scored by registry version {model_version}'s model.onnx"
    if in_sample:
        source += " (in-sample: its head was fitted on train+val)"
        log.warning("%s version %d's head was fitted on train+val: its %s scores are in-sample", meta.model_name,
                    model_version, SPLIT)
    constraints = constraints_for(base.get("constraints"), overrides)
    document = policy_from_scores(
        scores=scored.scores, targets=scored.targets.astype(np.float32), splits=[SPLIT] * len(scored.scores),
        source=source, constraints=constraints, dataset=handle, categories=scored.names,
        model_ref={**(base.get("model") or {}), "run_id": str(meta.lineage.get("run_id") or "unknown"),
                   "manifest_hash": handle.manifest.content_hash, "registry_version": str(model_version)},
        version=f"calibrated-v{model_version}")
    return store.register(clean_json(document), model_version=model_version, source="calibrate",
                          reason=reason or f"calibrate {constraints}", alias=alias)
