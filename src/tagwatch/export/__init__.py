"""Export: a trained torch module -> ONNX (dynamic batch, parity-checked) -> a Triton model repository.

The repository layout (``triton_layout``) is exactly what KServe's Triton runtime loads from a ``storageUri``.
"""

from tagwatch.export.export import ExportResult, export_model, read_export_info
from tagwatch.export.onnx_model import ParityReport, check_parity, export_onnx
from tagwatch.export.triton_layout import ModelLayout, render_config_pbtxt, write_model_repository

__all__ = [
    "ExportResult",
    "ModelLayout",
    "ParityReport",
    "check_parity",
    "export_model",
    "export_onnx",
    "read_export_info",
    "render_config_pbtxt",
    "write_model_repository",
]
