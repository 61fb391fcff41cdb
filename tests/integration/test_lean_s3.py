"""LeanS3 (the stream's image GETs and ledger PUTs without boto3's per-call machinery) against the real SeaweedFS:
the same bytes, the same answers and the same exception classes as boto3 gives for the same requests."""

from __future__ import annotations

import socket
import uuid

import pytest
from pydantic import SecretStr
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from tagwatch.clients import condition_failed, put_if_absent, put_if_match, s3_client
from tagwatch.errors import PoisonInputError
from tagwatch.lean_s3 import LeanS3
from tagwatch.moderation.deadletter import DeadLetterReason as R
from tagwatch.moderation.images import ImageLimits, fetch_image_bytes


@pytest.fixture
def clients(stack_settings):
    boto = s3_client(stack_settings.s3)
    bucket = stack_settings.s3.buckets.ledger
    return boto, LeanS3(stack_settings.s3, boto), bucket, f"lean-{uuid.uuid4().hex[:8]}/"


def test_get_matches_boto3_and_missing_key_is_the_modelled_error(clients) -> None:
    boto, lean, bucket, prefix = clients
    for key, body in ((f"{prefix}plain.jpg", b"\xff\xd8" + bytes(range(256)) * 40),
                      (f"{prefix}a dir/ünïcode + spaces (1).jpg", b"x" * 7)):
        boto.put_object(Bucket=bucket, Key=key, Body=body)
        got = lean.get_object(Bucket=bucket, Key=key)
        assert got["ContentLength"] == len(body) and got["Body"].read() == body
        got["Body"].close()
        assert got["ETag"] == boto.head_object(Bucket=bucket, Key=key)["ETag"]
    with pytest.raises(boto.exceptions.NoSuchKey) as missing:  # what registry/claims code catches
        lean.get_object(Bucket=bucket, Key=f"{prefix}absent.jpg")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_put_if_absent_and_if_match_through_the_shared_helpers(clients) -> None:
    boto, lean, bucket, prefix = clients
    key = f"{prefix}decisions/p1.json"
    assert put_if_absent(lean, bucket, key, b'{"first": true}') is True
    assert put_if_absent(lean, bucket, key, b'{"second": true}') is False  # the first record stands
    assert boto.get_object(Bucket=bucket, Key=key)["Body"].read() == b'{"first": true}'
    assert boto.head_object(Bucket=bucket, Key=key)["ContentType"] == "application/json"
    etag = boto.head_object(Bucket=bucket, Key=key)["ETag"]
    assert put_if_match(lean, bucket, key, b'{"third": true}', '"0123456789abcdef0123456789abcdef"') is False
    assert put_if_match(lean, bucket, key, b'{"third": true}', etag) is True
    assert boto.get_object(Bucket=bucket, Key=key)["Body"].read() == b'{"third": true}'


def test_other_calls_and_arguments_go_to_boto3(clients) -> None:
    boto, lean, bucket, prefix = clients
    boto.put_object(Bucket=bucket, Key=f"{prefix}r", Body=b"0123456789")
    assert lean.get_object(Bucket=bucket, Key=f"{prefix}r", Range="bytes=2-4")["Body"].read() == b"234"
    assert [o["Key"] for o in lean.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]] == [f"{prefix}r"]


def test_oversized_image_refused_and_the_pool_still_serves(clients) -> None:
    boto, lean, bucket, prefix = clients
    boto.put_object(Bucket=bucket, Key=f"{prefix}big.jpg", Body=b"b" * 300_000)
    boto.put_object(Bucket=bucket, Key=f"{prefix}small.jpg", Body=b"s" * 10)
    limits = ImageLimits(max_bytes=1000)
    for _ in range(3):  # the refused body is never read; its connection must not poison the next request
        with pytest.raises(PoisonInputError) as refused:
            fetch_image_bytes(lean, f"s3://{bucket}/{prefix}big.jpg", allowed_bucket=bucket, limits=limits)
        assert refused.value.reason == R.IMAGE_TOO_LARGE
        assert fetch_image_bytes(lean, f"s3://{bucket}/{prefix}small.jpg", allowed_bucket=bucket,
                                 limits=limits) == b"s" * 10
    with pytest.raises(PoisonInputError) as missing:
        fetch_image_bytes(lean, f"s3://{bucket}/{prefix}gone.jpg", allowed_bucket=bucket, limits=limits)
    assert missing.value.reason == R.IMAGE_MISSING


def test_wrong_secret_is_the_same_client_error_as_boto3s(stack_settings, clients) -> None:
    _, _, bucket, prefix = clients
    wrong = stack_settings.s3.model_copy(update={"secret_access_key": SecretStr("not-the-secret"), "max_attempts": 1})
    boto_wrong, lean_wrong = s3_client(wrong), LeanS3(wrong, s3_client(wrong))
    errors = []
    for client in (boto_wrong, lean_wrong):
        with pytest.raises(ClientError) as refused:
            client.put_object(Bucket=bucket, Key=f"{prefix}x.json", Body=b"{}", IfNoneMatch="*")
        errors.append((refused.value.response["Error"]["Code"],
                       refused.value.response["ResponseMetadata"]["HTTPStatusCode"]))
        assert "not-the-secret" not in str(refused.value)
        assert not condition_failed(refused.value)
    assert errors[0] == errors[1] and errors[1][1] == 403


def test_store_down_is_a_botocore_connection_error_after_the_retries(stack_settings) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = stack_settings.s3.model_copy(update={"endpoint_url": f"http://127.0.0.1:{port}", "max_attempts": 2,
                                                "connect_timeout_s": 1.0})
    lean = LeanS3(down, s3_client(down))
    with pytest.raises(EndpointConnectionError) as error:
        lean.get_object(Bucket="posts", Key="a.jpg")
    assert isinstance(error.value, BotoCoreError)  # classify_s3_error: retryable, never poison
