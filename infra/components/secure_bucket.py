"""A private, encrypted, TLS-only S3 bucket with optional versioning and lifecycle rules."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws


def tls_only_policy(bucket_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


class SecureBucket(pulumi.ComponentResource):
    """Bucket + public access block + SSE + TLS-only policy (+ versioning, + lifecycle)."""

    def __init__(
        self,
        name: str,
        bucket_name: pulumi.Input[str],
        *,
        versioned: bool,
        lifecycle_rules: Sequence[aws.s3.BucketLifecycleConfigurationRuleArgs] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("etl:storage:SecureBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(name, bucket=bucket_name, force_destroy=False, opts=child)
        dep = pulumi.ResourceOptions(parent=self, depends_on=[self.bucket])
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=dep,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-sse",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    ),
                    bucket_key_enabled=True,
                )
            ],
            opts=dep,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=self.bucket.id,
            policy=self.bucket.arn.apply(tls_only_policy),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.public_access_block]),
        )
        if versioned:
            aws.s3.BucketVersioning(
                f"{name}-versioning",
                bucket=self.bucket.id,
                versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
                opts=dep,
            )
        if lifecycle_rules:
            aws.s3.BucketLifecycleConfiguration(
                f"{name}-lifecycle", bucket=self.bucket.id, rules=list(lifecycle_rules), opts=dep
            )
        self.register_outputs({"bucket": self.bucket.bucket, "arn": self.bucket.arn})


def expire_rule(
    rule_id: str, days: int, noncurrent_days: int | None = None
) -> aws.s3.BucketLifecycleConfigurationRuleArgs:
    """Expire current objects after `days` (and old versions after `noncurrent_days`)."""
    return aws.s3.BucketLifecycleConfigurationRuleArgs(
        id=rule_id,
        status="Enabled",
        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
        expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=days),
        noncurrent_version_expiration=(
            aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(noncurrent_days=noncurrent_days)
            if noncurrent_days
            else None
        ),
        abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
            days_after_initiation=1
        ),
    )


def noncurrent_rule(rule_id: str, noncurrent_days: int) -> aws.s3.BucketLifecycleConfigurationRuleArgs:
    """Safety net for versioned buckets whose current objects the platform deletes itself."""
    return aws.s3.BucketLifecycleConfigurationRuleArgs(
        id=rule_id,
        status="Enabled",
        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
        noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
            noncurrent_days=noncurrent_days
        ),
        abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
            days_after_initiation=1
        ),
    )
