"""The deployer's IAM policy in docs/deploy.md covers every resource the program creates.

The whole program (every stack, with the options that add resources: an alert e-mail, layers staged
through S3) runs under the recording mocks; each registered resource's Pulumi type maps to the IAM
actions the AWS provider calls to create, read, update and delete it, on the resource's ARN. A type
missing from the table fails the test: whoever adds a resource type must say what deploying it takes,
and the documented policy must then allow it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from contracts import naming
from etl.local.program import Registered, run_stack
from etl.local.recording import ACCOUNT, REGION, RecordingBackend

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
A, R = ACCOUNT, REGION  # docs/deploy.md's placeholders are the recording backend's account and region

Arns = Callable[[dict[str, Any]], list[str]]


def _s3(i: dict[str, Any]) -> list[str]:
    return [f"arn:aws:s3:::{i['bucket']}"]


def _glue(*parts: str) -> str:
    return f"arn:aws:glue:{R}:{A}:" + "/".join(parts)


def _apis(i: dict[str, Any]) -> list[str]:
    api = i.get("apiId", "*")
    return [f"arn:aws:apigateway:{R}::/apis", f"arn:aws:apigateway:{R}::/apis/{api}",
            f"arn:aws:apigateway:{R}::/apis/{api}/integrations/x", f"arn:aws:apigateway:{R}::/apis/{api}/routes/x",
            f"arn:aws:apigateway:{R}::/apis/{api}/stages/x", f"arn:aws:apigateway:{R}::/apis/{api}/authorizers/x",
            f"arn:aws:apigateway:{R}::/tags/x"]


def _user_pool(i: dict[str, Any]) -> list[str]:
    return [f"arn:aws:cognito-idp:{R}:{A}:userpool/{i.get('userPoolId') or i.get('name') or 'x'}"]


def _cdn(kind: str) -> Arns:
    return lambda i: [f"arn:aws:cloudfront::{A}:{kind}/{i.get('name') or 'EXAMPLEID'}"]


def _rule(i: dict[str, Any]) -> list[str]:
    bus = i.get("eventBusName") or "default"
    name = i.get("name") or i["rule"]
    return [f"arn:aws:events:{R}:{A}:rule/{name}" if bus == "default" else f"arn:aws:events:{R}:{A}:rule/{bus}/{name}"]


def _function(name: str) -> str:
    return f"arn:aws:lambda:{R}:{A}:function:{name}"


def _role_name(role: str) -> str:
    """The recording backend's role ARNs end with the role's name."""
    return role.rsplit(":", 1)[-1].rsplit("/", 1)[-1]


APIGW = ["apigateway:POST", "apigateway:GET", "apigateway:PATCH", "apigateway:DELETE"]
BUCKET_READS = ["s3:ListBucket", "s3:GetBucketAcl", "s3:GetBucketCORS", "s3:GetBucketWebsite", "s3:GetBucketVersioning",
                "s3:GetAccelerateConfiguration", "s3:GetBucketRequestPayment", "s3:GetBucketLogging",
                "s3:GetLifecycleConfiguration", "s3:GetReplicationConfiguration", "s3:GetEncryptionConfiguration",
                "s3:GetBucketObjectLockConfiguration", "s3:GetBucketTagging", "s3:GetBucketPolicy"]

#: Pulumi type → (actions the AWS provider calls to create/read/update/delete it, the ARNs they act on)
ACTIONS: dict[str, tuple[list[str], Arns]] = {
    "aws:apigatewayv2/api:Api": (APIGW, _apis),
    "aws:apigatewayv2/integration:Integration": (APIGW, _apis),
    "aws:apigatewayv2/route:Route": (APIGW, _apis),
    "aws:apigatewayv2/stage:Stage": (APIGW, _apis),
    "aws:apigatewayv2/authorizer:Authorizer": (APIGW, _apis),
    "aws:cognito/userPool:UserPool": (
        ["cognito-idp:CreateUserPool", "cognito-idp:DescribeUserPool", "cognito-idp:UpdateUserPool",
         "cognito-idp:DeleteUserPool", "cognito-idp:GetUserPoolMfaConfig", "cognito-idp:SetUserPoolMfaConfig",
         "cognito-idp:ListTagsForResource", "cognito-idp:TagResource", "cognito-idp:UntagResource"], _user_pool),
    "aws:cognito/userPoolClient:UserPoolClient": (
        ["cognito-idp:CreateUserPoolClient", "cognito-idp:DescribeUserPoolClient", "cognito-idp:UpdateUserPoolClient",
         "cognito-idp:DeleteUserPoolClient"], _user_pool),
    "aws:cognito/userGroup:UserGroup": (
        ["cognito-idp:CreateGroup", "cognito-idp:GetGroup", "cognito-idp:UpdateGroup", "cognito-idp:DeleteGroup"],
        _user_pool),
    "aws:cloudfront/originAccessControl:OriginAccessControl": (
        ["cloudfront:CreateOriginAccessControl", "cloudfront:GetOriginAccessControl",
         "cloudfront:UpdateOriginAccessControl", "cloudfront:DeleteOriginAccessControl"],
        _cdn("origin-access-control")),
    "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy": (
        ["cloudfront:CreateResponseHeadersPolicy", "cloudfront:GetResponseHeadersPolicy",
         "cloudfront:UpdateResponseHeadersPolicy", "cloudfront:DeleteResponseHeadersPolicy"],
        _cdn("response-headers-policy")),
    "aws:cloudfront/distribution:Distribution": (
        ["cloudfront:CreateDistribution", "cloudfront:GetDistribution", "cloudfront:GetDistributionConfig",
         "cloudfront:UpdateDistribution", "cloudfront:DeleteDistribution", "cloudfront:ListTagsForResource",
         "cloudfront:TagResource", "cloudfront:UntagResource"],
        _cdn("distribution")),
    "aws:athena/workgroup:Workgroup": (
        ["athena:CreateWorkGroup", "athena:GetWorkGroup", "athena:UpdateWorkGroup", "athena:DeleteWorkGroup",
         "athena:ListTagsForResource", "athena:TagResource", "athena:UntagResource"],
        lambda i: [f"arn:aws:athena:{R}:{A}:workgroup/{i['name']}"]),
    "aws:cloudwatch/dashboard:Dashboard": (
        ["cloudwatch:PutDashboard", "cloudwatch:GetDashboard", "cloudwatch:DeleteDashboards"],
        lambda i: [f"arn:aws:cloudwatch::{A}:dashboard/{i['dashboardName']}"]),
    "aws:cloudwatch/eventArchive:EventArchive": (
        ["events:CreateArchive", "events:DescribeArchive", "events:UpdateArchive", "events:DeleteArchive"],
        lambda i: [f"arn:aws:events:{R}:{A}:archive/{i['name']}"]),
    "aws:cloudwatch/eventBus:EventBus": (
        ["events:CreateEventBus", "events:DescribeEventBus", "events:DeleteEventBus", "events:ListTagsForResource",
         "events:TagResource", "events:UntagResource"],
        lambda i: [f"arn:aws:events:{R}:{A}:event-bus/{i['name']}"]),
    "aws:cloudwatch/eventRule:EventRule": (
        ["events:PutRule", "events:DescribeRule", "events:DeleteRule", "events:ListTargetsByRule",
         "events:ListTagsForResource", "events:TagResource", "events:UntagResource"], _rule),
    "aws:cloudwatch/eventTarget:EventTarget": (
        ["events:PutTargets", "events:ListTargetsByRule", "events:RemoveTargets"], _rule),
    "aws:cloudwatch/logGroup:LogGroup": (
        ["logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:PutRetentionPolicy", "logs:DeleteRetentionPolicy",
         "logs:ListTagsForResource", "logs:TagResource", "logs:UntagResource"],
        lambda i: [f"arn:aws:logs:{R}:{A}:log-group:{i['name']}"]),
    "aws:cloudwatch/metricAlarm:MetricAlarm": (
        ["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms",
         "cloudwatch:ListTagsForResource", "cloudwatch:TagResource", "cloudwatch:UntagResource"],
        lambda i: [f"arn:aws:cloudwatch:{R}:{A}:alarm:{i['name']}"]),
    "aws:dynamodb/table:Table": (
        ["dynamodb:CreateTable", "dynamodb:DescribeTable", "dynamodb:UpdateTable", "dynamodb:DeleteTable",
         "dynamodb:DescribeTimeToLive", "dynamodb:UpdateTimeToLive", "dynamodb:DescribeContinuousBackups",
         "dynamodb:UpdateContinuousBackups", "dynamodb:ListTagsOfResource", "dynamodb:TagResource",
         "dynamodb:UntagResource"],
        lambda i: [f"arn:aws:dynamodb:{R}:{A}:table/{i['name']}"]),
    "aws:glue/catalogDatabase:CatalogDatabase": (
        ["glue:CreateDatabase", "glue:GetDatabase", "glue:UpdateDatabase", "glue:DeleteDatabase"],
        lambda i: [_glue("catalog"), _glue("database", i["name"])]),
    "aws:glue/catalogTable:CatalogTable": (
        ["glue:CreateTable", "glue:GetTable", "glue:UpdateTable", "glue:DeleteTable"],
        lambda i: [_glue("catalog"), _glue("database", i["databaseName"]), _glue("table", i["databaseName"],
                                                                               i["name"])]),
    "aws:iam/policy:Policy": (
        ["iam:CreatePolicy", "iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions",
         "iam:CreatePolicyVersion", "iam:DeletePolicyVersion", "iam:DeletePolicy", "iam:TagPolicy",
         "iam:UntagPolicy", "iam:ListEntitiesForPolicy"],
        lambda i: [f"arn:aws:iam::{A}:policy/{i['name']}"]),
    "aws:iam/role:Role": (
        ["iam:CreateRole", "iam:GetRole", "iam:DeleteRole", "iam:UpdateRole", "iam:UpdateAssumeRolePolicy",
         "iam:TagRole", "iam:UntagRole", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies",
         "iam:ListInstanceProfilesForRole", "iam:DeleteRolePolicy"],
        lambda i: [f"arn:aws:iam::{A}:role/{i['name']}"]),
    "aws:iam/rolePolicy:RolePolicy": (
        ["iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy"],
        lambda i: [f"arn:aws:iam::{A}:role/{_role_name(i['role'])}"]),
    "aws:lambda/eventSourceMapping:EventSourceMapping": (
        ["lambda:CreateEventSourceMapping", "lambda:GetEventSourceMapping", "lambda:UpdateEventSourceMapping",
         "lambda:DeleteEventSourceMapping"],
        lambda i: [f"arn:aws:lambda:{R}:{A}:event-source-mapping:0a1b2c3d-0000-4000-8000-000000000000"]),
    "aws:lambda/function:Function": (
        ["lambda:CreateFunction", "lambda:GetFunction", "lambda:GetFunctionConfiguration",
         "lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration", "lambda:DeleteFunction",
         "lambda:ListVersionsByFunction", "lambda:GetFunctionCodeSigningConfig", "lambda:TagResource",
         "lambda:UntagResource", "lambda:ListTags"],
        lambda i: [_function(i["name"])]),
    "aws:lambda/layerVersion:LayerVersion": (
        ["lambda:PublishLayerVersion", "lambda:GetLayerVersion", "lambda:DeleteLayerVersion"],
        lambda i: [f"arn:aws:lambda:{R}:{A}:layer:{i['layerName']}",
                   f"arn:aws:lambda:{R}:{A}:layer:{i['layerName']}:1"]),
    "aws:lambda/permission:Permission": (
        ["lambda:AddPermission", "lambda:GetPolicy", "lambda:RemovePermission"],
        lambda i: [_function(i["function"])]),
    "aws:s3/bucket:Bucket": (["s3:CreateBucket", "s3:DeleteBucket", "s3:PutBucketTagging", *BUCKET_READS], _s3),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": (
        ["s3:PutLifecycleConfiguration", "s3:GetLifecycleConfiguration"], _s3),
    "aws:s3/bucketNotification:BucketNotification": (["s3:PutBucketNotification", "s3:GetBucketNotification"], _s3),
    "aws:s3/bucketObjectv2:BucketObjectv2": (
        ["s3:PutObject", "s3:GetObject", "s3:GetObjectTagging", "s3:PutObjectTagging", "s3:DeleteObject"],
        lambda i: [f"arn:aws:s3:::{i['bucket']}/{i['key']}"]),
    "aws:s3/bucketPolicy:BucketPolicy": (["s3:PutBucketPolicy", "s3:GetBucketPolicy", "s3:DeleteBucketPolicy"], _s3),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": (
        ["s3:PutBucketPublicAccessBlock", "s3:GetBucketPublicAccessBlock"], _s3),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        ["s3:PutEncryptionConfiguration", "s3:GetEncryptionConfiguration"], _s3),
    "aws:s3/bucketVersioning:BucketVersioning": (["s3:PutBucketVersioning", "s3:GetBucketVersioning"], _s3),
    "aws:sns/topic:Topic": (
        ["sns:CreateTopic", "sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:DeleteTopic",
         "sns:ListTagsForResource", "sns:TagResource", "sns:UntagResource"],
        lambda i: [f"arn:aws:sns:{R}:{A}:{i['name']}"]),
    "aws:sns/topicSubscription:TopicSubscription": (
        ["sns:Subscribe", "sns:GetSubscriptionAttributes", "sns:Unsubscribe"],
        lambda i: [f"arn:aws:sns:{R}:{A}:{i['topic'].rsplit(':', 1)[-1]}"]),
    "aws:sqs/queue:Queue": (
        ["sqs:CreateQueue", "sqs:GetQueueAttributes", "sqs:SetQueueAttributes", "sqs:GetQueueUrl", "sqs:DeleteQueue",
         "sqs:ListQueueTags", "sqs:TagQueue", "sqs:UntagQueue"],
        lambda i: [f"arn:aws:sqs:{R}:{A}:{i['name']}"]),
    "aws:sqs/queuePolicy:QueuePolicy": (
        ["sqs:SetQueueAttributes", "sqs:GetQueueAttributes"],
        lambda i: [f"arn:aws:sqs:{R}:{A}:{i['queueUrl'].rsplit('/', 1)[-1]}"]),
}


def passed_roles(r: Registered) -> list[tuple[str, str]]:
    """iam:PassRole a resource needs: (role ARN, the service the role is handed to)."""
    if r.type == "aws:lambda/function:Function":
        return [(f"arn:aws:iam::{A}:role/{_role_name(r.inputs['role'])}", "lambda.amazonaws.com")]
    if r.type == "aws:cloudwatch/eventTarget:EventTarget" and r.inputs.get("roleArn"):
        return [(f"arn:aws:iam::{A}:role/{_role_name(r.inputs['roleArn'])}", "events.amazonaws.com")]
    return []


@pytest.fixture(scope="module")
def registered(monkeypatch_module: pytest.MonkeyPatch) -> list[Registered]:
    """Every resource of every stack, services referencing the core the same run produced."""
    from infra import artifacts

    monkeypatch_module.setattr(artifacts, "DIRECT_UPLOAD_LIMIT", 0)  # layers staged through S3 as in a real deploy
    core = run_stack(naming.stack_name("core", "dev"), RecordingBackend(), {"alertEmail": "ops@example.com"})
    refs = {naming.stack_name("core", "dev"): core.outputs}
    out = list(core.resources)
    for service in naming.SERVICES:
        out += run_stack(naming.stack_name(service, "dev"), RecordingBackend(), {}, refs).resources
    return out


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def documented_policy() -> list[dict[str, Any]]:
    """The JSON block of docs/deploy.md's deployer section."""
    text = DOC.read_text()
    section = text[text.index("## 6. IAM permissions of the deployer"):]
    block = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert block, "docs/deploy.md: the deployer policy must be a ```json block in section 6"
    doc = json.loads(block.group(1))
    return doc["Statement"]


