"""Lambda entry point: an SQS batch (PartitionFilesAdded events, commands) or the sweep schedule.

* SQS: each record is a platform event (PartitionFilesAdded) or a command (commands.py). A record
  that raises is reported as a batch item failure and retried, then dead-lettered; nothing is
  swallowed. Duplicates are harmless: plans come from the committed manifest, op ids from inputs.
  The mapping gathers a burst into one batch (a batching window), and a partition is checked once
  per batch: every event of the batch was published after its commit, before this invocation began.
* Schedule (EventBridge `Scheduled Event`): queue compactions of quiet partitions, then delete what
  is past its grace period. An error raises (Lambda retries the async invoke; the errors alarm fires).
Logs carry dataset, partition values, counts and sizes; never row values or subject ids. A compacted
partition flushes its own metrics with a `dataset` dimension (contracts/metrics.py); trace annotations
carry the dataset only.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from contracts import aws, events
from contracts import metrics as dataset_metrics
from contracts.commits import CommitSettings, PartitionCommitter, PartitionRef
from contracts.datasets import load_datasets
from services.compact.commands import Cleanup, CompactPartition, is_command, message, parse_command
from services.compact.config import CompactSettings
from services.compact.files import S3LakeFiles
from services.compact.jobs import Compactor, Outcome
from services.compact.state import DynamoCompactState

logger = Logger()
metrics = Metrics()
tracer = Tracer()
processor = BatchProcessor(event_type=EventType.SQS)
#: partitions checked by this invocation: a burst's later events for one (the batching window gathers
#: them) are answered by its first check instead of each re-reading the manifest and re-marking it
_checked: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
#: stop starting work this long before Lambda's hard timeout (uploads and the commit must finish):
#: 10 s, or a tenth of the time left for short local timeouts
SAFETY_SECONDS = 10.0


@dataclass(frozen=True)
class Env:
    bus: str
    lake: str
    state_table: str
    database: str
    queue_name: str
    settings: CommitSettings
    quiet_seconds: float
    min_files: int | None
    work_dir: Path
    threads: int

    @classmethod
    def from_environ(cls) -> Env:
        c = CompactSettings.from_environ()
        settings = CommitSettings(grace_seconds=c.grace_seconds, max_op_seconds=c.max_op_seconds,
                                  clock_margin_seconds=c.clock_margin_seconds,
                                  busy_wait_seconds=c.commit_busy_wait_s)
        return cls(c.bus, c.lake, c.state_table, c.database, c.queue_name, settings, c.quiet_seconds, c.min_files,
                   Path(c.work_dir), c.threads or os.cpu_count() or 1)


class AwsOutbox:
    """Events to the platform bus; follow-up commands to this service's own queue."""

    def __init__(self, bus: str, queue_name: str) -> None:
        self.bus, self.queue_name = bus, queue_name

    def publish(self, details: Sequence[events.EventDetail]) -> None:
        events.publish(aws.client("events"), self.bus, details)

    def enqueue(self, commands: Sequence[CompactPartition | Cleanup]) -> None:
        sqs = aws.client("sqs")
        url = sqs.get_queue_url(QueueName=self.queue_name)["QueueUrl"]
        for i in range(0, len(commands), 10):
            batch = [{"Id": str(n), "MessageBody": message(c)} for n, c in enumerate(commands[i : i + 10])]
            resp = sqs.send_message_batch(QueueUrl=url, Entries=batch)
            if resp.get("Failed"):
                raise RuntimeError(f"{len(resp['Failed'])} of {len(batch)} commands refused: {resp['Failed'][:3]}")


@cache
def compactor() -> Compactor:
    """One per execution environment: the Arrow pool, clients and contracts are reused across invocations.

    Work files a crashed invocation left in this sandbox's /tmp are removed here, before any bin runs.
    """
    env = Env.from_environ()
    shutil.rmtree(env.work_dir / "compact", ignore_errors=True)
    committer = PartitionCommitter.on_aws(bucket=env.lake, table_name=env.state_table, database=env.database,
                                          settings=env.settings)
    return Compactor(
        committer=committer,
        files=S3LakeFiles(aws.client("s3"), env.lake),
        state=DynamoCompactState(aws.client("dynamodb"), env.state_table),
        outbox=AwsOutbox(env.bus, env.queue_name),
        datasets=load_datasets(),
        work_root=env.work_dir / "compact",
        min_files=env.min_files,
        quiet_seconds=env.quiet_seconds,
        lease_margin_seconds=env.settings.clock_margin_seconds,
        threads=env.threads,
    )


