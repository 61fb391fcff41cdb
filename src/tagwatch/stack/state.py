"""The stack's state file (``<state_dir>/stack.json``): ports, PIDs, versions, endpoints.

It is how `down`, `status` and every other tagwatch process find the running stack, including one started on
free ports. Written atomically (temp file + rename), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from tagwatch.errors import ConfigError
from tagwatch.settings import Settings
from tagwatch.stack.ports import StackPorts
from tagwatch.stack.process import ProcessRecord

STATE_SCHEMA_VERSION = 1


class ServiceState(BaseModel):
    name: str
    process: ProcessRecord
    version: str
    started_at: datetime
    endpoint: str
    cpus: list[int] | None = None  # the CPUs it was pinned to (stack/cpus.py); None: all of them


class StackState(BaseModel):
    schema_version: int = STATE_SCHEMA_VERSION
    host: str
    ports: StackPorts
    services: dict[str, ServiceState] = Field(default_factory=dict)
    updated_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    def s3_endpoint(self) -> str:
        return f"http://{self.host}:{self.ports.s3}"

    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.ports.kafka}"


def read_state(path: Path) -> StackState | None:
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    try:
        state = StackState.model_validate(json.loads(raw))
    except (ValueError, TypeError) as error:
        raise ConfigError(
            f"stack state file {path} is unreadable ({type(error).__name__})",
            hint="if no stack is running, delete it; else stop the processes it named by hand",
        ) from error
    return state


def write_state(path: Path, state: StackState) -> None:
    state = state.model_copy(update={"updated_at": datetime.now(timezone.utc)})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".stack.", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        handle.write(state.model_dump_json(indent=2))
    os.replace(tmp, path)


def with_stack_endpoints(settings: Settings) -> Settings:
    """Fill unset S3/Kafka endpoints from the embedded stack (its state file, else its configured ports), and
    point a loopback Triton at the stack's Triton ports when the stack runs one.

    Explicitly configured endpoints (a cluster's S3, a Strimzi Kafka) always win.
    """
    state = read_state(settings.paths.stack_file)
    triton = settings.triton
    if state is not None and "triton" in state.services and triton.host in ("127.0.0.1", "localhost"):
        # the stack's own Triton (possibly on free ports) is the local model server
        triton = triton.model_copy(update={
            "grpc_port": state.ports.triton_grpc or triton.grpc_port,
            "http_port": state.ports.triton_http or triton.http_port,
            "metrics_port": state.ports.triton_metrics or triton.metrics_port,
        })
    if settings.s3.endpoint_url and settings.kafka.bootstrap_servers:
        return settings.model_copy(update={"triton": triton})
    host = settings.stack.host
    ports = state.ports if state else StackPorts.from_settings(settings.stack, settings.triton)
    s3 = settings.s3.endpoint_url or f"http://{host}:{ports.s3}"
    kafka = settings.kafka.bootstrap_servers or f"{host}:{ports.kafka}"
    return settings.model_copy(
        update={
            "s3": settings.s3.model_copy(update={"endpoint_url": s3}),
            "kafka": settings.kafka.model_copy(update={"bootstrap_servers": kafka}),
            "triton": triton,
        }
    )
