"""Platform-wide rules every stack must follow: DLQs, batch failures, least privilege, $0 idle."""

from __future__ import annotations

import json

import pytest

from tests.infra.harness import SERVERLESS_TYPES, Stack, assert_least_privilege, build

#: the only resources billed while idle, with what they cost and how to leave them out
FIXED_COST_TYPES = {
    "aws:cloudwatch/dashboard:Dashboard": "$3/month beyond the account's first 3 dashboards; etl:dashboard=false",
}


def test_no_always_on_resource(all_stacks: list[Stack]) -> None:
    """Only pay-per-use types, but for core's one dashboard; tables on demand; no provisioned concurrency anywhere."""
    for stack in all_stacks:
        types = {r.type for r in stack.resources}
        fixed = types & set(FIXED_COST_TYPES)
        unknown = types - fixed - SERVERLESS_TYPES
        assert not unknown, f"{stack.run.stack}: not known to idle at $0: {unknown}"
        if stack.run.stack.startswith("core-"):
            assert len(stack.of_type("aws:cloudwatch/dashboard:Dashboard")) == 1
        else:
            assert not fixed, f"{stack.run.stack}: fixed-cost resources belong in core only: {fixed}"
        for t in stack.of_type("aws:dynamodb/table:Table"):
            assert t.inputs["billingMode"] == "PAY_PER_REQUEST"
        for fn in stack.of_type("aws:lambda/function:Function"):
            assert "provisionedConcurrentExecutions" not in fn.inputs


def test_without_the_dashboard_core_idles_at_zero() -> None:
    """`etl:dashboard: false`: the core stack is pay-per-use only (the services never had a fixed cost)."""
    core = build("core-dev", {"dashboard": False})
    types = {r.type for r in core.resources}
    assert types <= SERVERLESS_TYPES, types - SERVERLESS_TYPES
    assert not {"dashboardName", "dashboardUrl"} & set(core.run.outputs)


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
    assert_least_privilege([st for s in all_stacks for st in s.policies()])


def test_the_star_resource_rule_is_narrow() -> None:
    """The X-Ray exception admits exactly its two actions on "*", nothing beside them, nothing else on "*"."""
    assert_least_privilege([{"Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Resource": ["*"]}])
    for bad in ({"Action": ["s3:GetObject"], "Resource": ["*"]},
                {"Action": ["xray:PutTraceSegments", "s3:GetObject"], "Resource": ["*"]},
                {"Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Resource": ["*", "arn:aws:s3:::b"]},
                {"Action": ["xray:*"], "Resource": ["*"]}):
        with pytest.raises(AssertionError):
            assert_least_privilege([bad])


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
