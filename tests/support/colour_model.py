"""A real, tiny ONNX model for stream tests: category scores follow from the image's mean colour.

score("red")  = sigmoid(3 * (mean R - mean B)) of the normalised image; score("blue") the opposite. So a red
image is removed, a blue one too, a grey one allowed - decisions a test can predict exactly. It runs in ONNX
Runtime (and in Triton) like the exported classifier: input ``images`` [N,3,H,W], output ``category_scores``.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from tagwatch.moderation.events import ModelRef
from tagwatch.moderation.policy import Policy

CATEGORIES = ["red", "blue"]
POLICY = Policy.model_validate({
    "version": "colour-policy-1",
    "categories": {c: {"remove_threshold": 0.9, "review_threshold": 0.8} for c in CATEGORIES},
})


def build(path: Path) -> ModelRef:
    import onnx
    from onnx import TensorProto, helper

    weights = np.array([[3.0, -3.0], [0.0, 0.0], [-3.0, 3.0]], dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["images"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["mean", "w"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["category_scores"]),
        ],
        "colour",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("category_scores", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.flatten())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    path.write_bytes(data)
    return ModelRef(name="colour-test", version="1", sha256=hashlib.sha256(data).hexdigest())


def jpeg(colour: tuple[int, int, int], size: int = 64, *, seed: int = 0) -> bytes:
    """A JPEG of one colour with a little noise (distinct bytes per seed, same decision)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour, dtype=np.int16) + rng.integers(-8, 9, (size, size, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


RED, BLUE, GREY = (230, 20, 20), (20, 20, 230), (128, 128, 128)
EXPECTED = {RED: "remove", BLUE: "remove", GREY: "allow"}
