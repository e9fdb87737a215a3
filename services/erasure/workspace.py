"""JSON documents of runs and certificates in the erasure bucket.

`runs/<run id>/…` holds a run's plan, checkpoints and task results (lineage: object ids and line
numbers of erased rows, never values); the run deletes it when it ends (lifecycle expiry is the
backstop). `certificates/<request id>.json|.md` are kept.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from contracts import aws


class Workspace:
    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def put_json(self, key: str, data: Any) -> None:
        body = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        aws.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def put_text(self, key: str, text: str, content_type: str) -> None:
        aws.client("s3").put_object(Bucket=self.bucket, Key=key, Body=text.encode(), ContentType=content_type)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return aws.client("s3").get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    def get_json(self, key: str) -> Any:
        data = self.get_bytes(key)
        return None if data is None else json.loads(data)

    def keys(self, prefix: str) -> list[str]:
        out = []
        for page in aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def delete_prefix(self, prefix: str) -> int:
        """Delete every version under the prefix (the bucket is unversioned; versions are listed anyway)."""
        s3 = aws.client("s3")
        found = []
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
            found += [{"Key": v["Key"], "VersionId": v["VersionId"]}
                      for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        for i in range(0, len(found), 1000):
            s3.delete_objects(Bucket=self.bucket, Delete={"Objects": found[i : i + 1000], "Quiet": True})
        return len(found)


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}/"


def certificate_key(request_id: str, ext: str) -> str:
    return f"certificates/{request_id}.{ext}"
