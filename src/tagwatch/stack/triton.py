"""Triton in the embedded stack: `python -m tagwatch.serving.server` serving the registry's `production` alias.

Optional: `tagwatch stack up` starts it only when the registry has a `production` alias (run `stack up` again
after the first promote). Later alias moves need no restart: the server hot-swaps (tagwatch.serving.runner).
Health = Triton live + model ready, asked over HTTP with tritonclient (HTTP, not gRPC, so this module stays
importable beside kserve).
"""

from __future__ import annotations

import logging
import sys
from importlib import metadata
from pathlib import Path

from tagwatch.settings import settings_env
from tagwatch.stack.service import EmbeddedService, resolve_binary

log = logging.getLogger(__name__)
ALIAS = "production"


def _bundled_tritonserver() -> list[Path]:
    try:
        import pytriton
    except ImportError:
        return []
    return [Path(pytriton.__file__).parent / "tritonserver" / "bin" / "tritonserver"]


class TritonService(EmbeddedService):
    name = "triton"
    runs_model = True
    optional = True

    @property
    def http_port(self) -> int:
        return self.ports.triton_http or self.settings.triton.http_port

    @property
    def grpc_port(self) -> int:
        return self.ports.triton_grpc or self.settings.triton.grpc_port

    @property
    def metrics_port(self) -> int:
        return self.ports.triton_metrics or self.settings.triton.metrics_port

    def binary(self) -> Path:
        return resolve_binary(
            None, name="tritonserver", package_hint="pip install nvidia-pytriton==0.7.0",
            setting="the serve extra", fallbacks=_bundled_tritonserver(),
        )

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "tagwatch.serving.server", "--ref", ALIAS,
            "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
            "--metrics-port", str(self.metrics_port),
        ]

    def env(self) -> dict[str, str]:
        # The server's own Settings are this stack's, every value via env (the secret too, never argv), with the
        # S3 endpoint resolved to this stack's when none is configured.
        s3 = self.settings.s3
        endpoint = s3.endpoint_url or f"http://{self.host}:{self.ports.s3}"
        return settings_env(self.settings.model_copy(update={"s3": s3.model_copy(update={"endpoint_url": endpoint})}))

    def bound_ports(self) -> dict[str, int]:
        return {"triton_http": self.http_port, "triton_grpc": self.grpc_port, "triton_metrics": self.metrics_port}

    def endpoint(self) -> str:
        return f"grpc://{self.settings.triton.host}:{self.grpc_port} http://{self.settings.triton.host}:{self.http_port}"

    def skip_reason(self) -> str | None:
        from tagwatch.registry import ModelRegistry
        from tagwatch.clients import s3_client

        s3 = self.settings.s3
        if not s3.endpoint_url:
            s3 = s3.model_copy(update={"endpoint_url": f"http://{self.host}:{self.ports.s3}"})
        registry = ModelRegistry(s3_client(s3), bucket=s3.buckets.models, model_name=self.settings.triton.model_name)
        try:
            if registry.read_alias(ALIAS) is None:
                return (f"no `{ALIAS}` model for {self.settings.triton.model_name} yet "
                        "(register and promote one, then run `tagwatch stack up` again)")
        except Exception as error:  # S3 unreachable or denied: say so, do not fail the rest of the stack
            return f"cannot read the model registry ({type(error).__name__})"
        return None

    def is_healthy(self) -> bool:
        import tritonclient.http as httpclient

        try:
            client = httpclient.InferenceServerClient(
                # a busy server on its one CPU (stack/cpus.py) beside a loaded machine answered a 1-2 s probe too
                # late twice in clean-clone runs; `up` polls this until its start timeout either way
                url=f"{self.settings.triton.host}:{self.http_port}", connection_timeout=2.0, network_timeout=5.0
            )
        except Exception:  # bad address: not healthy
            return False
        try:
            return bool(client.is_server_ready() and client.is_model_ready(self.settings.triton.model_name))
        except Exception as error:  # refused / reset while starting
            log.debug("triton not healthy yet: %s", type(error).__name__)
            return False
        finally:
            client.close()

    def after_stop(self) -> None:
        from tagwatch.serving.workspace import remove_workspace, served_file

        remove_workspace(self.settings)  # gone already after a clean stop; left behind by a SIGKILL
        served_file(self.settings).unlink(missing_ok=True)

    def version(self) -> str:
        try:
            return f"pytriton {metadata.version('nvidia-pytriton')}"
        except metadata.PackageNotFoundError:
            return "unknown"
