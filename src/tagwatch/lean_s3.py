"""A lean S3 client for the stream's two hot calls: GET a post's image, PUT a ledger record if absent.

boto3 spends about a millisecond of CPU per call on its own machinery (event hooks, parameter validation, the
service model, response parsing), more than SeaweedFS spends serving a small object and as much as hashing and
decoding the image. ``LeanS3`` signs with botocore's own SigV4 signer and sends over a urllib3 connection pool:
0.5 ms per GET or conditional PUT instead of 1.1-1.3 (``benchmarks/stream.py``, stages ``fetch`` and ``ledger``).

It answers ``get_object(Bucket=, Key=)`` and ``put_object(Bucket=, Key=, Body=, ContentType=, IfNoneMatch=,
IfMatch=)`` as boto3 does (the same response keys callers read, the same ``ClientError`` / ``BotoCoreError``
exceptions, so ``classify_s3_error`` and ``condition_failed`` see no difference) and hands every other call, or
any other argument, to the boto3 client it wraps. Retries: connection errors, timeouts, 429 and 5xx, up to
``S3Settings.max_attempts`` with capped exponential backoff and jitter (boto3's ``standard`` mode does the same).
"""

from __future__ import annotations

import random
import re
import time
from typing import Any
from urllib.parse import quote

from tagwatch.settings import S3Settings

_RETRY_STATUS = {429, 500, 502, 503, 504}
_GET_ARGS = {"Bucket", "Key"}
_PUT_ARGS = {"Bucket", "Key", "Body", "ContentType", "IfNoneMatch", "IfMatch"}
_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]{0,300})</Message>")


class LeanS3:
    """``get_object`` and ``put_object`` over SigV4 + urllib3; everything else goes to ``fallback`` (boto3)."""

    def __init__(self, s3: S3Settings, fallback: Any) -> None:
        import urllib3
        from botocore.auth import S3SigV4Auth
        from botocore.credentials import Credentials

        self.fallback = fallback
        self.endpoint = str(s3.endpoint_url).rstrip("/")
        self.max_attempts = max(1, s3.max_attempts)
        self._signer = S3SigV4Auth(Credentials(s3.access_key_id, s3.secret_access_key.get_secret_value()), "s3",
                                   s3.region)
        self._http = urllib3.PoolManager(
            maxsize=32, block=False, retries=False,
            timeout=urllib3.Timeout(connect=s3.connect_timeout_s, read=s3.read_timeout_s))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fallback, name)

    def get_object(self, **kwargs: Any) -> dict:
        if set(kwargs) - _GET_ARGS:
            return self.fallback.get_object(**kwargs)
        response = self._send("GET", kwargs["Bucket"], kwargs["Key"], b"", {}, "GetObject", stream=True)
        return {"Body": _Body(response), "ContentLength": int(response.headers.get("Content-Length") or 0),
                "ContentType": response.headers.get("Content-Type", ""), "ETag": response.headers.get("ETag", ""),
                "ResponseMetadata": {"HTTPStatusCode": response.status}}

    def put_object(self, **kwargs: Any) -> dict:
        if set(kwargs) - _PUT_ARGS or not isinstance(kwargs.get("Body", b""), bytes):
            return self.fallback.put_object(**kwargs)
        headers = {"Content-Type": kwargs.get("ContentType", "binary/octet-stream")}
        if "IfNoneMatch" in kwargs:
            headers["If-None-Match"] = kwargs["IfNoneMatch"]
        if "IfMatch" in kwargs:
            headers["If-Match"] = kwargs["IfMatch"]
        response = self._send("PUT", kwargs["Bucket"], kwargs["Key"], kwargs.get("Body", b""), headers, "PutObject")
        return {"ETag": response.headers.get("ETag", ""), "ResponseMetadata": {"HTTPStatusCode": response.status}}

    def _send(self, method: str, bucket: str, key: str, body: bytes, headers: dict, operation: str, *,
              stream: bool = False):
        """One signed request, retried on transient trouble; ClientError for an S3 error answer."""
        import urllib3
        from botocore.awsrequest import AWSRequest

        url = f"{self.endpoint}/{bucket}/{quote(key, safe='/~')}"
        for attempt in range(1, self.max_attempts + 1):
            request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
            self._signer.add_auth(request)  # signed per attempt: the signature carries the time
            try:
                response = self._http.request(method, url, body=None if method == "GET" else body,
                                              headers=dict(request.headers.items()), preload_content=not stream,
                                              redirect=False)
            except urllib3.exceptions.HTTPError as error:
                if attempt == self.max_attempts:
                    raise _botocore_error(error, self.endpoint) from None
                self._backoff(attempt)
                continue
            if response.status < 300:
                return response
            data = response.read() if stream else response.data
            response.release_conn()
            if response.status in _RETRY_STATUS and attempt < self.max_attempts:
                self._backoff(attempt)
                continue
            error = _error_response(response.status, data, dict(response.headers))
            # boto3's modelled class for the code (``client.exceptions.NoSuchKey`` ...), as boto3 itself raises
            raise self.fallback.exceptions.from_code(error["Error"]["Code"])(error, operation)
        raise AssertionError("unreachable")  # the last attempt returns or raises

    @staticmethod
    def _backoff(attempt: int) -> None:
        time.sleep(random.uniform(0, min(5.0, 0.05 * 2**attempt)))


def _botocore_error(error: Exception, endpoint: str) -> Exception:
    """The botocore exception boto3 raises for the same transport failure."""
    import urllib3
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

    # NewConnectionError (refused, unreachable) subclasses ConnectTimeoutError in urllib3 2: test it first
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        return EndpointConnectionError(endpoint_url=endpoint)
    if isinstance(error, urllib3.exceptions.ConnectTimeoutError):
        return ConnectTimeoutError(endpoint_url=endpoint)
    if isinstance(error, urllib3.exceptions.ReadTimeoutError):
        return ReadTimeoutError(endpoint_url=endpoint)
    return EndpointConnectionError(endpoint_url=endpoint)


def _error_response(status: int, data: bytes, headers: dict) -> dict:
    """boto3's shape of an error answer: the S3 error code from the XML body (or the status when there is none)."""
    code = _CODE.search(data or b"")
    message = _MESSAGE.search(data or b"")
    return {"Error": {"Code": code.group(1).decode() if code else str(status),
                      "Message": message.group(1).decode(errors="replace") if message else ""},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers}}


class _Body:
    """The streaming body of a GET (``read`` as boto3's StreamingBody; ``close`` gives the connection back, or
    drops it when the body was not read to the end)."""

    def __init__(self, response) -> None:
        self._response = response

    def read(self, amt: int | None = None) -> bytes:
        import urllib3
        from botocore.exceptions import ResponseStreamingError

        try:
            return self._response.read(amt)
        except urllib3.exceptions.HTTPError as error:
            raise ResponseStreamingError(error=type(error).__name__) from None

    def close(self) -> None:
        if self._response.length_remaining:  # a refused oversized body: do not read the rest to reuse the socket
            self._response.close()
        self._response.release_conn()

