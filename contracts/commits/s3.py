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
        return self._delete([v for v in self._versions(key) if v[0] == key])

    def purge_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise ValueError(f"prefix {prefix!r} must end with '/'")
        return self._delete(list(self._versions(prefix)))

    def _versions(self, prefix: str) -> Iterator[tuple[str, str]]:
        pages = aws.client("s3").get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                yield v["Key"], v["VersionId"]

    def _delete(self, versions: list[tuple[str, str]]) -> int:
        s3 = aws.client("s3")
        for i in range(0, len(versions), 1000):
            batch = [{"Key": k, "VersionId": v} for k, v in versions[i : i + 1000]]
            resp = s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            errors = resp.get("Errors", [])
            if errors:
                raise CommitError(f"s3://{self.bucket}: could not delete {len(errors)} versions: {errors[:3]}")
        return len(versions)