def deadline_of(context: LambdaContext) -> float:
    left = context.get_remaining_time_in_millis() / 1000
    return time.time() + left - min(SAFETY_SECONDS, 0.1 * left)


@tracer.capture_method
def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> dict[str, Any]:
    body = json.loads(record.body)
    logger.set_correlation_id(None)  # a command has none; a previous record of the batch must not lend its own
    logger.remove_keys(["event_id"])
    deadline = deadline_of(lambda_context)
    c = compactor()
    if is_command(body):
        cmd = parse_command(body)
        if isinstance(cmd, Cleanup):
            return _cleaned(c, deadline)
        return _compacted(c.compact(PartitionRef(cmd.dataset, cmd.partition), cmd.reason, deadline))
    logger.append_keys(event_id=body.get("id"))
    detail = events.parse_event(body)
    if not isinstance(detail, events.PartitionFilesAdded):
        raise ValueError(f"compact does not handle {body.get('detail-type')!r}")
    logger.set_correlation_id(detail.object_id)  # the object whose files triggered this check
    key = (detail.dataset, tuple(sorted(detail.partition.items())))
    if key in _checked:  # committed before this invocation began, so the first check saw these files too
        logger.info("partition already checked in this batch", dataset=detail.dataset)
        return _checked[key]
    _checked[key] = _compacted(c.files_added(detail, deadline))
    return _checked[key]


def _compacted(outcome: Outcome) -> dict[str, Any]:
    summary: dict[str, Any] = outcome.summary()
    logger.info("partition checked", **summary)
    tracer.put_annotation(key="dataset", value=dataset_metrics.dataset_dimension(outcome.dataset))
    if outcome.bins:
        metrics.add_metric(name="BinsCommitted", unit=MetricUnit.Count, value=len(outcome.bins))
        metrics.add_metric(name="FilesCompacted", unit=MetricUnit.Count, value=int(summary["files_before"]))
        metrics.add_metric(name=dataset_metrics.BYTES_COMPACTED, unit=MetricUnit.Bytes,
                           value=int(summary["bytes_before"]))
        with dataset_metrics.for_dataset(metrics, outcome.dataset) as m:
            m.add_metric(name=dataset_metrics.FILES_BEFORE, unit=MetricUnit.Count, value=int(summary["files_before"]))
            m.add_metric(name=dataset_metrics.FILES_AFTER, unit=MetricUnit.Count, value=int(summary["files_after"]))
            m.add_metric(name=dataset_metrics.BYTES_COMPACTED, unit=MetricUnit.Bytes,
                         value=int(summary["bytes_before"]))
            m.add_metric(name=dataset_metrics.COMPACTION_LATENCY, unit=MetricUnit.Milliseconds,
                         value=sum(b.duration_ms for b in outcome.bins))
    return summary


def _cleaned(c: Compactor, deadline: float) -> dict[str, Any]:
    report = c.cleanup(deadline)
    out: dict[str, Any] = {"entries": report.entries, "objects_deleted": report.objects_deleted,
                           "postponed": report.postponed, "overdue": report.overdue,
                           "max_lag_seconds": round(report.max_lag_seconds, 1), "complete": report.complete}
    metrics.add_metric(name="CleanupObjectsDeleted", unit=MetricUnit.Count, value=report.objects_deleted)
    metrics.add_metric(name="CleanupOverdue", unit=MetricUnit.Count, value=report.overdue)
    if report.overdue:
        logger.error("cleanup deleted garbage later than the erasure window allows", **out)
    else:
        logger.info("cleanup", **out)
    return out


@tracer.capture_method
def scheduled(context: LambdaContext) -> dict[str, Any]:
    """The sweep: queue quiet partitions (fast), then clean up with the time that is left."""
    c = compactor()
    queued = c.sweep()
    logger.info("sweep queued quiet partitions", partitions=len(queued))
    return {"queued": len(queued), "cleanup": _cleaned(c, deadline_of(context))}


@metrics.log_metrics(raise_on_empty_metrics=False)
@tracer.capture_lambda_handler
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any] | PartialItemFailureResponse:
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return scheduled(context)
    if "Records" not in event:
        raise ValueError(f"compact expects an SQS batch or the sweep schedule, got keys {sorted(event)[:5]}")
    _checked.clear()
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
