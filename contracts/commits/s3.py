"""The lake bucket on S3 (versioned): the committer's ObjectStore."""

from __future__ import annotations

from collections.abc import Iterator

from botocore.exceptions import ClientError

from contracts import aws
from contracts.commits.errors import CommitError, ObjectNotFound, error_code
from contracts.commits.model import ObjectStat


class S3ObjectStore:
    """The versioned lake bucket: purging lists every version and delete marker and deletes them."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def put(self, key: str, data: bytes) -> None:
        aws.client("s3").put_object(Bucket=self.bucket, Key=key, Body=data)

    def stat(self, key: str) -> ObjectStat | None:
        try:
            head = aws.client("s3").head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectStat(int(head["ContentLength"]), head["LastModified"].timestamp())

    def copy(self, src: str, dst: str) -> None:
        """Server-side copy (objects up to 5 GB; lake files are at most 512 MB by contract)."""
        try:
            aws.client("s3").copy_object(Bucket=self.bucket, Key=dst, CopySource={"Bucket": self.bucket, "Key": src})
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise ObjectNotFound(src) from exc
            raise

    def purge(self, key: str) -> int:
        return self.delete_versions(list(self.versions(key, exact=True)))

    def purge_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise ValueError(f"prefix {prefix!r} must end with '/'")
        return self.delete_versions(list(self.versions(prefix)))

    def versions(self, prefix: str, *, exact: bool = False) -> Iterator[tuple[str, str]]:
        """(key, version id) of every version and delete marker under `prefix` (or of exactly that key)."""
        pages = aws.client("s3").get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                if not exact or v["Key"] == prefix:
                    yield v["Key"], v["VersionId"]

    def delete_versions(self, versions: list[tuple[str, str]]) -> int:
        """Delete exactly these (key, version id) pairs, 1000 a request; any refusal raises."""
        s3 = aws.client("s3")
        for i in range(0, len(versions), 1000):
            batch = [{"Key": k, "VersionId": v} for k, v in versions[i : i + 1000]]
            resp = s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            errors = resp.get("Errors", [])
            if errors:
                found = [(e.get("Code"), e.get("Message")) for e in errors[:3]]
                raise CommitError(f"s3://{self.bucket}: {len(errors)} versions could not be deleted: {found}")
        return len(versions)
