"""The served model's Triton config, read from the registered ``config.pbtxt``: the one source of truth.

KServe's Triton loads a version's ``config.pbtxt`` itself; the local Triton runs the model through a PyTriton
callback, which is bound with a config PyTriton generates. So that both serve the same thing, the local binding
is built here FROM the parsed registered file (``ServedConfig.of`` then ``pytriton_binding``), never from
separate constants or metadata.json, and ``config_check`` compares what any Triton reports against the same
``ServedConfig`` fields.

``ServedConfig`` holds exactly the fields a client of the served model depends on: name, max_batch_size,
inputs/outputs (name, data type, dims) and dynamic batching (presence, preferred sizes, max queue delay).
Fields PyTriton cannot express (platform, version_policy, format, label_filename, instance_group) are the
registered file's business only; the local server's Triton model version is always 1 (see ``server``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from tagwatch.errors import ExportError, IntegrityError
from tagwatch.export.triton_layout import CONFIG_FILE, model_config_proto, parse_config_pbtxt

# Triton config data types the local binding can serve, and their numpy dtype names.
NUMPY_DTYPES = {
    "TYPE_BOOL": "bool", "TYPE_UINT8": "uint8", "TYPE_INT8": "int8", "TYPE_INT16": "int16",
    "TYPE_INT32": "int32", "TYPE_INT64": "int64", "TYPE_FP16": "float16", "TYPE_FP32": "float32",
    "TYPE_FP64": "float64",
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # Triton's spelling, e.g. TYPE_FP32
    dims: tuple[int, ...]  # per row when max_batch_size > 0 (Triton's convention)


@dataclass(frozen=True)
class ServedConfig:
    name: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dynamic_batching: bool
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_us: int

    @classmethod
    def of(cls, config) -> ServedConfig:
        """From a Triton ``ModelConfig`` protobuf (parsed config.pbtxt, or what a server reports)."""
        data_type = model_config_proto().DataType.Name

        def tensors(items) -> tuple[TensorSpec, ...]:
            return tuple(TensorSpec(t.name, data_type(t.data_type), tuple(int(d) for d in t.dims)) for t in items)

        batching = config.HasField("dynamic_batching")
        return cls(name=config.name, max_batch_size=config.max_batch_size, inputs=tensors(config.input),
                   outputs=tensors(config.output), dynamic_batching=batching,
                   preferred_batch_sizes=tuple(config.dynamic_batching.preferred_batch_size) if batching else (),
                   max_queue_delay_us=int(config.dynamic_batching.max_queue_delay_microseconds) if batching else 0)

    def without_outputs(self, names: tuple[str, ...]) -> ServedConfig:
        return ServedConfig(**{**self.__dict__, "outputs": tuple(o for o in self.outputs if o.name not in names)})

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)


def differences(served: ServedConfig, registered: ServedConfig, *,
                labels: tuple[str, str] = ("served", "registered")) -> list[str]:
    """Human-readable differences, field by field (and tensor by tensor); empty when they agree."""
    found = []
    for f in fields(ServedConfig):
        have, want = getattr(served, f.name), getattr(registered, f.name)
        if f.name in ("inputs", "outputs"):
            found += _tensor_differences(f.name, have, want, labels)
        elif have != want:
            found.append(f"{f.name}: {labels[0]} {have!r}, {labels[1]} {want!r}")
    return found


def _tensor_differences(kind: str, served: tuple[TensorSpec, ...], registered: tuple[TensorSpec, ...],
                        labels: tuple[str, str]) -> list[str]:
    a, b = labels
    have, want = {t.name: t for t in served}, {t.name: t for t in registered}
    found = [f"{kind}: {name!r} {a} but not {b}" for name in have if name not in want]
    found += [f"{kind}: {name!r} {b} but not {a}" for name in want if name not in have]
    for name in (n for n in want if n in have):
        for attr in ("data_type", "dims"):
            if getattr(have[name], attr) != getattr(want[name], attr):
                found.append(f"{kind}[{name}].{attr}: {a} {getattr(have[name], attr)!r}, "
                             f"{b} {getattr(want[name], attr)!r}")
    if not found and [t.name for t in served] != [t.name for t in registered]:
        found.append(f"{kind} order: {a} {[t.name for t in served]}, {b} {[t.name for t in registered]}")
    return found


def read_registered_config(repository: Path, *, model_name: str, version: int):
    """Parse ``<repository>/<model_name>/config.pbtxt`` with Triton's proto; IntegrityError if it is not valid."""
    path = repository / model_name / CONFIG_FILE
    if not path.is_file():
        raise IntegrityError(f"refusing to load {model_name} version {version}: it has no {model_name}/{CONFIG_FILE}",
                             hint="re-export and register the model; KServe's Triton cannot load it either")
    return parse_registered_config(path.read_text(encoding="utf-8"), model_name=model_name, version=version)


def parse_registered_config(text: str, *, model_name: str, version: int):
    """A registered config.pbtxt as Triton's ``ModelConfig``, refused (IntegrityError) unless Triton would load it
    as this model and the local server can serve its tensors."""
    what = f"{model_name} version {version}"
    try:
        config = parse_config_pbtxt(text)
    except ExportError as error:
        raise IntegrityError(f"refusing to load {what}: {error.message}",
                             hint="KServe's Triton would refuse it too; re-export with `tagwatch model export` "
                                  "and register the new version") from error
    if config.name != model_name:
        raise IntegrityError(f"refusing to load {what}: its config.pbtxt names model {config.name!r}",
                             hint="Triton requires the name to be the model directory's; re-export the model")
    for tensor in (*config.input, *config.output):
        name = model_config_proto().DataType.Name(tensor.data_type)
        if name not in NUMPY_DTYPES:
            raise IntegrityError(f"refusing to load {what}: tensor {tensor.name!r} has data type {name}",
                                 hint=f"the local server serves {', '.join(NUMPY_DTYPES)}")
    return config


def pytriton_binding(served: ServedConfig, *, extra_outputs: tuple[TensorSpec, ...] = ()) -> dict:
    """``Triton.bind`` keyword arguments (inputs, outputs, config) that make PyTriton serve ``served``."""
    import numpy as np
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    def tensor(spec: TensorSpec):
        return Tensor(name=spec.name, dtype=np.dtype(NUMPY_DTYPES[spec.data_type]).type, shape=spec.dims)

    batcher = None  # PyTriton writes no dynamic_batching block when the batcher is not a DynamicBatcher
    if served.dynamic_batching:
        batcher = DynamicBatcher(preferred_batch_size=list(served.preferred_batch_sizes),
                                 max_queue_delay_microseconds=served.max_queue_delay_us)
    return {
        "inputs": [tensor(t) for t in served.inputs],
        "outputs": [tensor(t) for t in (*served.outputs, *extra_outputs)],
        "config": ModelConfig(batching=served.max_batch_size > 0, max_batch_size=max(served.max_batch_size, 1),
                              batcher=batcher),
    }
