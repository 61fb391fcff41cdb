"""The model a local Triton serves: ONNX Runtime on a verified registry version, swappable while serving.

Why a swap inside the bound callable rather than a Triton model reload: PyTriton binds a Python callable, so the
cheapest reload that drops nothing is to build the new ONNX Runtime session beside the old one, warm it, and
replace one reference. A batch that already took the old session finishes on it; the next batch gets the new
one. Triton's model (name, inputs, outputs, batching) stays loaded throughout, so no request sees "not ready".
A new version must have the same served config (``model_config.ServedConfig``: tensors, max batch size, dynamic
batching) as the one Triton was bound with; one that changes it is refused and the old one kept (that needs a
restart: `tagwatch stack down && tagwatch stack up`), so the served config stays the registered one.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from tagwatch.errors import ServingError
from tagwatch.export.onnx_model import ort_session
from tagwatch.registry import LocalModel
from tagwatch.serving.model_config import NUMPY_DTYPES, ServedConfig, differences, read_registered_config
from tagwatch.tensor_contract import VERSION_OUTPUT


log = logging.getLogger(__name__)


class OnnxRunner:
    """One ONNX Runtime session over one verified version, served as its registered config.pbtxt says.

    ``served`` (parsed from the version's config.pbtxt) names the tensors the session is run with, so a config
    that disagrees with the ONNX file fails here, at load, not on the first request.
    """

    def __init__(self, model: LocalModel, *, threads: int | None) -> None:
        self.model = model
        metadata = model.metadata
        config = read_registered_config(model.repository, model_name=metadata.model_name, version=metadata.version)
        self.served = ServedConfig.of(config)
        if len(self.served.inputs) != 1:
            raise ServingError(f"{metadata.model_name} version {metadata.version}: config.pbtxt has "
                               f"{len(self.served.inputs)} inputs; the local server feeds one image tensor",
                               hint="export with `tagwatch model export`, which writes one input")
        self.input = self.served.inputs[0]
        self.output_names = [t.name for t in self.served.outputs]
        self.dtype = np.dtype(NUMPY_DTYPES[self.input.data_type])
        t0 = time.monotonic()
        self.session = ort_session(model.onnx_path, threads=threads)
        try:
            self.run(np.zeros((1, *self.input.dims), dtype=self.dtype))  # warm up before serving
        except Exception as error:  # onnxruntime's own errors: a name or shape the ONNX file does not have
            raise ServingError(f"{metadata.model_name} version {metadata.version}: model.onnx does not run as its "
                               f"config.pbtxt declares: {error}", hint="re-export the model") from error
        self.load_s = time.monotonic() - t0

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, {self.input.name: images.astype(self.dtype, copy=False)})
        result = dict(zip(self.output_names, outputs, strict=True))
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
        changed = differences(runner.served, self._runner.served, labels=("new", "bound"))
        if changed:
            raise ServingError(
                f"version {runner.model.metadata.version}'s config.pbtxt differs from the one Triton is bound with "
                f"({'; '.join(changed)}); not swapped",
                hint="restart the server to serve a model with another config (Triton binds it once, at start)",
            )
        with self._lock:
            old, self._runner = self._runner, runner
            self.swaps += 1
        return old


def describe(model: LocalModel, *, ref: str) -> dict:
    return {"ref": ref, "version": model.metadata.version, "metadata_sha256": model.metadata_sha256,
            "model_name": model.metadata.model_name, "policy_version": model.metadata.policy_version,
            "onnx_bytes": Path(model.onnx_path).stat().st_size}
