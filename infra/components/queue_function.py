"""Queue-driven function: platform-bus rule → SQS (+DLQ) → Lambda, with its role, logs and alarms.

Every service that reacts to platform events is one of these, so every queue has a DLQ, every
mapping reports partial batch failures and has a concurrency cap, and every DLQ has an alarm.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from contracts import naming
from infra import policy
from infra.packaging import Archive


@dataclass
class QueueFunctionArgs:
    function_name: str
    handler: str
    archive: Archive
    bus_name: pulumi.Input[str]
    event_pattern: pulumi.Input[Mapping[str, Any]]
    alerts_topic_arn: pulumi.Input[str]
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    statements: Sequence[dict] = ()
    runtime: str = "python3.12"
    architecture: str = "arm64"
    layers: Sequence[pulumi.Input[str]] = ()
    memory_mb: int = 512
    timeout_s: int = 120
    batch_size: int = 10
    #: seconds the mapping gathers records before invoking (0: invoke as soon as any arrive); lets a burst of
    #: events for the same work share one invocation
    batching_window_s: int = 0
    max_concurrency: int = 10
    max_receive_count: int = 3
    log_retention_days: int = 30


class QueueFunction(pulumi.ComponentResource):
    """rule + queue + DLQ + queue policy + target + role + log group + function + mapping + alarms."""

    def __init__(self, name: str, args: QueueFunctionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("etl:service:QueueFunction", name, None, opts)
        if args.batch_size > 10 and not args.batching_window_s:
            raise ValueError(f"{name}: an SQS batch of more than 10 records needs a batching window (AWS refuses it)")
        child = pulumi.ResourceOptions(parent=self)
        fn_name = args.function_name

        self.dlq = aws.sqs.Queue(
            f"{name}-dlq",
            name=naming.dlq_name(fn_name),
            message_retention_seconds=14 * 24 * 3600,
            sqs_managed_sse_enabled=True,
            opts=child,
        )
        self.queue = aws.sqs.Queue(
            f"{name}-queue",
            name=naming.queue_name(fn_name),
            # AWS guidance: at least six times the function timeout, so retries do not overlap.
            visibility_timeout_seconds=6 * args.timeout_s,
            message_retention_seconds=4 * 24 * 3600,
            sqs_managed_sse_enabled=True,
            redrive_policy=self.dlq.arn.apply(
                lambda arn: json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": args.max_receive_count})
            ),
            opts=child,
        )
        self.rule = aws.cloudwatch.EventRule(
            f"{name}-rule",
            name=f"{fn_name}-rule",
            event_bus_name=args.bus_name,
            event_pattern=pulumi.Output.from_input(args.event_pattern).apply(lambda p: json.dumps(p, sort_keys=True)),
            opts=child,
        )
        aws.sqs.QueuePolicy(
            f"{name}-queue-policy",
            queue_url=self.queue.url,
            policy=pulumi.Output.all(self.queue.arn, self.rule.arn).apply(lambda a: _events_may_send(*a)),
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-target",
            rule=self.rule.name,
            event_bus_name=args.bus_name,
            arn=self.queue.arn,
            opts=child,
        )
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=f"/aws/lambda/{fn_name}", retention_in_days=args.log_retention_days, opts=child
        )
        self.role = aws.iam.Role(
            f"{name}-role", name=f"{fn_name}-role", assume_role_policy=policy.assume_role("lambda.amazonaws.com"),
            opts=child,
        )
        own = [
            policy.statement(
                ["logs:CreateLogStream", "logs:PutLogEvents"],
                [pulumi.Output.concat(self.log_group.arn, ":*")],
                "OwnLogs",
            ),
            policy.statement(
                ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"],
                [self.queue.arn],
                "OwnQueue",
            ),
            policy.xray_write(),
        ]
        aws.iam.RolePolicy(
            f"{name}-policy", role=self.role.id, policy=policy.document([*own, *args.statements]), opts=child
        )
        self.function = aws.lambda_.Function(
            f"{name}-function",
            name=fn_name,
            role=self.role.arn,
            runtime=args.runtime,
            architectures=[args.architecture],
            handler=args.handler,
            code=pulumi.FileArchive(str(args.archive.path)),
            source_code_hash=args.archive.sha256_b64,
            memory_size=args.memory_mb,
            timeout=args.timeout_s,
            layers=list(args.layers),
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=dict(args.environment)),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="JSON", log_group=self.log_group.name
            ),
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.log_group]),
        )
        self.mapping = aws.lambda_.EventSourceMapping(
            f"{name}-mapping",
            event_source_arn=self.queue.arn,
            function_name=self.function.arn,
            batch_size=args.batch_size,
            maximum_batching_window_in_seconds=args.batching_window_s or None,
            function_response_types=["ReportBatchItemFailures"],
            scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(
                maximum_concurrency=max(2, args.max_concurrency)
            ),
            opts=child,
        )
        self._alarms(name, fn_name, args.alerts_topic_arn, args.timeout_s)
        self.register_outputs(
            {"queue_url": self.queue.url, "dlq_url": self.dlq.url, "function_name": self.function.name}
        )

    def _alarms(self, name: str, fn_name: str, topic: pulumi.Input[str], timeout_s: int) -> None:
        """DLQ depth, errors, backlog age → alerts topic (each alarm is a fixed $0.10 a month beyond the free 10)."""
        sqs, lam = "AWS/SQS", "AWS/Lambda"
        specs = [
            ("dlq-depth", f"{fn_name}-dlq-not-empty", sqs, "ApproximateNumberOfMessagesVisible",
             {"QueueName": self.dlq.name}, "Maximum", 60, 0,
             f"Messages {fn_name} could not process are waiting in its DLQ (etl dlq list)."),
            ("errors", f"{fn_name}-errors", lam, "Errors", {"FunctionName": self.function.name}, "Sum", 300, 0,
             f"{fn_name} raised errors (messages are retried, then dead-lettered)."),
            ("backlog-age", f"{fn_name}-backlog-age", sqs, "ApproximateAgeOfOldestMessage",
             {"QueueName": self.queue.name}, "Maximum", 300, 10 * timeout_s,
             f"The oldest message for {fn_name} waited longer than 10 function timeouts."),
        ]
        for suffix, alarm_name, namespace, metric, dimensions, statistic, period, threshold, description in specs:
            aws.cloudwatch.MetricAlarm(
                f"{name}-{suffix}",
                name=alarm_name,
                alarm_description=description,
                namespace=namespace,
                metric_name=metric,
                dimensions=dimensions,
                statistic=statistic,
                period=period,
                threshold=threshold,
                comparison_operator="GreaterThanThreshold",
                evaluation_periods=1,
                treat_missing_data="notBreaching",
                alarm_actions=[topic],
                ok_actions=[topic],
                opts=pulumi.ResourceOptions(parent=self),
            )


def _events_may_send(queue_arn: str, rule_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PlatformBusRule",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
                }
            ],
        }
    )
