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
    config: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "client_id": client_id,
        "request_timeout_ms": kafka.request_timeout_ms,
        "security_protocol": kafka.security_protocol,
    }
    sasl = kafka.security_protocol.startswith("SASL")
    if sasl and not (kafka.username and kafka.password):
        raise ConfigError(f"Kafka security_protocol {kafka.security_protocol} needs a username and a password",
                          hint="set TAGWATCH_KAFKA__USERNAME and TAGWATCH_KAFKA__PASSWORD (in a cluster: the "
                               "KafkaUser's Secret, key `password`)")
    if not sasl and (kafka.username or kafka.password):
        raise ConfigError(f"a Kafka username/password is set but security_protocol is {kafka.security_protocol}",
                          hint="set TAGWATCH_KAFKA__SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT), or unset them")
    if sasl:
        config.update(sasl_mechanism=kafka.sasl_mechanism, sasl_plain_username=kafka.username,
                      sasl_plain_password=kafka.password.get_secret_value() if kafka.password else None)
    if kafka.security_protocol.endswith("SSL") and kafka.ssl_cafile is not None:
        if not kafka.ssl_cafile.is_file():
            raise ConfigError(f"Kafka CA file {kafka.ssl_cafile} does not exist",
                              hint="mount Strimzi's <cluster>-cluster-ca-cert Secret (key ca.crt) there, or unset "
                                   "TAGWATCH_KAFKA__SSL_CAFILE to use the system CAs")
        config["ssl_cafile"] = str(kafka.ssl_cafile)
    return config


def condition_failed(error: Exception) -> bool:
    """True when an S3 error says a conditional write's If-None-Match / If-Match did not hold (412, or 409 and
    ConditionalRequestConflict as SeaweedFS answers a concurrent one)."""
    response = getattr(error, "response", None) or {}
    code = response.get("Error", {}).get("Code", "")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in {"PreconditionFailed", "412", "ConditionalRequestConflict"} or status in {409, 412}


def put_if_absent(client: Any, bucket: str, key: str, body: bytes, *, content_type: str = "application/json") -> bool:
    """PUT with ``If-None-Match: *``: True if this call created the object, False if it was already there.
    Other S3 errors propagate (botocore's ClientError / BotoCoreError)."""
    from botocore.exceptions import ClientError

    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*")
    except ClientError as error:
        if condition_failed(error):
            return False
        raise
    return True


def put_if_match(client: Any, bucket: str, key: str, body: bytes, etag: str, *,
                 content_type: str = "application/json") -> bool:
    """PUT with ``If-Match: <etag>``: True if the stored object was still that version and is now ``body``; False
    if another writer changed (or deleted) it first. Other S3 errors propagate."""
    from botocore.exceptions import ClientError

    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, IfMatch=etag)
    except ClientError as error:
        if condition_failed(error) or error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            return False
        raise
    return True
