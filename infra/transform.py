"""`transform` stack: RawObjectStored / ChunkPlanned → typed Parquet in the lake, bad rows in quarantine."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from contracts import events, metrics, naming
from contracts.settings import TransformSettings
from infra import policy
from infra.components.queue_function import QueueFunction, QueueFunctionArgs
from infra.layers import dependency_layers
from infra.packaging import build_archive
from infra.settings import Settings


def glue_arns(database: pulumi.Input[str]) -> list[pulumi.Output[str]]:
    """The catalog, the platform database and its tables: what partition registration touches."""
    ident, region = aws.get_caller_identity(), aws.get_region()
    base = f"arn:aws:glue:{region.region}:{ident.account_id}"
    return [
        pulumi.Output.from_input(f"{base}:catalog"),
        pulumi.Output.concat(base, ":database/", database),
        pulumi.Output.concat(base, ":table/", database, "/*"),
    ]


def build(s: Settings) -> dict[str, pulumi.Input]:
    core = pulumi.StackReference("core", stack_name=s.core_stack_name)
    out = core.require_output
    timeout_s = 900
    fn = QueueFunction(
        "transform",
        QueueFunctionArgs(
            function_name=naming.name(s.env, "transform"),
            handler="services.transform.handler.handler",
            archive=build_archive("transform"),
            bus_name=out("busName"),
            event_pattern=events.pattern(events.RawObjectStored, events.ChunkPlanned),
            alerts_topic_arn=out("alertsTopicArn"),
            environment={
                **TransformSettings.variables({
                    "env": s.env, "bus": out("busName"), "lake": out("lakeBucket"),
                    "quarantine": out("quarantineBucket"), "state_table": out("stateTable"),
                    "database": out("glueDatabase"), "chunk_bytes": str(s.chunk_bytes),
                    "max_receive_count": str(s.max_receive_count),
                    "commit_busy_wait_s": f"{s.commit_busy_wait_s:g}"}),
                "RAW_BUCKET": out("rawBucket"),
                "IDEMPOTENCY_TABLE": out("idempotencyTable"),  # read by powertools' idempotency layer
                # pyarrow's mimalloc keeps freed memory for the next block or chunk instead of returning
                # it after 1 s and faulting it in again, in 4 KiB pages (no huge-page compaction stalls):
                # docs/design/transform-performance.md
                "MIMALLOC_PURGE_DELAY": "-1",
                "MIMALLOC_ALLOW_THP": "0",
                "POWERTOOLS_SERVICE_NAME": "transform",
                "POWERTOOLS_METRICS_NAMESPACE": metrics.NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
            statements=[
                policy.statement(["s3:GetObject", "s3:GetObjectVersion"], [policy.objects(out("rawBucketArn"))],
                                 "ReadRaw"),
                policy.statement(
                    ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion",
                     "s3:GetObjectVersion"],
                    [policy.objects(out("lakeBucketArn"))],
                    "CommitToLake",
                ),
                policy.statement(["s3:ListBucket", "s3:ListBucketVersions"],
                                 [out("lakeBucketArn"), out("rawBucketArn")], "List"),
                policy.statement(["s3:PutObject"], [policy.objects(out("quarantineBucketArn"))], "Quarantine"),
                policy.put_events(out("busArn"), events.ChunkPlanned, events.PartitionFilesAdded,
                                  events.ObjectTransformed, events.ObjectFailed),
                policy.statement(
                    ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                     "dynamodb:Query"],
                    [out("stateTableArn"), out("idempotencyTableArn")],
                    "State",
                ),
                policy.statement(["glue:GetPartition", "glue:CreatePartition", "glue:UpdatePartition",
                                  "glue:GetTable"], glue_arns(out("glueDatabase")), "RegisterPartitions"),
            ],
            architecture=s.lambda_architecture,
            runtime=s.lambda_runtime,
            layers=dependency_layers(s, "transform", core.require_output("artifactsBucket")),
            memory_mb=3008,
            timeout_s=timeout_s,
            batch_size=1,  # one object (or chunk) per invocation: the 15-minute wall is per object
            max_concurrency=s.max_concurrency,
            max_receive_count=s.max_receive_count,
            log_retention_days=s.log_retention_days,
        ),
    )
    return {"queueUrl": fn.queue.url, "dlqUrl": fn.dlq.url, "functionName": fn.function.name}
