"""Lambda artifacts in the program: layers (and code) uploaded directly, or staged in S3 when over 50 MB.

Lambda takes a zip of at most 50 MB in the API call; a larger one must come from S3 (the unzipped
limit, 250 MB for code + layers, is checked by `etl build`). Staged keys are content-addressed
(`lambda/<name>/<sha256>.zip`), so a changed artifact is a new object and an unchanged one is no-op.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pulumi
import pulumi_aws as aws

DIRECT_UPLOAD_LIMIT = 50 * 1024 * 1024


class Artifact(Protocol):
    """A zip and its base64 SHA-256: infra.packaging.Archive and etl.build.LayerArtifact both are."""

    path: Path
    sha256_b64: str


@dataclass(frozen=True)
class Staged:
    """Where a staged zip lives: what LayerVersion/Function take instead of `code`."""

    s3_bucket: pulumi.Output[str]
    s3_key: pulumi.Output[str]
    object: aws.s3.BucketObjectv2


def staged_key(name: str, sha256_b64: str) -> str:
    return f"lambda/{name}/{base64.b64decode(sha256_b64).hex()}.zip"


def stage(name: str, artifact: Artifact, bucket: pulumi.Input[str],
          opts: pulumi.ResourceOptions | None = None) -> Staged:
    """Upload the zip to the bucket under a content-addressed key."""
    obj = aws.s3.BucketObjectv2(
        f"{name}-artifact",
        bucket=bucket,
        key=staged_key(name, artifact.sha256_b64),
        source=pulumi.FileAsset(str(artifact.path)),
        content_type="application/zip",
        opts=opts,
    )
    return Staged(s3_bucket=obj.bucket, s3_key=obj.key, object=obj)


def code_args(name: str, artifact: Artifact, bucket: pulumi.Input[str] | None,
              opts: pulumi.ResourceOptions | None = None,
              limit: int | None = None) -> tuple[dict[str, Any], list[pulumi.Resource]]:
    """`code=` for a zip within the direct-upload limit, else `s3_bucket=`/`s3_key=` of the staged copy
    (and the object to depend on). A zip over the limit without a bucket is an error that says so."""
    limit = limit or DIRECT_UPLOAD_LIMIT
    size = Path(artifact.path).stat().st_size
    if size <= limit:
        return {"code": pulumi.FileArchive(str(artifact.path))}, []
    if bucket is None:
        raise ValueError(
            f"{artifact.path.name} is {size / 1024 / 1024:.1f} MB zipped, over Lambda's direct upload limit "
            f"({limit / 1024 / 1024:.0f} MB): it must be staged in S3, pass an artifacts bucket"
        )
    staged = stage(name, artifact, bucket, opts)
    return {"s3_bucket": staged.s3_bucket, "s3_key": staged.s3_key}, [staged.object]


def layer_version(
    name: str,
    artifact: Artifact,
    *,
    layer_name: str,
    architectures: list[str],
    runtimes: tuple[str, ...] = ("python3.12",),
    bucket: pulumi.Input[str] | None = None,
    description: str | None = None,
    opts: pulumi.ResourceOptions | None = None,
) -> aws.lambda_.LayerVersion:
    """A layer version for the given runtimes/architectures; its ARN goes into a function's `layers`."""
    for arch in architectures:
        if arch not in ("arm64", "x86_64"):
            raise ValueError(f"layer architecture {arch!r} must be arm64 or x86_64")
    args, deps = code_args(name, artifact, bucket, opts)
    opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=deps)) if deps else opts
    return aws.lambda_.LayerVersion(
        name,
        layer_name=layer_name,
        compatible_runtimes=list(runtimes),
        compatible_architectures=list(architectures),
        source_code_hash=artifact.sha256_b64,
        description=description,
        opts=opts,
        **args,
    )
