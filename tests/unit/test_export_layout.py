"""config.pbtxt rendering and the Triton repository layout (parsed by Triton's own ModelConfig proto)."""

from __future__ import annotations

import pytest

from tagwatch.errors import ExportError
from tagwatch.export.triton_layout import (
    ModelLayout,
    parse_config_pbtxt,
    read_label_file,
    render_config_pbtxt,
    write_model_repository,
)


def _layout(**kw) -> ModelLayout:
    return ModelLayout(**{"model_name": "tagwatch-moderation", "version": 7, "crop": 128, "num_labels": 24,
                          "num_categories": 3, **kw})


def test_config_pbtxt_parses_as_triton_model_config() -> None:
    config = parse_config_pbtxt(render_config_pbtxt(_layout(max_batch_size=32, preferred_batch_sizes=(4, 16))))
    assert config.name == "tagwatch-moderation"
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 32
    assert list(config.version_policy.specific.versions) == [7]
    assert [(i.name, list(i.dims)) for i in config.input] == [("images", [3, 128, 128])]
    assert [(o.name, list(o.dims), o.label_filename) for o in config.output] == [
        ("hashtag_logits", [24], "hashtags.txt"),
        ("category_scores", [3], "categories.txt"),
    ]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000


def test_layout_refuses_preferred_sizes_above_max_batch() -> None:
    with pytest.raises(ExportError, match="preferred batch sizes"):
        _layout(max_batch_size=8, preferred_batch_sizes=(4, 16))


def test_layout_round_trips_through_dict() -> None:
    layout = _layout(preferred_batch_sizes=(2, 8))
    assert ModelLayout.from_dict(layout.to_dict()) == layout


def test_garbage_pbtxt_is_refused() -> None:
    with pytest.raises(ExportError, match="does not parse"):
        parse_config_pbtxt('name: "x"\nmax_batch_sizes: 3\n')


def test_write_model_repository_layout(tmp_path) -> None:
    onnx = tmp_path / "in.onnx"
    onnx.write_bytes(b"not really onnx, the layout does not read it")
    labels = [f"t{i}" for i in range(24)]
    files = write_model_repository(tmp_path / "repo", layout=_layout(), onnx_path=onnx, labels=labels,
                                   categories=["a", "b", "c"])
    assert [str(f) for f in files] == [
        "tagwatch-moderation/7/model.onnx",
        "tagwatch-moderation/categories.txt",
        "tagwatch-moderation/config.pbtxt",
        "tagwatch-moderation/hashtags.txt",
    ]
    assert read_label_file(tmp_path / "repo/tagwatch-moderation/hashtags.txt") == labels


def test_label_count_must_match_outputs(tmp_path) -> None:
    onnx = tmp_path / "in.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(ExportError, match="23 labels"):
        write_model_repository(tmp_path / "repo", layout=_layout(), onnx_path=onnx,
                               labels=[f"t{i}" for i in range(23)], categories=["a", "b", "c"])


def test_multiline_label_is_refused(tmp_path) -> None:
    onnx = tmp_path / "in.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(ExportError, match="single lines"):
        write_model_repository(tmp_path / "repo", layout=_layout(num_categories=2), onnx_path=onnx,
                               labels=[f"t{i}" for i in range(24)], categories=["a", "b\nc"])
