"""`tagwatch model export`: torch module -> ONNX -> parity check -> a local Triton repository + export.json.

The export directory is what `tagwatch model register` uploads:

    <out>/export.json                     what was exported: layout, preset, parity figures, lineage, sizes
    <out>/repository/<model>/...          the Triton layout (version dir 1; register renumbers it)
    <out>/policy.json                     optional: the trainer's thresholds, stored with the version
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tagwatch.errors import ExportError
from tagwatch.export.onnx_model import DEFAULT_TOLERANCE, ParityReport, check_parity, export_onnx, output_widths
from tagwatch.export.triton_layout import ModelLayout, write_model_repository
from tagwatch.preprocess import Preset
from tagwatch.tensor_contract import CATEGORY_SCORES, HASHTAG_LOGITS

log = logging.getLogger(__name__)

EXPORT_INFO_FILE = "export.json"
POLICY_FILE = "policy.json"
EXPORT_SCHEMA_VERSION = 1
OPENCLIPART_DIR = Path("/usr/share/openclipart/svg")


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    repository: Path
    onnx_path: Path
    parity: ParityReport
    info: dict[str, Any]


def export_model(model, *, out_dir: Path, model_name: str, labels: list[str], categories: list[str], preset: Preset,
                 parity_images: np.ndarray, lineage: dict[str, Any] | None = None, policy: dict | None = None,
                 max_batch_size: int = 64, preferred_batch_sizes: tuple[int, ...] = (8, 16, 32),
                 max_queue_delay_us: int = 2000, tolerance: float = DEFAULT_TOLERANCE) -> ExportResult:
    """Export ``model`` and write the export directory; fails (ExportError) if parity is off.

    Args:
        model: ``nn.Module``; ``forward(images [N,3,crop,crop])`` -> ``(hashtag_logits, category_scores)``.
        out_dir: a new or empty directory.
        model_name: the Triton model name (``settings.triton.model_name``).
        labels / categories: names of the two outputs' columns, in order.
        preset: the preprocessing the model was trained with (recorded; serving rebuilds it from this).
        parity_images: preprocessed float32 [N,3,crop,crop] real images for the torch-vs-ONNX check.
        lineage: run_id, manifest_hash, vocabulary_version, arch, checkpoint ... copied into metadata.
        policy: the trainer's threshold policy (opaque JSON with a ``version``), stored beside the model.
    """
    if parity_images.ndim != 4 or parity_images.shape[1:] != (3, preset.crop, preset.crop):
        raise ExportError(
            f"parity images have shape {parity_images.shape}; expected [N, 3, {preset.crop}, {preset.crop}]",
            hint="preprocess them with the model's preset",
        )
    if len(parity_images) == 0:
        raise ExportError("no parity images", hint="pass --images DIR with a few real images")
    if policy is not None and "version" not in policy:
        raise ExportError("policy.json has no `version` field", hint="use the policy the transfer step wrote")
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        raise ExportError(f"export directory {out_dir} is not empty", hint="pick a new --out directory")
    work = out_dir / ".onnx"
    t0 = time.monotonic()
    onnx_path = export_onnx(model, path=work / "model.onnx", crop=preset.crop)
    export_s = time.monotonic() - t0
    widths = output_widths(onnx_path)
    parity = check_parity(model, onnx_path=onnx_path, images=parity_images, tolerance=tolerance)
    layout = ModelLayout(
        model_name=model_name, version=1, crop=preset.crop,
        num_labels=widths[HASHTAG_LOGITS], num_categories=widths[CATEGORY_SCORES],
        max_batch_size=max_batch_size, preferred_batch_sizes=tuple(preferred_batch_sizes),
        max_queue_delay_us=max_queue_delay_us,
    )
    repository = out_dir / "repository"
    write_model_repository(repository, layout=layout, onnx_path=onnx_path, labels=labels, categories=categories)
    final_onnx = layout.model_dir(repository) / "1" / "model.onnx"
    onnx_path.unlink()
    work.rmdir()
    if policy is not None:
        (out_dir / POLICY_FILE).write_text(json.dumps(policy, indent=2, sort_keys=True), encoding="utf-8")
    info = {
        "schema_version": EXPORT_SCHEMA_VERSION,
        "model_name": model_name,
        "exported_at": datetime.now(timezone.utc).isoformat(),
        "layout": layout.to_dict(),
        "preset": preset.to_dict(),
        "parity": parity.to_dict(),
        "onnx": {"bytes": final_onnx.stat().st_size, "sha256": sha256_file(final_onnx), "export_s": round(export_s, 2)},
        "lineage": lineage or {},
        "runtime": _versions(),
    }
    (out_dir / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
    log.info("exported %s (%d bytes) in %.1fs; parity max diff %.2e", final_onnx, info["onnx"]["bytes"], export_s,
             parity.worst())
    return ExportResult(out_dir=out_dir, repository=repository, onnx_path=final_onnx, parity=parity, info=info)


def read_export_info(out_dir: Path) -> dict[str, Any]:
    path = out_dir / EXPORT_INFO_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ExportError(f"{path} not found", hint="register a directory written by `tagwatch model export`") from error
    except ValueError as error:
        raise ExportError(f"{path} is not valid JSON", hint="re-run `tagwatch model export`") from error


def load_parity_images(preset: Preset, *, image_dir: Path | None = None, count: int = 32) -> np.ndarray:
    """``count`` real images, preprocessed: files from ``image_dir`` (png/jpg/webp/svg), else openclipart SVGs.

    Openclipart (Debian ``openclipart-svg``) is real artwork with flat colours, sharp edges and transparency:
    closer to what the model sees than noise, and present on every machine `make install` set up.
    """
    from PIL import Image

    if image_dir is not None:
        paths = sorted(p for p in Path(image_dir).rglob("*")
                       if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp", ".svg"})
    else:
        paths = sorted(OPENCLIPART_DIR.rglob("*.svg")) if OPENCLIPART_DIR.is_dir() else []
        step = max(1, len(paths) // (count * 3))
        paths = paths[::step]  # spread over the collection's categories, deterministically
    images: list[np.ndarray] = []
    for path in paths:
        if len(images) >= count:
            break
        try:
            image = _render_svg(path, preset.resize) if path.suffix.lower() == ".svg" else Image.open(path)
            images.append(preset(image))
        except Exception as error:  # a broken file is skipped; enough others remain
            log.debug("skipping parity image %s: %s", path, type(error).__name__)
    if not images:
        where = image_dir or OPENCLIPART_DIR
        raise ExportError(f"no readable images under {where}",
                          hint="pass --images DIR with real images, or apt-get install openclipart-svg")
    return np.stack(images).astype(np.float32)


def _render_svg(path: Path, size: int):
    import io

    import cairosvg
    from PIL import Image

    png = cairosvg.svg2png(url=str(path), output_width=size, output_height=size)
    return Image.open(io.BytesIO(png))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version()}
