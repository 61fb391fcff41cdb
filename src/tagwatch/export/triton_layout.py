"""The Triton model repository a registry version holds, exactly as KServe's Triton runtime loads it:

    <repository>/<model_name>/config.pbtxt        platform onnxruntime_onnx, dynamic batching, version policy
    <repository>/<model_name>/hashtags.txt        one label per line, row i = hashtag_logits[:, i]
    <repository>/<model_name>/categories.txt      one category per line, row i = category_scores[:, i]
    <repository>/<model_name>/<version>/model.onnx

The label files are Triton's classification-extension ``label_filename``s, so a client may also ask Triton for
top-k classes by name. ``<version>`` is the registry version number, so Triton reports the registry version.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from tagwatch.errors import ExportError
from tagwatch.tensor_contract import INPUT_NAME, OUTPUT_NAMES, TRITON_CONFIG_DATATYPE

HASHTAG_LABELS_FILE = "hashtags.txt"
CATEGORY_LABELS_FILE = "categories.txt"
ONNX_FILE = "model.onnx"
CONFIG_FILE = "config.pbtxt"


@dataclass(frozen=True)
class ModelLayout:
    """What config.pbtxt says. Defaults suit the small CPU models of the embedded stack."""

    model_name: str
    version: int
    crop: int
    num_labels: int
    num_categories: int
    max_batch_size: int = 64
    preferred_batch_sizes: tuple[int, ...] = field(default=(8, 16, 32))
    max_queue_delay_us: int = 2000
    instance_count: int = 1

    def __post_init__(self) -> None:
        if self.version < 1:
            raise ExportError(f"Triton version directories start at 1; got {self.version}")
        bad = [s for s in self.preferred_batch_sizes if not 1 <= s <= self.max_batch_size]
        if bad:
            raise ExportError(
                f"preferred batch sizes {bad} are outside 1..max_batch_size={self.max_batch_size}",
                hint="lower the preferred sizes or raise max_batch_size",
            )

    def model_dir(self, repository: Path) -> Path:
        return repository / self.model_name

    def to_dict(self) -> dict:
        return {**self.__dict__, "preferred_batch_sizes": list(self.preferred_batch_sizes)}

    @classmethod
    def from_dict(cls, data: dict) -> ModelLayout:
        return cls(**{**data, "preferred_batch_sizes": tuple(data["preferred_batch_sizes"])})


def render_config_pbtxt(layout: ModelLayout) -> str:
    """config.pbtxt text for ``layout`` (Triton's ModelConfig protobuf text format)."""
    preferred = ", ".join(str(s) for s in layout.preferred_batch_sizes)
    logits, scores = OUTPUT_NAMES
    return f"""name: "{layout.model_name}"
platform: "onnxruntime_onnx"
max_batch_size: {layout.max_batch_size}
version_policy: {{ specific: {{ versions: [ {layout.version} ] }} }}
input [
  {{
    name: "{INPUT_NAME}"
    data_type: {TRITON_CONFIG_DATATYPE}
    format: FORMAT_NCHW
    dims: [ 3, {layout.crop}, {layout.crop} ]
  }}
]
output [
  {{
    name: "{logits}"
    data_type: {TRITON_CONFIG_DATATYPE}
    dims: [ {layout.num_labels} ]
    label_filename: "{HASHTAG_LABELS_FILE}"
  }},
  {{
    name: "{scores}"
    data_type: {TRITON_CONFIG_DATATYPE}
    dims: [ {layout.num_categories} ]
    label_filename: "{CATEGORY_LABELS_FILE}"
  }}
]
dynamic_batching {{
  preferred_batch_size: [ {preferred} ]
  max_queue_delay_microseconds: {layout.max_queue_delay_us}
}}
instance_group [ {{ count: {layout.instance_count} kind: KIND_CPU }} ]
"""


def parse_config_pbtxt(text: str):
    """Parse with Triton's own ModelConfig protobuf; raises ExportError on anything Triton would reject as text.

    The proto module is loaded from its file, not through ``tritonclient.grpc``: importing that package clashes
    with kserve in one process (PLATFORM.md), and this module must stay importable beside kserve.
    """
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, model_config_proto().ModelConfig())
    except text_format.ParseError as error:
        raise ExportError(f"config.pbtxt does not parse as a Triton ModelConfig: {error}",
                          hint="every field and enum value must be one Triton's model_config.proto defines "
                               "(Triton refuses to load the model otherwise)") from error


@lru_cache(maxsize=1)
def model_config_proto():
    import tritonclient

    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("tagwatch_triton_model_config_pb2", path)
    if spec is None or spec.loader is None:
        raise ExportError(f"Triton's model_config_pb2 not found at {path}", hint="pip install tritonclient[grpc]")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_label_file(path: Path, labels: list[str]) -> None:
    bad = [label for label in labels if not label or "\n" in label or "\r" in label or label != label.strip()]
    if bad:
        raise ExportError(f"labels must be non-empty single lines without edge spaces; bad: {bad[:3]!r}")
    path.write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")


def read_label_file(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def write_model_repository(repository: Path, *, layout: ModelLayout, onnx_path: Path, labels: list[str],
                           categories: list[str]) -> list[Path]:
    """Lay out one model version under ``repository``; returns the files written (relative to ``repository``)."""
    if len(labels) != layout.num_labels or len(categories) != layout.num_categories:
        raise ExportError(
            f"{len(labels)} labels / {len(categories)} categories for a model with "
            f"{layout.num_labels} / {layout.num_categories} outputs",
            hint="the vocabulary and category list must be the ones the model was trained with",
        )
    model_dir = layout.model_dir(repository)
    version_dir = model_dir / str(layout.version)
    version_dir.mkdir(parents=True, exist_ok=True)
    config = render_config_pbtxt(layout)
    parse_config_pbtxt(config)
    (model_dir / CONFIG_FILE).write_text(config, encoding="utf-8")
    write_label_file(model_dir / HASHTAG_LABELS_FILE, labels)
    write_label_file(model_dir / CATEGORY_LABELS_FILE, categories)
    if onnx_path.resolve() != (version_dir / ONNX_FILE).resolve():
        shutil.copyfile(onnx_path, version_dir / ONNX_FILE)
    return sorted(p.relative_to(repository) for p in model_dir.rglob("*") if p.is_file())


def find_onnx(repository: Path, model_name: str) -> Path:
    """The one ``<model>/<n>/model.onnx`` of a repository."""
    found = sorted((repository / model_name).glob(f"[0-9]*/{ONNX_FILE}"))
    if len(found) != 1:
        raise ExportError(
            f"expected one {model_name}/<version>/{ONNX_FILE} under {repository}, found {len(found)}",
            hint="point at the directory `tagwatch model export` wrote",
        )
    return found[0]
