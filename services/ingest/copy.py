"""Server-side copy of a landing object into the raw bucket (multipart above 5 GB via s3transfer)."""

from __future__ import annotations

from typing import Any

from boto3.s3.transfer import TransferConfig

from services.ingest.landing import LandedObject

# Above this, s3transfer switches to multipart UploadPartCopy (CopyObject stops at 5 GB).
MULTIPART_THRESHOLD = 1024**3
_TRANSFER = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=256 * 1024**2)


def copy_to_raw(s3: Any, obj: LandedObject, raw_bucket: str, raw_key: str, metadata: dict[str, str]) -> None:
    """Copy bytes and content type with `metadata` (the producer's plus lineage, checked against S3's limit)."""
    source = {"Bucket": obj.bucket, "Key": obj.key}
    if obj.version:
        source["VersionId"] = obj.version
    extra: dict[str, Any] = {"Metadata": metadata, "MetadataDirective": "REPLACE"}
    if obj.content_type:
        extra["ContentType"] = obj.content_type
    s3.copy(source, raw_bucket, raw_key, ExtraArgs=extra, Config=_TRANSFER)
