"""The compact stack: contract-built rule into queue + DLQ, the sweep schedule, least privilege, timings."""

from __future__ import annotations

import json

import pytest
import yaml

from contracts import events
from contracts.settings import CompactSettings
from etl.local.platform import ROOT
from tests.infra.harness import CORE_SENTINELS, Stack, assert_least_privilege, build

FN = "aws:lambda/function:Function"
RULE = "aws:cloudwatch/eventRule:EventRule"


@pytest.fixture(scope="module")
def compact() -> Stack:
    return build("compact-dev")


def env_of(stack: Stack) -> dict[str, str]:
    return stack.one(FN, "compact-function").inputs["environment"]["variables"]


def test_partition_files_added_reach_the_function_through_its_own_queue_and_dlq(compact: Stack) -> None:
    rule = compact.one(RULE, "compact-rule")
    assert rule.inputs["eventBusName"] == "ref-bus"
    assert json.loads(rule.inputs["eventPattern"]) == events.pattern(events.PartitionFilesAdded)
    queue = compact.one("aws:sqs/queue:Queue", "compact-queue")
    dlq = compact.one("aws:sqs/queue:Queue", "compact-dlq")
    redrive = json.loads(queue.inputs["redrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":" + dlq.inputs["name"]) and redrive["maxReceiveCount"] == 3
    fn = compact.one(FN, "compact-function")
    assert queue.inputs["visibilityTimeoutSeconds"] >= 6 * fn.inputs["timeout"]
    mapping = compact.one("aws:lambda/eventSourceMapping:EventSourceMapping", "compact-mapping")
    assert mapping.inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert fn.inputs["handler"] == "services.compact.handler.handler"
    dlq_alarm = compact.one("aws:cloudwatch/metricAlarm:MetricAlarm", "compact-dlq-depth")
    assert dlq_alarm.inputs["alarmActions"] == [CORE_SENTINELS["alertsTopicArn"]]


def test_the_schedule_invokes_the_function_directly_and_may_do_so(compact: Stack) -> None:
    sweep = compact.one(RULE, "compact-sweep")
    assert sweep.inputs["scheduleExpression"] == "rate(15 minutes)"
    assert not sweep.inputs.get("eventBusName"), "schedules live on the default bus"
    fn = compact.one(FN, "compact-function")
    target = compact.one("aws:cloudwatch/eventTarget:EventTarget", "compact-sweep-target")
    assert target.inputs["rule"] == sweep.inputs["name"] and target.inputs["arn"] == fn.state["arn"]
    permission = compact.one("aws:lambda/permission:Permission", "compact-sweep-invoke")
    assert permission.inputs["principal"] == "events.amazonaws.com"
    assert permission.inputs["action"] == "lambda:InvokeFunction"
    assert permission.inputs["function"] == fn.inputs["name"]
    assert permission.inputs["sourceArn"] == sweep.state["arn"], "only this rule may invoke it"


def test_permissions_are_least_privilege(compact: Stack) -> None:
    statements = compact.policies()
    assert_least_privilege(statements)
    by_sid = {st["Sid"]: st for st in statements}
    lake_objects = ["arn:aws:s3:::ref-lake/*"]
    assert by_sid["ReadLake"] == {"Sid": "ReadLake", "Effect": "Allow", "Action": ["s3:GetObject"],
                                  "Resource": lake_objects}
    assert by_sid["CleanupVersions"]["Resource"] == lake_objects
    assert by_sid["CommitsLeasesMarkers"]["Resource"] == [CORE_SENTINELS["stateTableArn"]]
    assert by_sid["Publish"]["Resource"] == [CORE_SENTINELS["busArn"]]
    assert by_sid["FollowUps"]["Resource"] == ["arn:aws:sqs:eu-west-1:123456789012:etl-dev-compact-queue"]
    glue = by_sid["FlipPartitions"]["Resource"]
    assert glue[1].endswith(":database/ref_db") and glue[2].endswith(":table/ref_db/*")
    everything = json.dumps(statements)
    for untouched in ("ref-raw", "ref-quarantine", "ref-landing", CORE_SENTINELS["idempotencyTableArn"]):
        assert untouched not in everything, f"compaction has no business with {untouched}"


def test_function_sizing_and_commit_timings(compact: Stack) -> None:
    fn = compact.one(FN, "compact-function")
    assert fn.inputs["timeout"] == 900 and fn.inputs["memorySize"] == 1769
    assert fn.inputs["ephemeralStorage"] == {"size": 4096}
    env = env_of(compact)
    assert (env["GRACE_SECONDS"], env["MAX_OP_SECONDS"], env["CLOCK_MARGIN_SECONDS"]) == ("14400", "900", "30")
    assert env["LAKE_BUCKET"] == "ref-lake" and env["STATE_TABLE"] == "ref-state"
    assert env["QUEUE_NAME"] == "etl-dev-compact-queue" and "MIN_FILES" not in env
    assert env["THREADS"] == "1", "one whole vCPU at 1769 MB: one rewrite thread"


def test_local_config_shortens_the_timings_consistently() -> None:
    config = yaml.safe_load((ROOT / "Pulumi.compact-local.yaml").read_text())["config"]
    stack = build("compact-local", config)
    env = env_of(stack)
    grace, timeout, margin = (int(env[k]) for k in ("GRACE_SECONDS", "MAX_OP_SECONDS", "CLOCK_MARGIN_SECONDS"))
    assert grace > 2 * timeout + margin and grace <= 60
    assert stack.one(FN, "compact-function").inputs["timeout"] == timeout
    assert stack.one(RULE, "compact-sweep").inputs["scheduleExpression"] == "rate(1 minute)"


def test_contradicting_timings_fail_the_deployment_not_the_function() -> None:
    with pytest.raises(Exception, match="grace_seconds"):
        build("compact-dev", {"compactGraceSeconds": 1000, "compactTimeoutSeconds": 900})
    with pytest.raises(Exception, match="rate"):
        build("compact-dev", {"compactSweepRate": "cron(0 * * * ? *)"})


def test_overdue_cleanup_alarms_and_nothing_idles_at_a_cost(compact: Stack) -> None:
    alarm = compact.one("aws:cloudwatch/metricAlarm:MetricAlarm", "compact-cleanup-overdue")
    assert (alarm.inputs["namespace"], alarm.inputs["metricName"]) == ("etl", "CleanupOverdue")
    assert alarm.inputs["alarmActions"] == [CORE_SENTINELS["alertsTopicArn"]]
    assert alarm.inputs["treatMissingData"] == "notBreaching"
    for fn in compact.of_type(FN):
        assert "provisionedConcurrentExecutions" not in fn.inputs
    assert {r.type.split(":")[1].split("/")[0] for r in compact.resources} <= {
        "sqs", "cloudwatch", "iam", "lambda", "s3"}


def test_a_burst_of_events_is_gathered_into_one_invocation_and_the_window_is_configurable(compact: Stack) -> None:
    mapping = compact.one("aws:lambda/eventSourceMapping:EventSourceMapping", "compact-mapping")
    assert (mapping.inputs["batchSize"], mapping.inputs["maximumBatchingWindowInSeconds"]) == (100, 10)
    off = build("compact-dev", {"compactBatchWindowSeconds": 0})
    mapping = off.one("aws:lambda/eventSourceMapping:EventSourceMapping", "compact-mapping")
    assert mapping.inputs["batchSize"] == 10 and not mapping.inputs.get("maximumBatchingWindowInSeconds"), \
        "no window: at most 10 records, as AWS requires"
    with pytest.raises(Exception, match=r"0\.\.300"):
        build("compact-dev", {"compactBatchWindowSeconds": 301})


def test_min_files_override_reaches_the_function() -> None:
    assert env_of(build("compact-dev", {"compactMinFiles": 4}))["MIN_FILES"] == "4"


def test_the_function_reads_back_the_settings_infra_wrote(compact: Stack) -> None:
    """One model (contracts.settings.CompactSettings) names the variables and holds the defaults."""
    env = env_of(compact)
    assert not set(CompactSettings.required_env()) - set(env)
    read = CompactSettings.from_environ(env)
    assert (read.grace_seconds, read.max_op_seconds, read.quiet_seconds) == (4 * 3600, 900, 900)
    assert read.min_files is None and "MIN_FILES" not in env and read.work_dir == "/tmp"
