"""The Triton client's failure handling against a real closed port, and the hot-swap guard of the server."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from tagwatch.errors import RetryableError, ServingError, ServingUnavailableError
from tagwatch.serving.client import ModelClient
from tagwatch.serving.model_config import ServedConfig, TensorSpec
from tagwatch.serving.runner import SwappableModel
from tagwatch.stack.ports import pick_free_ports


def test_refused_connection_is_retried_then_unavailable() -> None:
    (port,) = pick_free_ports("127.0.0.1", 1)  # nothing listens there
    client = ModelClient(url=f"127.0.0.1:{port}", model_name="m", protocol="http", timeout_s=2, retries=2,
                         backoff_s=0.1)
    t0 = time.monotonic()
    with pytest.raises(ServingUnavailableError, match="after 3 attempt") as info:
        client.infer(np.zeros((1, 3, 8, 8), dtype=np.float32))
    assert time.monotonic() - t0 >= 0.3  # 0.1 + 0.2 s of backoff between the three attempts
    assert isinstance(info.value, RetryableError)  # the moderation consumer backs off instead of dead-lettering
    assert not client.is_ready()
    client.close()


def test_bad_input_is_refused_before_any_request() -> None:
    client = ModelClient(url="127.0.0.1:1", model_name="m", protocol="http")
    with pytest.raises(ServingError, match=r"\[N,3,H,W\]"):
        client.infer(np.zeros((3, 8, 8), dtype=np.float32))
    with pytest.raises(ServingError, match="unknown protocol"):
        ModelClient(url="127.0.0.1:1", model_name="m", protocol="smtp")


class _Runner:
    """Just what SwappableModel reads of a runner: its served config and a run()."""

    def __init__(self, crop: int, tag: str, preferred: tuple[int, ...] = (4,)) -> None:
        self.served = ServedConfig(
            name="m", max_batch_size=8, inputs=(TensorSpec("images", "TYPE_FP32", (3, crop, crop)),),
            outputs=(TensorSpec("hashtag_logits", "TYPE_FP32", (4,)), TensorSpec("category_scores", "TYPE_FP32", (2,))),
            dynamic_batching=True, preferred_batch_sizes=preferred, max_queue_delay_us=100)
        self.tag = tag
        self.model = SimpleNamespace(metadata=SimpleNamespace(version=tag))

    def run(self, images):
        return {"tag": self.tag}


def test_swap_replaces_the_runner_and_refuses_another_shape() -> None:
    model = SwappableModel(_Runner(128, "v1"))
    assert model(np.zeros((1, 3, 128, 128)))["tag"] == "v1"
    old = model.swap(_Runner(128, "v2"))
    assert old.tag == "v1" and model(np.zeros((1, 3, 128, 128)))["tag"] == "v2" and model.swaps == 1
    with pytest.raises(ServingError, match=r"inputs\[images\]\.dims: new \(3, 224, 224\), bound \(3, 128, 128\).*not swapped"):
        model.swap(_Runner(224, "v3"))
    # Triton stays bound with the first config: a version whose batching differs is not served under it either.
    with pytest.raises(ServingError, match=r"preferred_batch_sizes: new \(2,\), bound \(4,\)"):
        model.swap(_Runner(128, "v4", preferred=(2,)))
    assert model.runner.tag == "v2"
