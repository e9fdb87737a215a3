"""Platform-wide rules every stack must follow: DLQs, batch failures, least privilege, $0 idle."""

from __future__ import annotations

import json

from tests.infra.conftest import Stack

SERVERLESS_TYPES = {
    "aws:cloudwatch/eventBus:EventBus", "aws:cloudwatch/eventArchive:EventArchive",
    "aws:cloudwatch/eventRule:EventRule", "aws:cloudwatch/eventTarget:EventTarget",
    "aws:cloudwatch/logGroup:LogGroup", "aws:cloudwatch/metricAlarm:MetricAlarm",
    "aws:s3/bucket:Bucket", "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketPolicy:BucketPolicy", "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "aws:s3/bucketNotification:BucketNotification",
    "aws:sqs/queue:Queue", "aws:sqs/queuePolicy:QueuePolicy", "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy",
    "aws:lambda/function:Function", "aws:lambda/eventSourceMapping:EventSourceMapping",
    "aws:glue/catalogDatabase:CatalogDatabase", "aws:glue/catalogTable:CatalogTable",
    "aws:dynamodb/table:Table", "aws:sns/topic:Topic", "aws:sns/topicSubscription:TopicSubscription",
    "aws:athena/workgroup:Workgroup", "aws:lambda/layerVersion:LayerVersion", "aws:s3/bucketObjectv2:BucketObjectv2",
}


def test_no_always_on_resource(all_stacks: list[Stack]) -> None:
    """Only pay-per-use types; tables on demand; no provisioned concurrency anywhere."""
    for stack in all_stacks:
        types = {r.type for r in stack.resources}
        assert types <= SERVERLESS_TYPES, f"{stack.run.stack}: not known to idle at $0: {types - SERVERLESS_TYPES}"
        for t in stack.of_type("aws:dynamodb/table:Table"):
            assert t.inputs["billingMode"] == "PAY_PER_REQUEST"
        for fn in stack.of_type("aws:lambda/function:Function"):
            assert "provisionedConcurrentExecutions" not in fn.inputs


def test_every_queue_has_a_dlq(all_stacks: list[Stack]) -> None:
    for stack in all_stacks:
        queues = stack.of_type("aws:sqs/queue:Queue")
        arns = {f"arn:aws:sqs:eu-west-1:123456789012:{q.inputs['name']}" for q in queues}
        for q in queues:
            if q.inputs["name"].endswith("-dlq"):
                continue
            redrive = json.loads(q.inputs["redrivePolicy"])
            assert redrive["deadLetterTargetArn"] in arns
            assert redrive["maxReceiveCount"] >= 1
            assert q.inputs["sqsManagedSseEnabled"] is True


def test_mappings_report_batch_failures_and_cap_concurrency(all_stacks: list[Stack]) -> None:
    mappings = [m for s in all_stacks for m in s.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")]
    assert mappings
    for m in mappings:
        assert m.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
        assert m.inputs["scalingConfig"]["maximumConcurrency"] >= 2


def test_iam_is_least_privilege(all_stacks: list[Stack]) -> None:
    statements = [st for s in all_stacks for st in s.policies()]
    assert statements
    for st in statements:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        assert all("*" not in a for a in actions), st
        assert "*" not in resources, st
        assert all(r for r in resources), st


def test_buckets_are_private_encrypted_and_tls_only(core: Stack) -> None:
    buckets = core.of_type("aws:s3/bucket:Bucket")
    assert {b.name for b in buckets} == {"landing", "raw", "lake", "quarantine", "results", "artifacts"}
    for b in buckets:
        pab = core.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", f"{b.name}-public-access")
        assert all(pab.inputs[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                              "restrictPublicBuckets"))
        sse = core.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                       f"{b.name}-sse")
        assert sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] in ("AES256", "aws:kms")
        policy = json.loads(core.one("aws:s3/bucketPolicy:BucketPolicy", f"{b.name}-tls-only").inputs["policy"])
        deny = policy["Statement"][0]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_every_dlq_alarms_to_the_alerts_topic(ingest: Stack) -> None:
    alarms = ingest.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    dlqs = [q.inputs["name"] for q in ingest.of_type("aws:sqs/queue:Queue") if q.inputs["name"].endswith("-dlq")]
    for dlq in dlqs:
        matching = [a for a in alarms if a.inputs.get("dimensions") == {"QueueName": dlq}]
        assert matching, f"no alarm on {dlq}"
        assert matching[0].inputs["alarmActions"] == ["arn:aws:sns:eu-west-1:123456789012:ref-alerts"]
