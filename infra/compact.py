"""`compact` stack: PartitionFilesAdded (+ commands) → bin-packed partitions; a schedule sweeps and cleans up.

Config (namespace `etl:`, all optional; defaults suit AWS):
  compactTimeoutSeconds  Lambda timeout, also the commits' max_op_seconds       (900)
  compactGraceSeconds    replaced files live this long before cleanup deletes them (14400 = 4 h)
  compactClockMarginSeconds  clock skew / request-landing margin of commits       (30)
  compactQuietSeconds    a partition idle this long is swept if it has >1 small file (900)
  compactSweepRate       schedule of the sweep and cleanup, `rate(...)`           (rate(15 minutes))
  compactMinFiles        overrides every contract's compaction_min_files          (contract)
  compactMemoryMb        function memory; rewrite threads = its whole vCPUs        (1769 = 1 vCPU)
  compactEphemeralMb     /tmp for one bin's inputs, sorted runs and outputs       (4096)
  compactBatchWindowSeconds  events gathered this long into one invocation, 0..300  (10)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from contracts import events, metrics, naming
from contracts.commits import CommitSettings
from contracts.settings import CompactSettings, CompactTunables
from infra import policy
from infra.components.queue_function import QueueFunction, QueueFunctionArgs
from infra.layers import dependency_layers
from infra.packaging import build_archive
from infra.settings import Settings
from infra.transform import glue_arns

_TUNABLES = CompactTunables()
#: records per invocation at most with a batching window (without one, SQS mappings take at most 10)
BATCH_SIZE = 100


def _int_or(value: int | None, default: int) -> int:
    """A set value, 0 included (`or` would take 0 for unset)."""
    return default if value is None else value


@dataclass(frozen=True)
class CompactConfig:
    """`etl:compact*` keys; those the function reads take their defaults from its settings model."""

    timeout_s: int = int(_TUNABLES.max_op_seconds)
    grace_seconds: int = int(_TUNABLES.grace_seconds)
    clock_margin_seconds: int = int(_TUNABLES.clock_margin_seconds)
    quiet_seconds: int = int(_TUNABLES.quiet_seconds)
    sweep_rate: str = "rate(15 minutes)"
    min_files: int | None = None
    #: one whole vCPU: a second (3008 MB) made the rewrite ~15% faster for 70% more GB-seconds (docs/design/cost.md)
    memory_mb: int = 1769
    ephemeral_mb: int = 4096
    #: a burst of PartitionFilesAdded (a backfill, a big object's chunks) is checked once per partition per
    #: invocation instead of once per event (docs/design/cost.md); compaction is background work
    batch_window_s: int = 10

    @classmethod
    def load(cls) -> CompactConfig:
        cfg = pulumi.Config("etl")
        d = cls()
        c = cls(
            timeout_s=cfg.get_int("compactTimeoutSeconds") or d.timeout_s,
            grace_seconds=cfg.get_int("compactGraceSeconds") or d.grace_seconds,
            clock_margin_seconds=cfg.get_int("compactClockMarginSeconds") or d.clock_margin_seconds,
            quiet_seconds=cfg.get_int("compactQuietSeconds") or d.quiet_seconds,
            sweep_rate=cfg.get("compactSweepRate") or d.sweep_rate,
            min_files=cfg.get_int("compactMinFiles"),
            memory_mb=cfg.get_int("compactMemoryMb") or d.memory_mb,
            ephemeral_mb=cfg.get_int("compactEphemeralMb") or d.ephemeral_mb,
            batch_window_s=_int_or(cfg.get_int("compactBatchWindowSeconds"), d.batch_window_s),
        )
        c.commit_settings()  # fail the deployment, not the function, if the timings contradict each other
        if not (c.sweep_rate.startswith("rate(") and c.sweep_rate.endswith(")")):
            raise ValueError(f"etl:compactSweepRate must be rate(...), not {c.sweep_rate!r}")
        if not 1 <= c.timeout_s <= 900:
            raise ValueError("etl:compactTimeoutSeconds must be 1..900 (Lambda's limit)")
        if not 0 <= c.batch_window_s <= 300:
            raise ValueError("etl:compactBatchWindowSeconds must be 0..300 (Lambda's limit for SQS)")
        return c

    def commit_settings(self) -> CommitSettings:
        """Raises ValueError when grace <= timeout + margin (see CommitSettings)."""
        return CommitSettings(grace_seconds=self.grace_seconds, max_op_seconds=self.timeout_s,
                              clock_margin_seconds=self.clock_margin_seconds)


def _with_ephemeral_storage(mb: int) -> Any:
    """A transformation giving the component's function `mb` of /tmp (QueueFunctionArgs has no such field)."""

    def transform(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        if args.type_ != "aws:lambda/function:Function":
            return None
        props = {**args.props, "ephemeral_storage": aws.lambda_.FunctionEphemeralStorageArgs(size=mb)}
        return pulumi.ResourceTransformationResult(props, args.opts)

    return transform


#: Lambda allocates CPU in proportion to memory: one whole vCPU at 1,769 MB
LAMBDA_MB_PER_VCPU = 1769


def rewrite_threads(memory_mb: int) -> int:
    """Threads for the rewrite: the function's whole vCPUs (os.cpu_count() in Lambda shows more than it gets)."""
    return max(1, memory_mb // LAMBDA_MB_PER_VCPU)


def _queue_arn(name: str) -> pulumi.Output[str]:
    ident, region = aws.get_caller_identity(), aws.get_region()
    return pulumi.Output.from_input(f"arn:aws:sqs:{region.region}:{ident.account_id}:{name}")


def build(s: Settings) -> dict[str, pulumi.Input]:
    c = CompactConfig.load()
    core = pulumi.StackReference("core", stack_name=s.core_stack_name)
    out = core.require_output
    fn_name = naming.name(s.env, "compact")
    queue_name = naming.queue_name(fn_name)  # QueueFunction's queue: the sweep sends commands to it
    lake_objects = policy.objects(out("lakeBucketArn"))
    tunables = CompactTunables(grace_seconds=c.grace_seconds, max_op_seconds=c.timeout_s,
                               clock_margin_seconds=c.clock_margin_seconds, quiet_seconds=c.quiet_seconds,
                               min_files=c.min_files or None, commit_busy_wait_s=s.commit_busy_wait_s)
    environment: dict[str, pulumi.Input[str]] = {
        **tunables.to_environ(),
        **CompactSettings.variables({
            "env": s.env, "bus": out("busName"), "lake": out("lakeBucket"), "state_table": out("stateTable"),
            "database": out("glueDatabase"), "queue_name": queue_name, "work_dir": "/tmp",
            "max_receive_count": str(s.max_receive_count), "threads": str(rewrite_threads(c.memory_mb))}),
        "ARROW_DEFAULT_MEMORY_POOL": "system",  # returns freed memory: lower peak RSS (docs/benchmarks.md)
        "POWERTOOLS_SERVICE_NAME": "compact",
        "POWERTOOLS_METRICS_NAMESPACE": metrics.NAMESPACE,
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    fn = QueueFunction(
        "compact",
        QueueFunctionArgs(
            function_name=fn_name,
            handler="services.compact.handler.handler",
            archive=build_archive("compact"),
            bus_name=out("busName"),
            event_pattern=events.pattern(events.PartitionFilesAdded),
            alerts_topic_arn=out("alertsTopicArn"),
            environment=environment,
            statements=[
                policy.statement(["s3:GetObject"], [lake_objects], "ReadLake"),
                policy.statement(["s3:PutObject", "s3:AbortMultipartUpload"], [lake_objects], "StageAndCommit"),
                policy.statement(["s3:DeleteObject", "s3:DeleteObjectVersion"], [lake_objects], "CleanupVersions"),
                policy.statement(["s3:ListBucket", "s3:ListBucketVersions"], [out("lakeBucketArn")], "ListLake"),
                policy.put_events(out("busArn"), events.PartitionCompacted),
                policy.statement(
                    ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                     "dynamodb:Query"],
                    [out("stateTableArn")],
                    "CommitsLeasesMarkers",
                ),
                policy.statement(["glue:GetPartition", "glue:CreatePartition", "glue:UpdatePartition",
                                  "glue:GetTable"], glue_arns(out("glueDatabase")), "FlipPartitions"),
                policy.statement(["sqs:GetQueueUrl", "sqs:SendMessage"], [_queue_arn(queue_name)], "FollowUps"),
            ],
            architecture=s.lambda_architecture,
            runtime=s.lambda_runtime,
            layers=dependency_layers(s, "compact", out("artifactsBucket")),
            memory_mb=c.memory_mb,
            timeout_s=c.timeout_s,
            # most PartitionFilesAdded only re-check a manifest, once per partition in a batch; a compaction
            # re-plans per bin and hands what its deadline leaves to a follow-up command
            batch_size=BATCH_SIZE if c.batch_window_s else 10,
            batching_window_s=c.batch_window_s,
            max_concurrency=s.max_concurrency,
            max_receive_count=s.max_receive_count,
            log_retention_days=s.log_retention_days,
        ),
        opts=pulumi.ResourceOptions(transformations=[_with_ephemeral_storage(c.ephemeral_mb)]),
    )
    sweep = aws.cloudwatch.EventRule(
        "compact-sweep",
        name=naming.name(s.env, "compact-sweep"),
        description="Compact quiet partitions with small files left, and delete replaced files past their grace",
        schedule_expression=c.sweep_rate,
    )
    aws.cloudwatch.EventTarget("compact-sweep-target", rule=sweep.name, arn=fn.function.arn)
    aws.lambda_.Permission(
        "compact-sweep-invoke",
        action="lambda:InvokeFunction",
        function=fn.function.name,
        principal="events.amazonaws.com",
        source_arn=sweep.arn,
    )
    aws.cloudwatch.MetricAlarm(
        "compact-cleanup-overdue",
        name=f"{fn_name}-cleanup-overdue",
        alarm_description="Cleanup deleted replaced files later than the erasure window allows (see the logs).",
        namespace=metrics.NAMESPACE,
        metric_name="CleanupOverdue",
        dimensions={"service": "compact"},
        statistic="Sum",
        period=3600,
        evaluation_periods=1,
        threshold=0,
        comparison_operator="GreaterThanThreshold",
        treat_missing_data="notBreaching",
        alarm_actions=[out("alertsTopicArn")],
        ok_actions=[out("alertsTopicArn")],
    )
    return {
        "queueUrl": fn.queue.url,
        "dlqUrl": fn.dlq.url,
        "functionName": fn.function.name,
        "sweepRule": sweep.name,
    }
