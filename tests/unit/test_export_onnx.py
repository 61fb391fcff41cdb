"""ONNX export of a small two-head CNN: dynamic batch, named outputs, parity vs torch on real images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tagwatch.errors import ExportError
from tagwatch.export import export_model
from tagwatch.export.export import load_parity_images
from tagwatch.export.onnx_model import ort_session
from tagwatch.preprocess import DEFAULT_PRESET
from tests.support.serving_models import CATEGORIES, LABELS, DriftsWhenExported, tiny_model


@pytest.fixture(scope="module")
def parity_images() -> np.ndarray:
    return load_parity_images(DEFAULT_PRESET, count=12)


def test_export_writes_layout_and_passes_parity(tmp_path, parity_images) -> None:
    policy = {"version": "policy-3", "categories": {"weapons": {"remove_threshold": 0.9, "review_threshold": 0.5}}}
    result = export_model(tiny_model(), out_dir=tmp_path / "out", model_name="tagwatch-moderation", labels=LABELS,
                          categories=CATEGORIES, preset=DEFAULT_PRESET, parity_images=parity_images,
                          lineage={"run_id": "run-1"}, policy=policy)
    assert result.parity.passed and result.parity.images == 12
    assert result.parity.worst() <= 1e-4
    info = json.loads((tmp_path / "out/export.json").read_text())
    assert info["layout"]["num_labels"] == len(LABELS) and info["lineage"] == {"run_id": "run-1"}
    assert json.loads((tmp_path / "out/policy.json").read_text())["version"] == "policy-3"
    # Dynamic batch: any N works, and the outputs carry the contract's names.
    session = ort_session(result.onnx_path)
    assert [o.name for o in session.get_outputs()] == ["hashtag_logits", "category_scores"]
    for n in (1, 5):
        logits, scores = session.run(None, {"images": parity_images[:n]})
        assert logits.shape == (n, len(LABELS)) and scores.shape == (n, len(CATEGORIES))
        assert ((scores > 0) & (scores < 1)).all()


def test_parity_failure_fails_the_export_with_the_figure(tmp_path, parity_images) -> None:
    with pytest.raises(ExportError, match=r"hashtag_logits 1\.0\d*e-02"):
        export_model(DriftsWhenExported().eval(), out_dir=tmp_path / "out", model_name="m", labels=LABELS,
                     categories=CATEGORIES, preset=DEFAULT_PRESET, parity_images=parity_images)


def test_parity_images_are_real_renders() -> None:
    images = load_parity_images(DEFAULT_PRESET, count=4)
    assert images.shape == (4, 3, 128, 128) and images.dtype == np.float32
    # Real artwork, not constant frames: every image has spatial variation.
    assert all(float(im.std()) > 0.05 for im in images)
