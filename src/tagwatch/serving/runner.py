"""The model a local Triton serves: ONNX Runtime on a verified registry version, swappable while serving.

Why a swap inside the bound callable rather than a Triton model reload: PyTriton binds a Python callable, so the
cheapest reload that drops nothing is to build the new ONNX Runtime session beside the old one, warm it, and
replace one reference. A batch that already took the old session finishes on it; the next batch gets the new
one. Triton's model (name, inputs, outputs, batching) stays loaded throughout, so no request sees "not ready".
A new version must keep the same input/output shapes; one that changes them is refused and the old one kept
(that needs a restart: `tagwatch stack down && tagwatch stack up`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagwatch.errors import ServingError
from tagwatch.export.onnx_model import ort_session
from tagwatch.registry import LocalModel
from tagwatch.tensor_contract import INPUT_NAME, OUTPUT_NAMES, VERSION_OUTPUT


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedShape:
    """What Triton was bound with; every swapped-in version must match it."""

    crop: int
    num_labels: int
    num_categories: int
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_us: int

    @classmethod
    def of(cls, model: LocalModel) -> ServedShape:
        layout = model.metadata.layout
        return cls(crop=layout["crop"], num_labels=layout["num_labels"], num_categories=layout["num_categories"],
                   max_batch_size=layout["max_batch_size"],
                   preferred_batch_sizes=tuple(layout["preferred_batch_sizes"]),
                   max_queue_delay_us=layout["max_queue_delay_us"])

    def compatible(self, other: ServedShape) -> bool:
        return (self.crop, self.num_labels, self.num_categories) == (other.crop, other.num_labels, other.num_categories)


class OnnxRunner:
    """One ONNX Runtime session over one verified version."""

    def __init__(self, model: LocalModel, *, threads: int | None) -> None:
        self.model = model
        self.shape = ServedShape.of(model)
        t0 = time.monotonic()
        self.session = ort_session(model.onnx_path, threads=threads)
        self.run(np.zeros((1, 3, self.shape.crop, self.shape.crop), dtype=np.float32))  # warm up before serving
        self.load_s = time.monotonic() - t0

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images.astype(np.float32, copy=False)})
        result = dict(zip(OUTPUT_NAMES, outputs, strict=True))
        result[VERSION_OUTPUT] = np.full((len(images), 1), self.model.metadata.version, dtype=np.int64)
        return result


class SwappableModel:
    """The callable Triton runs; ``swap`` replaces the runner without blocking or failing requests."""

    def __init__(self, runner: OnnxRunner) -> None:
        self._runner = runner
        self._lock = threading.Lock()
        self.swaps = 0
        self.batches = 0

    @property
    def runner(self) -> OnnxRunner:
        return self._runner

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        runner = self._runner  # one read: the whole batch runs on one version
        self.batches += 1
        return runner.run(images)

    def swap(self, runner: OnnxRunner) -> OnnxRunner:
        if not self._runner.shape.compatible(runner.shape):
            raise ServingError(
                f"version {runner.model.metadata.version} has shape {runner.shape} but Triton serves "
                f"{self._runner.shape}; not swapped",
                hint="restart the server to serve a model with other inputs/outputs",
            )
        with self._lock:
            old, self._runner = self._runner, runner
            self.swaps += 1
        return old


def describe(model: LocalModel, *, ref: str) -> dict:
    return {"ref": ref, "version": model.metadata.version, "metadata_sha256": model.metadata_sha256,
            "model_name": model.metadata.model_name, "policy_version": model.metadata.policy_version,
            "onnx_bytes": Path(model.onnx_path).stat().st_size}
