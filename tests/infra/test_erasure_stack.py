"""The erasure stack: IAM-authorised HTTP API, queues with DLQs, schedule, deadline alarm, scoped IAM."""

from __future__ import annotations

import json

import pytest

from contracts import events
from contracts.settings import ErasureSettings
from infra.erasure import ROUTES
from tests.infra.harness import (
    CONSOLE_TYPES,
    CORE_SENTINELS,
    SERVERLESS_TYPES,
    Stack,
    assert_least_privilege,
    build,
)

API_TYPES = {"aws:apigatewayv2/api:Api", "aws:apigatewayv2/integration:Integration",
             "aws:apigatewayv2/route:Route", "aws:apigatewayv2/stage:Stage", "aws:lambda/permission:Permission"}


@pytest.fixture(scope="module")
def erasure() -> Stack:
    return build("erasure-dev")


def env_of(stack: Stack, fn: str) -> dict[str, str]:
    return stack.one("aws:lambda/function:Function", f"{fn}-function").inputs["environment"]["variables"]


def test_every_route_is_iam_authorised_and_proxied_to_the_api_function(erasure: Stack) -> None:
    api = erasure.one("aws:apigatewayv2/api:Api", "erasure-api")
    routes = [r for r in erasure.of_type("aws:apigatewayv2/route:Route") if r.inputs["apiId"] == api.id]
    assert sorted(r.inputs["routeKey"] for r in routes) == sorted(ROUTES)
    assert all(r.inputs["authorizationType"] == "AWS_IAM" for r in routes)
    integration = erasure.one("aws:apigatewayv2/integration:Integration", "erasure-api-integration")
    assert integration.inputs["integrationType"] == "AWS_PROXY"
    assert integration.inputs["payloadFormatVersion"] == "2.0"
    fn = erasure.one("aws:lambda/function:Function", "erasure-api-function")
    assert integration.inputs["integrationUri"] == fn.state["arn"]
    assert {r.inputs["target"] for r in routes} == {f"integrations/{integration.id}"}
    perm = erasure.one("aws:lambda/permission:Permission", "erasure-api-invoke")
    assert perm.inputs["principal"] == "apigateway.amazonaws.com"
    assert perm.inputs["sourceArn"].endswith(f":{api.id}/*/*")


def test_bus_intake_rule_comes_from_the_event_contract(erasure: Stack) -> None:
    rule = erasure.one("aws:cloudwatch/eventRule:EventRule", "erasure-intake-rule")
    assert json.loads(rule.inputs["eventPattern"]) == events.pattern(events.ErasureRequested)
    assert rule.inputs["eventBusName"] == CORE_SENTINELS["busName"]


