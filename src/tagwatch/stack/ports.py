"""Ports of the embedded stack: the fixed set from settings, or free ones picked for tests."""

from __future__ import annotations

import socket
from contextlib import closing

from pydantic import BaseModel, ConfigDict

from tagwatch.errors import PortInUseError
from tagwatch.settings import StackSettings, TritonSettings

# SeaweedFS's own convention: a component's gRPC port is its HTTP port + 10000.
GRPC_OFFSET = 10000


class StackPorts(BaseModel):
    model_config = ConfigDict(frozen=True)

    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    admin: int
    admin_grpc: int
    kafka: int
    # Triton's (serving); None in state files written before Triton joined the stack: settings.triton then.
    triton_http: int | None = None
    triton_grpc: int | None = None
    triton_metrics: int | None = None

    @classmethod
    def from_settings(cls, stack: StackSettings, triton: TritonSettings | None = None) -> StackPorts:
        http = {
            "s3": stack.s3_port,
            "master": stack.seaweed_master_port,
            "volume": stack.seaweed_volume_port,
            "filer": stack.seaweed_filer_port,
            "admin": stack.seaweed_admin_port,
        }
        grpc = {f"{name}_grpc": port + GRPC_OFFSET for name, port in http.items()}
        triton = triton or TritonSettings()
        return cls(**http, **grpc, kafka=stack.kafka_port, triton_http=triton.http_port,
                   triton_grpc=triton.grpc_port, triton_metrics=triton.metrics_port)

    @classmethod
    def pick_free(cls, host: str) -> StackPorts:
        ports = pick_free_ports(host, len(cls.model_fields))
        return cls(**dict(zip(cls.model_fields, ports, strict=True)))

    def seaweedfs(self) -> dict[str, int]:
        return {name: port for name, port in self.model_dump().items()
                if name != "kafka" and not name.startswith("triton_")}


# Which setting to change when a port is taken; grpc ports follow their HTTP port.
_SETTING_FOR = {
    "s3": "stack.s3_port",
    "master": "stack.seaweed_master_port",
    "volume": "stack.seaweed_volume_port",
    "filer": "stack.seaweed_filer_port",
    "admin": "stack.seaweed_admin_port",
    "kafka": "stack.kafka_port",
    "triton_http": "triton.http_port",
    "triton_grpc": "triton.grpc_port",
    "triton_metrics": "triton.metrics_port",
}


def is_port_free(host: str, port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def pick_free_ports(host: str, count: int) -> list[int]:
    """Ask the kernel for ``count`` distinct free ports (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        ports = [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()
    # Keep grpc = http + 10000 collisions impossible: the kernel already gave distinct ports.
    return ports


def ensure_ports_free(host: str, ports: dict[str, int], service: str) -> None:
    """Raise PortInUseError naming the first port that another process holds."""
    for name, port in ports.items():
        if not is_port_free(host, port):
            base = name if name.startswith("triton_") else name.removesuffix("_grpc")
            setting = _SETTING_FOR.get(base, "stack.*_port")
            env = "TAGWATCH_" + setting.upper().replace(".", "__")
            raise PortInUseError(
                f"{service} cannot bind {host}:{port} ({name} port): it is already in use",
                hint=f"stop what holds it (`ss -ltnp 'sport = :{port}'`), set {env}, or use `tagwatch stack up --free-ports`",
            )
