"""What the consumer asks of a model: category scores for a batch of preprocessed images.

``TritonScorer`` (serving/client.py over gRPC) is the production path; ``OnnxScorer`` runs the same
model.onnx in-process (the benchmark's "raw model" baseline, and a fallback where no Triton runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from tagwatch.moderation.events import ModelRef
from tagwatch.tensor_contract import CATEGORY_SCORES, INPUT_NAME


class Scorer(Protocol):
    categories: list[str]
    model: ModelRef

    def score(self, images: np.ndarray) -> np.ndarray:
        """[N, 3, H, W] float32 -> [N, len(categories)] scores in [0, 1]. RetryableError when unavailable."""
        ...


class OnnxScorer:
    def __init__(self, model_path: Path, categories: list[str], model: ModelRef, *, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.categories = categories
        self.model = model

    def score(self, images: np.ndarray) -> np.ndarray:
        (scores,) = self.session.run([CATEGORY_SCORES], {INPUT_NAME: images.astype(np.float32, copy=False)})
        return scores


class TritonScorer:
    """Category scores from Triton (the stack's local server or KServe's), labelled by the registry.

    The model reference, category order and policy come from the registry version an alias names (its small
    files only, registry/serving_view.py: the model file itself is Triton's business). Triton
    reports which version scored each row; if it differs (an alias moved and the server hot-swapped), the
    scorer re-reads the registry and raises RetryableError, so the batch is scored again under the right
    name and policy instead of being mislabelled.
    Its ``policy`` is the version's own; a promoted policy version for the same model bytes takes precedence
    (moderation/policy_source.py, read through ``registry`` and ``alias``).
    """

    def __init__(self, settings, *, alias: str = "production", protocol: str = "grpc", client=None) -> None:
        """``client``: a ``ModelClient`` of another Triton model than ``settings.triton``'s (the shadow scorer's)."""
        from tagwatch.registry.registry import open_registry
        from tagwatch.serving.client import client_from_settings

        self.alias = alias
        self.registry = open_registry(settings)
        self.client = client or client_from_settings(settings.triton, protocol=protocol)
        self.refresh()

    def refresh(self) -> None:
        from tagwatch.moderation.policy import Policy
        from tagwatch.preprocess import Preset
        from tagwatch.errors import ConfigError

        from tagwatch.registry.serving_view import read_serving_view

        view = read_serving_view(self.registry, self.alias)  # metadata, categories, policy: never the model file
        meta = view.metadata
        self.version = meta.version
        self.categories = view.categories
        self.model = ModelRef(name=meta.model_name, version=str(meta.version),
                              sha256=meta.files[meta.onnx_file()].sha256)
        if view.policy is None:
            raise ConfigError(f"{meta.model_name} version {meta.version} has no policy.json",
                              hint="register the model with the policy its transfer step calibrated (--policy)")
        self.policy = Policy.model_validate(view.policy)
        self.preset = Preset.from_dict(meta.preset) if meta.preset else None  # what the model was trained with

    def score(self, images: np.ndarray) -> np.ndarray:
        from tagwatch.errors import RetryableError, ServingError

        try:
            out = self.client.infer(images)
        except ServingError as error:
            # Refused, unavailable, or "no available versions" while a restarted Triton loads its model: the
            # stream never skips a post for the model server's sake, it backs off and asks again (a wrong
            # model name shows as an unhealthy /healthz and a retry log, not as lost posts).
            raise RetryableError(error.message) from error
        versions = set(int(v) for v in out["model_version"])
        if versions != {self.version}:
            old = self.version
            self.refresh()
            raise RetryableError(f"Triton served version(s) {sorted(versions)} while labelling as {old}; "
                                 f"registry re-read (now {self.version})")
        return out[CATEGORY_SCORES]

    def check_ready(self) -> None:
        """Raise unless Triton answers and has the model loaded (the consumer's readiness probe)."""
        from tagwatch.errors import ServingError

        if not self.client.is_ready():
            raise ServingError(f"Triton at {self.client.url} has no ready model {self.client.model_name!r}")

    def close(self) -> None:
        self.client.close()