def test_stack_idles_at_zero_and_every_queue_has_a_dlq(erasure: Stack) -> None:
    assert {r.type for r in erasure.resources} <= SERVERLESS_TYPES | API_TYPES | CONSOLE_TYPES
    queues = erasure.of_type("aws:sqs/queue:Queue")
    names = {q.inputs["name"] for q in queues}
    for q in queues:
        if q.inputs["name"].endswith("-dlq"):
            continue
        dlq = json.loads(q.inputs["redrivePolicy"])["deadLetterTargetArn"].rsplit(":", 1)[-1]
        assert dlq in names and dlq == q.inputs["name"].replace("-queue", "-dlq")
    mappings = erasure.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
    assert len(mappings) == 3
    assert all(m.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"] for m in mappings)


def test_workers_take_one_task_and_stay_within_the_15_minute_wall(erasure: Stack) -> None:
    mapping = erasure.one("aws:lambda/eventSourceMapping:EventSourceMapping", "erasure-worker-mapping")
    assert mapping.inputs["batchSize"] == 1
    for fn in erasure.of_type("aws:lambda/function:Function"):
        assert fn.inputs["timeout"] <= 900
    queue = erasure.one("aws:sqs/queue:Queue", "erasure-worker-queue")
    assert queue.inputs["visibilityTimeoutSeconds"] >= 6 * 900


def test_schedule_and_deadline_alarm(erasure: Stack) -> None:
    rule = erasure.one("aws:cloudwatch/eventRule:EventRule", "erasure-schedule")
    assert rule.inputs["scheduleExpression"] == "rate(15 minutes)"
    target = erasure.one("aws:cloudwatch/eventTarget:EventTarget", "erasure-schedule-target")
    assert target.inputs["arn"] == erasure.one("aws:lambda/function:Function", "erasure-run-function").state["arn"]
    alarm = erasure.one("aws:cloudwatch/metricAlarm:MetricAlarm", "erasure-deadline-risk")
    assert alarm.inputs["metricName"] == "ErasureRequestsAtRisk" and alarm.inputs["namespace"] == "etl"
    assert alarm.inputs["alarmActions"] == [CORE_SENTINELS["alertsTopicArn"]]
    run_env = env_of(erasure, "erasure-run")
    assert alarm.inputs["dimensions"] == {"service": run_env["POWERTOOLS_SERVICE_NAME"]}
    assert run_env["POWERTOOLS_METRICS_NAMESPACE"] == "etl"


def test_settings_reach_the_functions(erasure: Stack) -> None:
    env = env_of(erasure, "erasure-worker")
    assert env["ERASURE_PURGE_GRACE_SECONDS"] == "1800" and env["ERASURE_DEADLINE_DAYS"] == "30"
    assert env["LAKE_BUCKET"] == CORE_SENTINELS["lakeBucket"] and env["ERASURE_KMS_KEY_ID"] == ""
    assert env["ERASURE_SALT_PARAMETER"] == "/etl-dev/erasure/subject-hash-salt"
    assert not any("SALT" in k and k != "ERASURE_SALT_PARAMETER" for k in env), "the salt never travels in env"
    local = build("erasure-local")
    assert env_of(local, "erasure-worker")["ERASURE_PURGE_GRACE_SECONDS"] == "0"


def test_every_function_reads_back_the_settings_infra_wrote(erasure: Stack) -> None:
    """One model (contracts.settings.ErasureSettings) names the variables: infra sets every one it
    requires, and each function's environment reads back into it with the stack's values."""
    for fn in ("erasure-api", "erasure-run", "erasure-worker", "erasure-intake"):
        env = env_of(erasure, fn)
        assert not set(ErasureSettings.required_env()) - set(env), fn
        cfg = ErasureSettings.from_environ(env)
        assert (cfg.lake_bucket, cfg.deadline_days, cfg.purge_grace_s) == (CORE_SENTINELS["lakeBucket"], 30, 1800)
        assert cfg.max_receive_count == 3 and cfg.batch_max_wait_s == 3600 and not cfg.approval_required
        assert {k: v for k, v in cfg.to_environ().items() if k in env} == \
            {k: env[k] for k in cfg.to_environ() if k in env}, "what the service reads is what infra wrote"


def test_config_is_checked() -> None:
    with pytest.raises(Exception, match="erasureRiskDays must be shorter"):
        build("erasure-dev", {"erasureRiskDays": 40})


def test_permissions_are_scoped_and_kms_only_when_configured(erasure: Stack) -> None:
    statements = erasure.policies()
    assert_least_privilege(statements)
    sids = {st.get("Sid") for st in statements}
    assert not {"SealSubjects", "OpenSubjects"} & sids
    salt = [st for st in statements if st.get("Sid") == "SubjectHashSalt"]
    assert salt and all(st["Resource"][0].endswith(":parameter/etl-dev/erasure/subject-hash-salt") for st in salt)
    key = "arn:aws:kms:eu-west-1:123456789012:key/abc"
    with_kms = build("erasure-dev", {"erasureKmsKeyId": key})
    by_sid = {st["Sid"]: st for st in with_kms.policies() if "Sid" in st}
    assert by_sid["SealSubjects"]["Action"] == ["kms:Encrypt"] and by_sid["OpenSubjects"]["Action"] == ["kms:Decrypt"]
    assert env_of(with_kms, "erasure-run")["ERASURE_KMS_KEY_ID"] == key


def test_erasure_bucket_is_private_and_expires_run_workspaces(erasure: Stack) -> None:
    bucket = erasure.one("aws:s3/bucket:Bucket", "erasure")
    assert bucket.inputs["bucket"] == "etl-dev-erasure-123456789012"
    policy = json.loads(erasure.one("aws:s3/bucketPolicy:BucketPolicy", "erasure-tls-only").inputs["policy"])
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    (rule,) = erasure.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                          "erasure-lifecycle").inputs["rules"]
    assert rule["filter"]["prefix"] == "runs/", "certificates are kept; only run workspaces expire"
