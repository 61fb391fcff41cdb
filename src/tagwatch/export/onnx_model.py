"""torch -> ONNX with a dynamic batch axis, and the parity check that gates every export.

Contract of the exported graph (what Triton, ONNX Runtime and the consumers rely on):
  input  ``images``          float32 [N, 3, crop, crop], preprocessed with ``tagwatch.preprocess`` (the preset);
  output ``hashtag_logits``  float32 [N, num_labels]     raw logits of the pretraining hashtag head;
  output ``category_scores`` float32 [N, num_categories] sigmoid probabilities of the moderation head.
Both heads are exported (not a features output): moderation needs calibrated category scores, and the hashtag
logits are kept for inspection and for relabelling without another export.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tagwatch.errors import ExportError
from tagwatch.tensor_contract import INPUT_NAME, OUTPUT_NAMES

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-4
# Dynamo's export needs a finite range for the symbolic batch; Triton's max_batch_size stays well under it.
MAX_EXPORT_BATCH = 4096


@dataclass(frozen=True)
class ParityReport:
    images: int
    tolerance: float
    max_abs_diff: dict[str, float]
    passed: bool

    def worst(self) -> float:
        return max(self.max_abs_diff.values())

    def to_dict(self) -> dict:
        return asdict(self)


def export_onnx(model, *, path: Path, crop: int, opset: int | None = None) -> Path:
    """Write ``model`` as one self-contained ONNX file (no external data) with a dynamic batch axis.

    Args:
        model: an ``nn.Module`` whose ``forward(images)`` returns ``(hashtag_logits, category_scores)``.
        path: the .onnx file to write.
        crop: image side the model takes (the preset's ``crop``).
        opset: ONNX opset; ``None`` lets torch pick its default.
    """
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.zeros(2, 3, crop, crop, dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    arg_name = _forward_arg_name(model)
    try:
        with torch.no_grad():
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes={arg_name: {0: batch}},
                opset_version=opset,
                external_data=False,
                dynamo=True,
            )
    except Exception as error:  # torch raises many types; all mean "this module did not export"
        raise ExportError(
            f"torch.onnx.export failed: {type(error).__name__}: {' '.join(str(error).split())[:300]}",
            hint="the model's forward must take one images tensor and return (hashtag_logits, category_scores)",
        ) from error
    _check_signature(path)
    return path


def check_parity(model, *, onnx_path: Path, images: np.ndarray, tolerance: float = DEFAULT_TOLERANCE,
                 batch_size: int = 16) -> ParityReport:
    """Run torch and ONNX Runtime on the same preprocessed ``images``; max abs diff per output.

    Raises ExportError (showing the figure) when any output differs by more than ``tolerance``.
    """
    import torch

    session = ort_session(onnx_path)
    worst = {name: 0.0 for name in OUTPUT_NAMES}
    model = model.eval()
    for start in range(0, len(images), batch_size):
        chunk = np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32)
        with torch.no_grad():
            expected = [t.detach().cpu().numpy() for t in model(torch.from_numpy(chunk))]
        got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: chunk})
        for name, want, have in zip(OUTPUT_NAMES, expected, got, strict=True):
            if want.shape != have.shape:
                raise ExportError(f"{name}: ONNX shape {have.shape} != torch shape {want.shape}")
            worst[name] = max(worst[name], float(np.max(np.abs(want - have))) if want.size else 0.0)
    report = ParityReport(images=len(images), tolerance=tolerance, max_abs_diff=worst,
                          passed=all(v <= tolerance for v in worst.values()))
    log.info("parity on %d images: %s", len(images), {k: f"{v:.2e}" for k, v in worst.items()})
    if not report.passed:
        figures = ", ".join(f"{k} {v:.3e}" for k, v in worst.items())
        raise ExportError(
            f"ONNX Runtime disagrees with torch beyond {tolerance:g} (max abs diff: {figures}) on {len(images)} images",
            hint="an op exported differently (check opset, custom ops, fp16 weights); the export was not kept",
        )
    return report


def ort_session(onnx_path: Path, *, threads: int | None = None):
    """An ONNX Runtime CPU session; ``threads`` caps intra-op threads (None: ORT's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])


def _forward_arg_name(model) -> str:
    import inspect

    params = [p for p in inspect.signature(model.forward).parameters.values() if p.kind != p.VAR_KEYWORD]
    if not params:
        raise ExportError("the model's forward takes no argument", hint="forward(images) -> (logits, scores)")
    return params[0].name


def _check_signature(path: Path) -> None:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inputs = [i.name for i in graph.input]
    outputs = [o.name for o in graph.output]
    if inputs != [INPUT_NAME] or tuple(outputs) != OUTPUT_NAMES:
        raise ExportError(
            f"exported graph has inputs {inputs} and outputs {outputs}",
            hint=f"forward must take one tensor and return exactly two: {', '.join(OUTPUT_NAMES)}",
        )


def output_widths(onnx_path: Path) -> dict[str, int]:
    """Static width of each output (dim 1), read from the graph."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    widths = {}
    for output in graph.output:
        dims = output.type.tensor_type.shape.dim
        widths[output.name] = int(dims[1].dim_value) if len(dims) > 1 and dims[1].dim_value else -1
    return widths
