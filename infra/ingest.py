"""`ingest` stack: landing Object Created → copy to raw → RawObjectStored."""

from __future__ import annotations

import pulumi

from contracts import events, metrics, naming
from contracts.settings import IngestSettings
from infra import policy
from infra.components.queue_function import QueueFunction, QueueFunctionArgs
from infra.layers import dependency_layers
from infra.packaging import build_archive
from infra.settings import Settings


def build(s: Settings) -> dict[str, pulumi.Input]:
    core = pulumi.StackReference("core", stack_name=s.core_stack_name)
    landing, landing_arn = core.require_output("landingBucket"), core.require_output("landingBucketArn")
    raw, raw_arn = core.require_output("rawBucket"), core.require_output("rawBucketArn")
    bus_name, bus_arn = core.require_output("busName"), core.require_output("busArn")
    idem_table, idem_arn = core.require_output("idempotencyTable"), core.require_output("idempotencyTableArn")
    pattern = landing.apply(events.s3_object_created_pattern)
    fn = QueueFunction(
        "ingest",
        QueueFunctionArgs(
            function_name=naming.name(s.env, "ingest"),
            handler="services.ingest.handler.handler",
            archive=build_archive("ingest"),
            bus_name=bus_name,
            event_pattern=pattern,
            alerts_topic_arn=core.require_output("alertsTopicArn"),
            environment={
                **IngestSettings.variables({
                    "env": s.env, "bus": bus_name, "raw_bucket": raw, "state_table": core.require_output("stateTable"),
                    "max_receive_count": str(s.max_receive_count)}),  # last attempt → status record (failures.md)
                "IDEMPOTENCY_TABLE": idem_table,  # read by powertools' idempotency layer
                "POWERTOOLS_SERVICE_NAME": "ingest",
                "POWERTOOLS_METRICS_NAMESPACE": metrics.NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
            statements=[
                policy.statement(
                    ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging"],
                    [policy.objects(landing_arn)],
                    "ReadLanding",
                ),
                policy.statement(["s3:ListBucket"], [landing_arn, raw_arn], "ListForHeadObject"),
                policy.statement(["s3:PutObject", "s3:PutObjectTagging"], [policy.objects(raw_arn)], "WriteRaw"),
                policy.put_events(bus_arn, events.RawObjectStored, events.ObjectRejected, events.IngestFailed),
                policy.statement(
                    ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
                    [idem_arn],
                    "Idempotency",
                ),
                policy.statement(["dynamodb:UpdateItem"], [core.require_output("stateTableArn")], "Progress"),
            ],
            architecture=s.lambda_architecture,
            runtime=s.lambda_runtime,
            layers=dependency_layers(s, "ingest", core.require_output("artifactsBucket")),
            # a server-side copy (s3transfer's UploadPartCopy above 1 GiB): no object bytes pass through the
            # function, whose peak is ~150 MB locally; Lambda bills configured memory, so 512, not 1024
            memory_mb=512,
            timeout_s=300,
            max_concurrency=s.max_concurrency,
            max_receive_count=s.max_receive_count,
            log_retention_days=s.log_retention_days,
        ),
    )
    return {
        "queueUrl": fn.queue.url,
        "dlqUrl": fn.dlq.url,
        "functionName": fn.function.name,
    }
