"""Helpers of the infra tests: run stacks of the real program under Pulumi's mock runtime (recording backend).

A helper module, not a conftest, so other test packages (ops, contracts) import it like any module.
"""

from __future__ import annotations

import json
from typing import Any

from etl.local.program import Registered, StackRun, run_stack
from etl.local.recording import RecordingBackend

#: what core exports, as a StackReference would return it; odd values prove services read them
CORE_SENTINELS = {
    "landingBucket": "ref-landing", "landingBucketArn": "arn:aws:s3:::ref-landing",
    "rawBucket": "ref-raw", "rawBucketArn": "arn:aws:s3:::ref-raw",
    "lakeBucket": "ref-lake", "lakeBucketArn": "arn:aws:s3:::ref-lake",
    "quarantineBucket": "ref-quarantine", "quarantineBucketArn": "arn:aws:s3:::ref-quarantine",
    "busName": "ref-bus", "busArn": "arn:aws:events:eu-west-1:123456789012:event-bus/ref-bus",
    "archiveName": "ref-archive", "glueDatabase": "ref_db",
    "stateTable": "ref-state", "stateTableArn": "arn:aws:dynamodb:eu-west-1:123456789012:table/ref-state",
    "idempotencyTable": "ref-idem", "idempotencyTableArn": "arn:aws:dynamodb:eu-west-1:123456789012:table/ref-idem",
    "alertsTopicArn": "arn:aws:sns:eu-west-1:123456789012:ref-alerts",
    "artifactsBucket": "ref-artifacts", "athenaWorkgroup": "etl-dev",
}


#: resource types billed per use (or free), none by the hour: what a stack may hold to idle at $0
SERVERLESS_TYPES = {
    "aws:cloudwatch/eventBus:EventBus", "aws:cloudwatch/eventArchive:EventArchive",
    "aws:cloudwatch/eventRule:EventRule", "aws:cloudwatch/eventTarget:EventTarget",
    "aws:cloudwatch/logGroup:LogGroup", "aws:cloudwatch/metricAlarm:MetricAlarm",
    "aws:s3/bucket:Bucket", "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketPolicy:BucketPolicy", "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "aws:s3/bucketNotification:BucketNotification",
    "aws:sqs/queue:Queue", "aws:sqs/queuePolicy:QueuePolicy", "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/policy:Policy",
    "aws:lambda/function:Function", "aws:lambda/eventSourceMapping:EventSourceMapping",
    "aws:glue/catalogDatabase:CatalogDatabase", "aws:glue/catalogTable:CatalogTable",
    "aws:dynamodb/table:Table", "aws:sns/topic:Topic", "aws:sns/topicSubscription:TopicSubscription",
    "aws:athena/workgroup:Workgroup", "aws:lambda/layerVersion:LayerVersion", "aws:s3/bucketObjectv2:BucketObjectv2",
}

#: what the console adds to the erasure stack; each is billed per request or free, none by the hour
CONSOLE_TYPES = {
    "aws:cognito/userPool:UserPool", "aws:cognito/userPoolClient:UserPoolClient", "aws:cognito/userGroup:UserGroup",
    "aws:apigatewayv2/authorizer:Authorizer", "aws:cloudfront/distribution:Distribution",
    "aws:cloudfront/originAccessControl:OriginAccessControl",
    "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy", "aws:s3/bucketObjectv2:BucketObjectv2",
}


#: X-Ray's write actions have no resource-level permissions (AWS accepts only Resource "*" for them), and Lambda's
#: active tracing needs them: a statement of exactly these two actions is the one allowed "*" resource.
XRAY_WRITE_ACTIONS = ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]


def assert_least_privilege(statements: list[dict[str, Any]]) -> None:
    """No wildcard action anywhere; no `*` resource but on the X-Ray write statement, and nothing else on it."""
    assert statements
    for st in statements:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        assert all("*" not in a for a in actions), st
        assert all(r for r in resources), st
        if "*" in resources:
            assert sorted(actions) == XRAY_WRITE_ACTIONS and resources == ["*"], f"only X-Ray writes may use *: {st}"


class Stack:
    def __init__(self, run: StackRun) -> None:
        self.run = run

    @property
    def resources(self) -> list[Registered]:
        return self.run.resources

    def of_type(self, token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == token]

    def one(self, token: str, name: str) -> Registered:
        found = [r for r in self.of_type(token) if r.name == name]
        assert len(found) == 1, f"expected one {token} named {name}, got {[r.name for r in self.of_type(token)]}"
        return found[0]

    def policies(self) -> list[dict[str, Any]]:
        docs = [json.loads(r.inputs["policy"]) for r in self.of_type("aws:iam/rolePolicy:RolePolicy")]
        return [st for d in docs for st in d["Statement"]]


def build(stack: str, config: dict[str, Any] | None = None) -> Stack:
    refs = {"core-dev": CORE_SENTINELS, "core-test": CORE_SENTINELS, "core-local": CORE_SENTINELS}
    return Stack(run_stack(stack, RecordingBackend(), config or {}, refs))