def _list(v: Any) -> list[str]:
    return v if isinstance(v, list) else [v]


def allows(statements: list[dict[str, Any]], action: str, arn: str, context: dict[str, str] | None = None) -> bool:
    """IAM's matching for Allow statements: case-insensitive action globs, case-sensitive resource globs, and
    the conditions this test can evaluate (StringEquals/StringLike on the given context keys)."""
    for st in statements:
        if st["Effect"] != "Allow":
            continue
        if not any(fnmatchcase(action.lower(), a.lower()) for a in _list(st["Action"])):
            continue
        if not any(fnmatchcase(arn, r) for r in _list(st["Resource"])):
            continue
        ok = True
        for op, conds in st.get("Condition", {}).items():
            for key, values in conds.items():
                have = (context or {}).get(key)
                if have is None:
                    continue  # a key this call does not carry (e.g. lambda:FunctionArn on reads by id)
                match = (lambda v, h=have: h == v) if op == "StringEquals" else (lambda v, h=have: fnmatchcase(h, v))
                ok = ok and any(match(v) for v in _list(values))
        if ok:
            return True
    return False


def test_every_resource_type_of_the_program_is_known(registered: list[Registered]) -> None:
    unknown = sorted({r.type for r in registered} - set(ACTIONS))
    assert not unknown, f"add these types to ACTIONS (and their actions to docs/deploy.md): {unknown}"


