"""One small client for the moderation model on Triton (local PyTriton or KServe's Triton runtime).

gRPC by default, HTTP on request; timeouts on every call; retries with backoff on transient failures
(unavailable, deadline exceeded, overloaded, connection refused/reset); batch inference from numpy, split into
chunks of the server's ``max_batch_size``. Transient failures that outlast the retries raise
ServingUnavailableError (a RetryableError: the consumer backs off); anything else raises ServingError.

Never imports kserve: ``tritonclient.grpc`` and kserve cannot be imported in one process (duplicate proto
symbols, PLATFORM.md). The gRPC module is only imported when the gRPC protocol is chosen.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from tagwatch.errors import ServingError, ServingUnavailableError
from tagwatch.settings import TritonSettings
from tagwatch.tensor_contract import INPUT_NAME, OUTPUT_NAMES, TRITON_DATATYPE, VERSION_OUTPUT

log = logging.getLogger(__name__)

# gRPC status names and HTTP codes worth another try: the server is starting, restarting or overloaded.
TRANSIENT_GRPC = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED"}
TRANSIENT_HTTP = {"429", "502", "503", "504"}


class ModelClient:
    """``ModelClient(url="127.0.0.1:8001", model_name=...)``; use as a context manager or call ``close()``.

    Close it before stopping a local Triton: an open connection makes Triton's shutdown wait 30 s.
    """

    def __init__(self, *, url: str, model_name: str, protocol: str = "grpc", timeout_s: float = 10.0,
                 retries: int = 3, backoff_s: float = 0.2, model_version: str = "", input_name: str = INPUT_NAME,
                 output_names: tuple[str, ...] = OUTPUT_NAMES) -> None:
        """``input_name`` / ``output_names``: the tensors of another model than the moderation model's contract
        (the nudity model's, read from its registry version)."""
        if protocol not in ("grpc", "http"):
            raise ServingError(f"unknown protocol {protocol!r}", hint="use grpc or http")
        self.url, self.model_name, self.protocol = url, model_name, protocol
        self.input_name, self.output_names = input_name, tuple(output_names)
        self.timeout_s, self.retries, self.backoff_s, self.model_version = timeout_s, retries, backoff_s, model_version
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        self._module = module
        if protocol == "grpc":
            self._client = module.InferenceServerClient(url=url)
        else:
            self._client = module.InferenceServerClient(url=url, connection_timeout=timeout_s,
                                                        network_timeout=timeout_s)
        self._max_batch: int | None = None
        self._has_version_output: bool | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # -- health -------------------------------------------------------------------------------------
    def is_ready(self) -> bool:
        """Server live and the model ready; False (never raises) if unreachable."""
        try:
            return bool(self._client.is_server_live() and self._client.is_model_ready(self.model_name))
        except Exception as error:  # refused, reset, timeout: all mean "not ready"
            log.debug("triton not ready: %s", type(error).__name__)
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.is_ready():
            if time.monotonic() > deadline:
                raise ServingError(f"Triton at {self.url} has no ready model {self.model_name!r} after {timeout_s:.0f}s",
                                   hint="is it running? `tagwatch stack status`; its log: `tagwatch stack logs triton`")
            time.sleep(0.2)

    def max_batch_size(self) -> int:
        if self._max_batch is None:
            config = self._call(lambda: self._client.get_model_config(self.model_name, **self._kw()))
            if self.protocol == "grpc":
                self._max_batch = int(config.config.max_batch_size)
            else:
                self._max_batch = int(config["max_batch_size"])
        return self._max_batch

    def model_config_json(self) -> dict:
        """The model's config as Triton reports it (KServe v2 JSON), over either protocol."""
        config = self._call(lambda: self._client.get_model_config(self.model_name, as_json=True, **self._kw()))
        return config.get("config", config) if self.protocol == "grpc" else config

    def input_shape(self) -> tuple[int, ...]:
        """The ``images`` input's shape without the batch axis, e.g. (3, 128, 128)."""
        meta = self._call(lambda: self._client.get_model_metadata(self.model_name, **self._kw()))
        inputs = meta.inputs if self.protocol == "grpc" else meta["inputs"]
        for tensor in inputs:
            name = tensor.name if self.protocol == "grpc" else tensor["name"]
            if name == self.input_name:
                shape = list(tensor.shape if self.protocol == "grpc" else tensor["shape"])
                return tuple(int(d) for d in shape[1:])
        raise ServingError(f"model {self.model_name!r} has no {self.input_name!r} input")

    def has_version_output(self) -> bool:
        """True for the local server (a ``model_version`` output); False for KServe's plain ONNX config."""
        if self._has_version_output is None:
            meta = self._call(lambda: self._client.get_model_metadata(self.model_name, **self._kw()))
            names = [o.name for o in meta.outputs] if self.protocol == "grpc" else [o["name"] for o in meta["outputs"]]
            self._has_version_output = VERSION_OUTPUT in names
        return self._has_version_output

    # -- inference ----------------------------------------------------------------------------------
    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """``images`` float32 [N,3,H,W] (preprocessed) -> {output name: [N, ...]}; any N (chunked).

        Keys: ``hashtag_logits`` [N, labels], ``category_scores`` [N, categories], ``model_version`` [N] int64
        (the registry version that scored each row).
        """
        images = np.ascontiguousarray(images, dtype=np.float32)
        if images.ndim != 4:
            raise ServingError(f"images must be [N,3,H,W] (or NHWC); got shape {images.shape}",
                               hint="preprocess a batch")
        if len(images) == 0:
            raise ServingError("no images to score")
        limit = self.max_batch_size() or len(images)
        parts = [self.infer_batch(images[i : i + limit]) for i in range(0, len(images), limit)]
        return {name: np.concatenate([p[name] for p in parts]) for name in (*self.output_names, VERSION_OUTPUT)}

    def infer_batch(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """One request (N ≤ max_batch_size)."""
        m = self._module
        tensor = m.InferInput(self.input_name, list(images.shape), TRITON_DATATYPE)
        tensor.set_data_from_numpy(images)
        versioned = self.has_version_output()
        outputs = [m.InferRequestedOutput(name)
                   for name in (*self.output_names, *([VERSION_OUTPUT] if versioned else []))]
        if self.protocol == "grpc":
            result = self._call(lambda: self._client.infer(
                self.model_name, [tensor], model_version=self.model_version, outputs=outputs,
                client_timeout=self.timeout_s))
        else:
            result = self._call(lambda: self._client.infer(
                self.model_name, [tensor], model_version=self.model_version, outputs=outputs))
        out = {name: result.as_numpy(name) for name in self.output_names}
        if versioned:
            out[VERSION_OUTPUT] = result.as_numpy(VERSION_OUTPUT).reshape(-1).astype(np.int64)
        else:  # KServe: Triton's version directory is the registry version
            response = result.get_response()
            version = response.model_version if self.protocol == "grpc" else response.get("model_version", "0")
            out[VERSION_OUTPUT] = np.full(len(images), int(version or 0), dtype=np.int64)
        return out

    # -- retries ------------------------------------------------------------------------------------
    def _kw(self) -> dict[str, Any]:
        return {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}

    def _call(self, fn):
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as error:  # tritonclient raises its own type and raw socket errors
                attempt += 1
                transient = self.is_transient(error)
                if not transient or attempt > self.retries:
                    raise (ServingUnavailableError if transient else ServingError)(
                        f"Triton {self.protocol} call to {self.url} failed after {attempt} attempt(s): "
                        f"{_describe(error)}",
                        hint="is the server up? `tagwatch stack status`; check the model name and input shape",
                    ) from error
                delay = self.backoff_s * 2 ** (attempt - 1)
                log.debug("transient Triton error (%s); retry %d in %.2fs", _describe(error), attempt, delay)
                time.sleep(delay)

    @staticmethod
    def is_transient(error: BaseException) -> bool:
        from tritonclient.utils import InferenceServerException

        if isinstance(error, InferenceServerException):
            status = str(error.status() or "")
            return status in TRANSIENT_GRPC or status in TRANSIENT_HTTP
        return isinstance(error, (ConnectionError, TimeoutError, OSError))


def client_from_settings(triton: TritonSettings, *, protocol: str = "grpc", grpc_port: int | None = None,
                         http_port: int | None = None, **kwargs: Any) -> ModelClient:
    """A client for ``settings.triton`` (ports may be overridden, e.g. by the stack's free ports)."""
    port = (grpc_port or triton.grpc_port) if protocol == "grpc" else (http_port or triton.http_port)
    return ModelClient(url=f"{triton.host}:{port}", model_name=triton.model_name, protocol=protocol,
                       timeout_s=triton.timeout_s, **kwargs)


def shadow_client_from_settings(triton: TritonSettings, **kwargs: Any) -> ModelClient:
    """A gRPC client for the shadow scorer: ``triton.shadow_address`` / ``triton.shadow_name`` (locally the stack's
    Triton and its ``<model>-shadow`` model; in a cluster the canary InferenceService)."""
    return ModelClient(url=triton.shadow_address, model_name=triton.shadow_name, protocol="grpc",
                       timeout_s=triton.timeout_s, **kwargs)


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"
