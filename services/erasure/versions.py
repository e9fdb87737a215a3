"""Object versions: erasure deletes every old version of what it rewrites, not only the current one."""

from __future__ import annotations

from collections.abc import Iterator

from contracts import aws


def versions(bucket: str, prefix: str, *, exact: bool = False) -> Iterator[tuple[str, str]]:
    """(key, version id) of every version and delete marker under `prefix` (or of exactly that key)."""
    pages = aws.client("s3").get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            if not exact or v["Key"] == prefix:
                yield v["Key"], v["VersionId"]


def delete_versions(bucket: str, found: list[tuple[str, str]]) -> int:
    s3 = aws.client("s3")
    for i in range(0, len(found), 1000):
        batch = [{"Key": k, "VersionId": v} for k, v in found[i : i + 1000]]
        resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if resp.get("Errors"):
            errors = [(e.get("Code"), e.get("Message")) for e in resp["Errors"][:3]]
            raise RuntimeError(f"s3://{bucket}: {len(resp['Errors'])} versions could not be deleted: {errors}")
    return len(found)


def purge_key(bucket: str, key: str, *, keep: str | None = None) -> int:
    """Delete every version of `key` except `keep` (the version just written, if any)."""
    return delete_versions(bucket, [(k, v) for k, v in versions(bucket, key, exact=True) if v != keep])


def purge_prefix(bucket: str, prefix: str) -> int:
    if not prefix.endswith("/"):
        raise ValueError(f"prefix {prefix!r} must end with '/'")
    return delete_versions(bucket, list(versions(bucket, prefix)))
