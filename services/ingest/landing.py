"""Reading the landing object an S3 'Object Created' event points at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError


@dataclass(frozen=True)
class LandedObject:
    bucket: str
    key: str
    version: str | None
    etag: str
    size: int
    content_type: str | None
    metadata: dict[str, str]
    event_time: str

    @property
    def version_or_etag(self) -> str:
        return self.version or self.etag


def event_reference(envelope: dict[str, Any]) -> dict[str, Any]:
    """The fields of an S3 EventBridge event that identify the object version (idempotency key)."""
    detail = envelope["detail"]
    obj = detail["object"]
    version = obj.get("version-id")
    return {
        "bucket": detail["bucket"]["name"],
        "key": obj["key"],
        "version": None if version in (None, "", "null") else version,
        "etag": obj.get("etag") or obj.get("eTag") or "",
        "time": envelope.get("time", ""),
    }


def _head(s3: Any, bucket: str, key: str, version: str | None) -> dict[str, Any] | None:
    kwargs = {"Bucket": bucket, "Key": key}
    if version:
        kwargs["VersionId"] = version
    try:
        return s3.head_object(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("404", "NoSuchKey", "NotFound", "NoSuchVersion"):
            return None
        if version and code in ("400", "InvalidArgument"):  # a version id S3 does not know (malformed)
            return None
        raise


def resolve(s3: Any, ref: dict[str, Any]) -> LandedObject | None:
    """Find the object: keys arrive raw from EventBridge but form-encoded from S3 notifications.

    The key is tried as given first, then form-decoded ('+' → space, %XX); a literal '+' thus
    survives. None when the object (version) no longer exists: S3 reads are strongly consistent, so
    no retry would find it — the caller rejects it with that reason.
    """
    candidates = [ref["key"]]
    decoded = unquote_plus(ref["key"])
    if decoded != ref["key"]:
        candidates.append(decoded)
    for key in candidates:
        head = _head(s3, ref["bucket"], key, ref["version"])
        if head is not None:
            return LandedObject(
                bucket=ref["bucket"],
                key=key,
                version=ref["version"],
                etag=head.get("ETag", ref["etag"]).strip('"'),
                size=int(head["ContentLength"]),
                content_type=head.get("ContentType"),
                metadata=dict(head.get("Metadata", {})),
                event_time=ref["time"],
            )
    return None
