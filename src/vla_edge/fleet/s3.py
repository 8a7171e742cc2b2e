"""Model files to S3 for model-only rollouts (the model-updater's ``source: s3``).

Layout: ``s3://BUCKET/PREFIX/NAME/VERSION/<files>`` with ``vla_edge_manifest.json`` beside
them, which is what the updater reads. The manifest goes up *last*: a device that reads it
early must not find a manifest whose files are still uploading. Files already there with
the same size and sha256 (object metadata ``sha256``) are skipped, so a retried upload
resumes rather than starting over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from vla_edge.fleet.aws import Aws
from vla_edge.fleet.errors import FleetError, NotFound
from vla_edge.models import MANIFEST_FILE
from vla_edge.updater.download import object_key
from vla_edge.updater.manifest import ModelManifest

log = logging.getLogger(__name__)

SINGLE_PUT_LIMIT = 4 * 1024**3
"""Above this (S3 takes at most 5 GiB in one PUT) a file goes up in parts."""
PART_SIZE = 64 * 1024**2


@dataclass(frozen=True)
class UploadedModel:
    bucket: str
    prefix: str
    uploaded: int
    skipped: int

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def model_prefix(prefix: str, manifest: ModelManifest) -> str:
    return object_key(prefix, f"{manifest.name}/{manifest.version}")


def upload_model(aws: Aws, directory: Path, manifest: ModelManifest, bucket: str, prefix: str) -> UploadedModel:
    """Upload the manifest's files from ``directory``, then the manifest itself."""
    if "/" in bucket or bucket.startswith("s3:"):
        raise FleetError(f"--bucket {bucket!r} must be a bucket name only; put the key path in --prefix")
    s3 = aws.client("s3")
    key_prefix = model_prefix(prefix, manifest)
    uploaded = skipped = 0
    for relative, entry in sorted(manifest.files.items()):
        path = directory / relative
        key = object_key(key_prefix, relative)
        if _already_there(aws, bucket, key, entry.size, entry.sha256):
            skipped += 1
            continue
        _put_file(aws, path, bucket, key, entry.size, entry.sha256)
        uploaded += 1
    s3.put_object(Bucket=bucket, Key=object_key(key_prefix, MANIFEST_FILE), Body=manifest.to_json_bytes(),
                  ContentType="application/json")
    log.info("model %s %s in s3://%s/%s (%d files uploaded, %d already there)", manifest.name, manifest.version,
             bucket, key_prefix, uploaded, skipped)
    return UploadedModel(bucket, key_prefix, uploaded, skipped)


def _already_there(aws: Aws, bucket: str, key: str, size: int, sha256: str) -> bool:
    if aws.dry_run:
        return False
    try:
        head = aws.client("s3").head_object(Bucket=bucket, Key=key)
    except NotFound:
        return False
    return int(head.get("ContentLength", -1)) == size and head.get("Metadata", {}).get("sha256") == sha256


def _put_file(aws: Aws, path: Path, bucket: str, key: str, size: int, sha256: str) -> None:
    s3 = aws.client("s3")
    if size <= SINGLE_PUT_LIMIT:
        with path.open("rb") as body:
            s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"sha256": sha256})
        return
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata={"sha256": sha256})["UploadId"]
    parts = []
    try:
        with path.open("rb") as body:
            number = 1
            while chunk := body.read(PART_SIZE):
                etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk)["ETag"]
                parts.append({"ETag": etag, "PartNumber": number})
                number += 1
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
