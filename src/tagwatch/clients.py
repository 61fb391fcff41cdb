"""Clients for the platform's shared services, built from settings in one place.

Call ``tagwatch.stack.state.with_stack_endpoints(settings)`` first (the CLI does) so that unset endpoints
point at the embedded stack.
"""

from __future__ import annotations

from typing import Any

from tagwatch.errors import ConfigError
from tagwatch.settings import KafkaSettings, S3Settings


def s3_client(s3: S3Settings) -> Any:
    """A boto3 S3 client with timeouts and retries from settings (path-style addressing for SeaweedFS/MinIO)."""
    import boto3
    from botocore.config import Config

    if not s3.endpoint_url:
        raise ConfigError("no S3 endpoint configured", hint="set TAGWATCH_S3__ENDPOINT_URL or run `tagwatch stack up`")
    config = Config(
        connect_timeout=s3.connect_timeout_s,
        read_timeout=s3.read_timeout_s,
        retries={"max_attempts": s3.max_attempts, "mode": "standard"},
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        # the consumer fetches images and writes ledger records from two pools of 8 threads on one client
        max_pool_connections=32,
        # botocore >= 1.36 computes a CRC32 of every body it sends and verifies one on every body it reads.
        # tagwatch checks what matters itself (an image against its event's sha256, a model file against
        # metadata.json), so only when S3 requires it (1.4 -> 1.1 ms CPU per GET in isolation; within noise in
        # benchmarks/stream.py).
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name=s3.region,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key.get_secret_value(),
        config=config,
    )


def kafka_config(kafka: KafkaSettings, *, client_id: str) -> dict[str, Any]:
    """Keyword arguments common to every kafka-python client."""
    if not kafka.bootstrap_servers:
        raise ConfigError(
            "no Kafka bootstrap servers configured",
            hint="set TAGWATCH_KAFKA__BOOTSTRAP_SERVERS or run `tagwatch stack up`",
        )
    return {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "client_id": client_id,
        "request_timeout_ms": kafka.request_timeout_ms,
    }
