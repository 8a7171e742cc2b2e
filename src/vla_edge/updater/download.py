"""Model files from S3: resumable ranged GETs through a boto3 client the caller makes.

The client is passed in. On a device it is a plain ``boto3.client("s3")``: the
Greengrass token exchange service exposes the device role's credentials through the
standard container-credentials provider (``AWS_CONTAINER_CREDENTIALS_FULL_URI``), which
boto3 finds on its own. In tests it points at a local moto server.

botocore's own retries (its ``retries`` config) act on each request; the retries here
act on top of them, per byte range, and survive a connection that drops mid-body. Every
botocore error is converted here, at the boundary, into DownloadError (or
VerificationError when the object is not the size the manifest says), with the cause
kept by ``raise ... from``.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError as BotoConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ResponseStreamingError,
)
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from vla_edge.errors import DownloadError, ManifestError, VerificationError
from vla_edge.updater.manifest import MAX_MANIFEST_BYTES, ModelManifest
from vla_edge.updater.transfer import (
    MiB,
    DiskUsageFn,
    ProgressFn,
    StagedTransfer,
    TransferSettings,
    TransientError,
)

log = logging.getLogger(__name__)

_TRANSIENT_BOTO = (BotoConnectionError, HTTPClientError, IncompleteReadError, ResponseStreamingError)
_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling",
                    "RequestTimeTooSkewed"}
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def object_key(prefix: str, relative: str) -> str:
    """The S3 key of a model file: ``prefix/relative`` (the prefix's trailing slash optional)."""
    prefix = prefix.strip("/")
    return f"{prefix}/{relative}" if prefix else relative


class S3ModelSource:
    """Fetches models published as ``s3://bucket/prefix/<file>`` beside their manifest."""

    def __init__(
        self,
        client: Any,
        chunk_size: int = 8 * MiB,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        space_margin_bytes: int = 64 * MiB,
        disk_usage: DiskUsageFn = shutil.disk_usage,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.settings = TransferSettings(chunk_size, max_attempts, backoff_s, backoff_max_s, space_margin_bytes)
        self._disk_usage = disk_usage
        self._clock = clock
        self._sleep = sleep

    def fetch(
        self,
        bucket: str,
        prefix: str,
        manifest: ModelManifest,
        staging_dir: Path,
        progress: ProgressFn | None = None,
        max_bytes_per_s: float | None = None,
    ) -> Path:
        """Download (or resume) every file of ``manifest`` into ``staging_dir``; see :mod:`.transfer`.

        Returns ``staging_dir`` once every file has its manifest size and sha256; hand it to
        :meth:`ModelStore.install`. On failure the verified files and the ``.part`` files stay,
        so the next call resumes.
        """
        reader = _S3Reader(self.client, bucket, prefix)
        transfer = StagedTransfer(reader, self.settings, self._disk_usage, self._clock, self._sleep)
        return transfer.run(manifest, staging_dir, progress, max_bytes_per_s)

    def fetch_manifest(self, bucket: str, key: str) -> ModelManifest:
        """Read and validate the manifest at ``s3://bucket/key`` (retrying transient failures)."""
        where = f"s3://{bucket}/{key}"
        failures = 0
        while True:
            try:
                response = _get_object(self.client, bucket, key)
                data = _read_body(response["Body"], MAX_MANIFEST_BYTES + 1, where)
                break
            except TransientError as exc:
                failures += 1
                if failures >= self.settings.max_attempts:
                    raise DownloadError(
                        f"gave up reading the manifest {where} after {failures} attempts ({exc}); check the network "
                        "and that the device may read the bucket (s3:GetObject)"
                    ) from exc
                self._sleep(min(self.settings.backoff_max_s, self.settings.backoff_s * 2 ** (failures - 1)))
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{where} is larger than any manifest; check the key")
        return ModelManifest.from_json_bytes(data, source=where)


class _S3Reader:
    """The RangeReader of :mod:`.transfer` over S3 GetObject with a Range header."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def describe(self, relative: str) -> str:
        return f"s3://{self.bucket}/{object_key(self.prefix, relative)}"

    def read_range(self, relative: str, start: int, end: int, size: int, piece: int) -> Iterator[bytes]:
        key = object_key(self.prefix, relative)
        where = self.describe(relative)
        response = _get_object(self.client, self.bucket, key, size=size, Range=f"bytes={start}-{end - 1}")
        body = response["Body"]
        try:
            total = _object_size(response)
            if total is not None and total != size:
                state = "longer" if total > size else "shorter"
                raise VerificationError(
                    f"{where} is {total} bytes, {state} than the manifest's {size}: the object was replaced or "
                    "truncated after the manifest was written; upload the model and its manifest together"
                )
            remaining = end - start
            while remaining > 0:
                data = _read(body, min(piece, remaining), where)
                if not data:
                    raise TransientError(f"{where}: the connection ended {remaining} bytes before the range's end")
                remaining -= len(data)
                yield data
        finally:
            body.close()


def _object_size(response: dict[str, Any]) -> int | None:
    """The whole object's size from ``Content-Range: bytes a-b/total`` (None when the server omits it)."""
    match = _CONTENT_RANGE.match(response.get("ContentRange") or "")
    if match is None or match.group(3) == "*":
        return None
    return int(match.group(3))


def _read(body: Any, amount: int, where: str) -> bytes:
    try:
        return body.read(amount)
    except (*_TRANSIENT_BOTO, Urllib3HTTPError, OSError) as exc:
        raise TransientError(f"{where}: reading the response failed: {type(exc).__name__}: {exc}") from exc


def _read_body(body: Any, limit: int, where: str) -> bytes:
    try:
        chunks, size = [], 0
        while size < limit:
            data = _read(body, min(1 * MiB, limit - size), where)
            if not data:
                break
            chunks.append(data)
            size += len(data)
        return b"".join(chunks)
    finally:
        body.close()


def _get_object(client: Any, bucket: str, key: str, size: int | None = None, **extra: str) -> dict[str, Any]:
    """One GetObject, with botocore's exceptions turned into ours (``size``: the manifest's, for messages)."""
    where = f"s3://{bucket}/{key}"
    try:
        return client.get_object(Bucket=bucket, Key=key, **extra)
    except ClientError as exc:
        raise _client_error(exc, bucket, key, size) from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise DownloadError(
            f"no AWS credentials to read {where}: on a device, give the component a dependency on "
            "aws.greengrass.TokenExchangeService and the device role s3:GetObject; elsewhere configure credentials"
        ) from exc
    except (*_TRANSIENT_BOTO, Urllib3HTTPError, OSError) as exc:
        raise TransientError(f"{where}: {type(exc).__name__}: {exc}") from exc
    except BotoCoreError as exc:
        raise DownloadError(f"cannot read {where}: {exc}") from exc


def _client_error(exc: ClientError, bucket: str, key: str, size: int | None) -> Exception:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    where = f"s3://{bucket}/{key}"
    if code == "NoSuchBucket":
        return DownloadError(f"bucket {bucket} does not exist (NoSuchBucket); check the bucket name and region")
    if code in ("NoSuchKey", "404", "NotFound") or status == 404:
        return DownloadError(
            f"{where} does not exist ({code or status}); check the bucket and prefix, and that the model was uploaded"
        )
    if code in ("AccessDenied", "403", "Forbidden") or status == 403:
        return DownloadError(
            f"access to {where} denied ({code}); the device role needs s3:GetObject on "
            f"arn:aws:s3:::{bucket}/{key.rsplit('/', 1)[0]}/*"
        )
    if code == "InvalidRange" or status == 416:
        return VerificationError(
            f"{where} is shorter than the manifest's {size} bytes (the range asked for is past its end): the object "
            "was truncated or replaced; upload the model and its manifest together"
        )
    if code in _TRANSIENT_CODES or status >= 500:
        return TransientError(f"{where}: {code or status}: {error.get('Message', '')}")
    return DownloadError(f"cannot read {where}: {code or status}: {error.get('Message', '')}")
