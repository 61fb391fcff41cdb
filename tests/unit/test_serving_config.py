"""The registered config.pbtxt is validated by Triton's own proto, and the served config is derived from it.

- an invalid config.pbtxt (unknown field, wrong enum) is refused at export and when a server loads a version;
- ``config_check.compare`` reports every field a client depends on when served and registered disagree (so the
  integration test against the running Triton can fail);
- PyTriton, given ``pytriton_binding(ServedConfig.of(registered))``, generates a config that agrees with it
  (run in a child process: PyTriton imports tritonclient.grpc, which cannot share a process with kserve).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from google.protobuf import json_format

from tagwatch.errors import ExportError, IntegrityError
from tagwatch.export import triton_layout
from tagwatch.export.triton_layout import (
    ModelLayout,
    model_config_proto,
    parse_config_pbtxt,
    render_config_pbtxt,
    write_model_repository,
)
from tagwatch.serving.config_check import compare
from tagwatch.serving.model_config import ServedConfig, read_registered_config

NAME = "tagwatch-moderation"
LAYOUT = ModelLayout(model_name=NAME, version=3, crop=128, num_labels=24, num_categories=3, max_batch_size=32,
                     preferred_batch_sizes=(4, 8, 16), max_queue_delay_us=5000)
UNKNOWN_FIELD = ("max_batch_size: 32\n", "max_batch_sizes: 32\n")
WRONG_ENUM = ("data_type: TYPE_FP32\n    format", "data_type: TYPE_FLOAT32\n    format")


def _registered():
    return parse_config_pbtxt(render_config_pbtxt(LAYOUT))


def _as_served(config, *, extra_output: bool = True) -> dict:
    """What a Triton reports for ``config`` over HTTP: the proto as JSON (int64 fields as strings)."""
    served = json_format.MessageToDict(config, preserving_proto_field_name=True)
    if extra_output:
        served["output"].append({"name": "model_version", "data_type": "TYPE_INT64", "dims": ["1"]})
    return served


@pytest.mark.parametrize("edit", [UNKNOWN_FIELD, WRONG_ENUM], ids=["unknown-field", "wrong-enum"])
def test_invalid_config_pbtxt_is_refused_with_a_hint(edit) -> None:
    text = render_config_pbtxt(LAYOUT)
    assert edit[0] in text
    with pytest.raises(ExportError, match="does not parse as a Triton ModelConfig") as info:
        parse_config_pbtxt(text.replace(edit[0], edit[1], 1))
    assert "model_config.proto" in info.value.hint


def test_export_writes_no_config_triton_would_refuse(tmp_path, monkeypatch) -> None:
    onnx = tmp_path / "in.onnx"
    onnx.write_bytes(b"x")
    bad = render_config_pbtxt(LAYOUT).replace(*WRONG_ENUM)
    monkeypatch.setattr(triton_layout, "render_config_pbtxt", lambda layout: bad)
    with pytest.raises(ExportError, match="does not parse"):
        write_model_repository(tmp_path / "repo", layout=LAYOUT, onnx_path=onnx, labels=[f"t{i}" for i in range(24)],
                               categories=["a", "b", "c"])
    assert not (tmp_path / "repo" / NAME / "config.pbtxt").exists()


@pytest.mark.parametrize("edit", [UNKNOWN_FIELD, WRONG_ENUM], ids=["unknown-field", "wrong-enum"])
def test_server_refuses_a_version_whose_config_is_invalid(tmp_path, edit) -> None:
    onnx = tmp_path / "in.onnx"
    onnx.write_bytes(b"x")
    write_model_repository(tmp_path / "repo", layout=LAYOUT, onnx_path=onnx, labels=[f"t{i}" for i in range(24)],
                           categories=["a", "b", "c"])
    assert read_registered_config(tmp_path / "repo", model_name=NAME, version=3) == _registered()
    path = tmp_path / "repo" / NAME / "config.pbtxt"
    path.write_text(path.read_text().replace(*edit, 1))
    with pytest.raises(IntegrityError, match=f"refusing to load {NAME} version 3: config.pbtxt does not parse") as info:
        read_registered_config(tmp_path / "repo", model_name=NAME, version=3)
    assert info.value.exit_code == 12 and "re-export" in info.value.hint
    with pytest.raises(IntegrityError, match="names model 'other'"):
        path.write_text(render_config_pbtxt(LAYOUT).replace(f'name: "{NAME}"', 'name: "other"'))
        read_registered_config(tmp_path / "repo", model_name=NAME, version=3)


def test_compare_agrees_and_ignores_only_the_declared_extra_output() -> None:
    registered = _registered()
    assert compare(_as_served(registered), registered, extra_outputs=("model_version",)) == []
    assert compare(_as_served(registered), registered) == ["outputs: 'model_version' served but not registered"]
    # Triton's JSON may carry int64 as numbers and fields this client's proto does not know.
    served = {**_as_served(registered, extra_output=False), "a_future_field": 1}
    served["input"][0]["dims"] = [3, 128, 128]
    assert compare(served, registered) == []


def _altered(change):
    config = _registered()
    change(config)
    return config


ALTERATIONS = {
    "max_batch_size": (lambda c: setattr(c, "max_batch_size", 16), "max_batch_size: served 32, registered 16"),
    "preferred": (lambda c: c.dynamic_batching.preferred_batch_size.pop(),
                  "preferred_batch_sizes: served (4, 8, 16), registered (4, 8)"),
    "queue_delay": (lambda c: setattr(c.dynamic_batching, "max_queue_delay_microseconds", 100),
                    "max_queue_delay_us: served 5000, registered 100"),
    "no_dynamic_batching": (lambda c: c.ClearField("dynamic_batching"),
                            "dynamic_batching: served True, registered False"),
    "input_dtype": (lambda c: setattr(c.input[0], "data_type", model_config_proto().DataType.Value("TYPE_FP16")),
                    "inputs[images].data_type: served 'TYPE_FP32', registered 'TYPE_FP16'"),
    "output_dims": (lambda c: c.output[1].dims.__setitem__(0, 4),
                    "outputs[category_scores].dims: served (3,), registered (4,)"),
    "output_name": (lambda c: setattr(c.output[0], "name", "logits"),
                    "outputs: 'hashtag_logits' served but not registered"),
    "name": (lambda c: setattr(c, "name", "other"), "name: served 'tagwatch-moderation', registered 'other'"),
}


@pytest.mark.parametrize("alteration", ALTERATIONS.values(), ids=ALTERATIONS.keys())
def test_compare_reports_an_altered_registered_config(alteration) -> None:
    change, expected = alteration
    found = compare(_as_served(_registered()), _altered(change), extra_outputs=("model_version",))
    assert expected in found, found


PYTRITON_CONFIG = """
import json, sys
from google.protobuf import text_format
from pytriton.model_config.generator import ModelConfigGenerator
from pytriton.model_config.triton_model_config import TensorSpec, TritonModelConfig
from tagwatch.export.triton_layout import model_config_proto
from tagwatch.serving.model_config import ServedConfig, pytriton_binding

