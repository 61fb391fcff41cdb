"""What the consumer asks of a model: category scores for a batch of preprocessed images.

``TritonScorer`` (serving/client.py over gRPC) is the production path; ``OnnxScorer`` runs the same
model.onnx in-process (the benchmark's "raw model" baseline, and a fallback where no Triton runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from tagwatch.moderation.events import ModelRef

INPUT_NAME = "images"
SCORES_OUTPUT = "category_scores"


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
        (scores,) = self.session.run([SCORES_OUTPUT], {INPUT_NAME: images.astype(np.float32, copy=False)})
        return scores