def test_the_documented_deployer_policy_covers_every_resource(registered: list[Registered]) -> None:
    statements = documented_policy()
    missing: set[str] = set()
    for r in registered:
        needed, arns = ACTIONS[r.type]
        context = {"lambda:FunctionArn": _function(r.inputs["name"] if r.type.endswith("function:Function")
                                                   else r.inputs.get("functionName", "").rsplit(":", 1)[-1])}
        for action in needed:
            for arn in arns(r.inputs):
                if not allows(statements, action, arn, context):
                    missing.add(f"{action} on {arn} ({r.type})")
        for role_arn, service in passed_roles(r):
            if not allows(statements, "iam:PassRole", role_arn, {"iam:PassedToService": service}):
                missing.add(f"iam:PassRole of {role_arn} to {service}")
    assert not missing, "docs/deploy.md's deployer policy lacks:\n" + "\n".join(sorted(missing))


def test_the_documented_policy_names_only_platform_resources() -> None:
    """Scoped by name: every resource is the platform's (`etl-*`, `etl_*`), but for actions AWS only grants on *."""
    star_ok = {"logs:DescribeLogGroups", "sts:GetCallerIdentity", "sns:GetSubscriptionAttributes", "sns:Unsubscribe",
               "cognito-idp:CreateUserPool"}
    generated_ids = ("arn:aws:apigateway:", "arn:aws:cognito-idp:", "arn:aws:cloudfront:")
    for st in documented_policy():
        for res in _list(st["Resource"]):
            if res == "*":
                assert set(_list(st["Action"])) <= star_ok or "Condition" in st, st
            elif res.startswith(generated_ids):
                continue  # ARNs of these carry generated ids, not names (see the note in docs/deploy.md)
            else:
                assert re.search(r"etl[-_*]|event-bus/default$|:catalog$|event-source-mapping:\*$", res), res