registered = text_format.Parse(sys.stdin.read(), model_config_proto().ModelConfig())
bind = pytriton_binding(ServedConfig.of(registered))
# What PyTriton's Model does with Triton.bind's arguments (pytriton/models/model.py, _get_triton_model_config).
config = TritonModelConfig(model_name=registered.name, model_version=1, batching=bind["config"].batching,
                           batcher=bind["config"].batcher, max_batch_size=bind["config"].max_batch_size)
config.inputs = [TensorSpec(name=t.name, dtype=t.dtype, shape=t.shape) for t in bind["inputs"]]
config.outputs = [TensorSpec(name=t.name, dtype=t.dtype, shape=t.shape) for t in bind["outputs"]]
print(json.dumps(ModelConfigGenerator(config).get_config()))
"""


@pytest.mark.parametrize("dynamic_batching", [True, False])
def test_pytriton_is_bound_with_the_registered_config(dynamic_batching) -> None:
    registered = _registered() if dynamic_batching else _altered(lambda c: c.ClearField("dynamic_batching"))
    from google.protobuf import text_format

    child = subprocess.run([sys.executable, "-c", PYTRITON_CONFIG], input=text_format.MessageToString(registered),
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    generated = json.loads(child.stdout)  # PyTriton's camelCase JSON, which json_format also reads
    assert ("dynamic_batching" in generated) is dynamic_batching
    assert compare(generated, registered) == []
    assert ServedConfig.of(registered).dynamic_batching is dynamic_batching
