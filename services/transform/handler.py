"""Lambda entry point: SQS batch of RawObjectStored / ChunkPlanned events → plan or transform.

A RawObjectStored of a big splittable object becomes ChunkPlanned events (one invocation each);
otherwise the object is transformed as its single chunk. Failures follow docs/design/failures.md:
a permanent one (TransformError, an AWS limit) ends the object at once — status `failed` and an
ObjectFailed event with the reason, the message deleted, no retry; a transient one is reported as a
batch item failure and retried, and on its last attempt the status record and ObjectFailed say why
before the message goes to the DLQ. Nothing is swallowed. Each transformed chunk flushes its own metrics with a
`dataset` dimension (contracts/metrics.py); trace annotations carry the dataset only.
"""

from __future__ import annotations

import json
import os
import time
from contextvars import ContextVar
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from contracts import aws, events, failures, progress
from contracts import metrics as dataset_metrics
from contracts.commits import CommitSettings, PartitionCommitter
from services.transform import jobs

logger = Logger()
metrics = Metrics()
tracer = Tracer()
processor = BatchProcessor(event_type=EventType.SQS)
idempotency_config = IdempotencyConfig(
    event_key_jmespath="[kind, object_id, chunk_index]", expires_after_seconds=7 * 24 * 3600
)
persistence = DynamoDBPersistenceLayer(table_name=os.environ.get("IDEMPOTENCY_TABLE", "idempotency"))
#: end of the current invocation (epoch seconds): commits stop before it, so a timeout never holds a partition
deadline: ContextVar[float | None] = ContextVar("deadline", default=None)
#: the SQS receive count of the message being handled (1 on the first delivery)
attempt: ContextVar[int] = ContextVar("attempt", default=1)


def _committer(env: jobs.Env) -> PartitionCommitter:
    return PartitionCommitter.on_aws(bucket=env.lake, table_name=env.state_table, database=env.database,
                                     settings=CommitSettings(busy_wait_seconds=env.commit_busy_wait_s))


@idempotent_function(data_keyword_argument="job", config=idempotency_config, persistence_store=persistence)
def run_once(job: dict[str, Any]) -> dict[str, Any]:
    """Plan or transform once; a permanent failure is an outcome (stored, so a duplicate does not redo it)."""
    try:
        return _run(job)
    except Exception as exc:
        if not failures.is_permanent(exc):
            raise
        return announce_failure(job, exc, attempt.get(), permanent=True)


def _run(job: dict[str, Any]) -> dict[str, Any]:
    env = jobs.Env.from_environ()
    if job["kind"] == "plan":
        detail = events.RawObjectStored.model_validate(job["detail"])
        chunks = jobs.plan(detail, env)
        if len(chunks) > 1:
            progress.record(aws.client("dynamodb"), env.state_table, detail.object_id, "chunked",
                            chunk_count=len(chunks))
            events.publish(aws.client("events"), env.bus, chunks)
            logger.info("object split into chunks", object_id=detail.object_id, chunks=len(chunks))
            return {"object_id": detail.object_id, "chunks": len(chunks)}
        job = {"detail": chunks[0].model_dump()}
    chunk = events.ChunkPlanned.model_validate(job["detail"])
    started = time.monotonic()
    out = jobs.transform_chunk(chunk, env, _committer(env), deadline.get())
    logger.info("chunk transformed", **{k: v for k, v in out.items() if k != "object_id"}, object_id=chunk.object_id)
    with dataset_metrics.for_dataset(metrics, chunk.dataset) as per_dataset:
        for m in (metrics, per_dataset):
            m.add_metric(name=dataset_metrics.ROWS_GOOD, unit=MetricUnit.Count, value=out["rows_good"])
            m.add_metric(name=dataset_metrics.ROWS_QUARANTINED, unit=MetricUnit.Count, value=out["rows_quarantined"])
        per_dataset.add_metric(name=dataset_metrics.BYTES_IN, unit=MetricUnit.Bytes, value=chunk.end - chunk.start)
        # one file per partition a chunk touches (jobs.commit_partitions)
        per_dataset.add_metric(name=dataset_metrics.FILES_WRITTEN, unit=MetricUnit.Count, value=out["partitions"])
        per_dataset.add_metric(name=dataset_metrics.CHUNK_LATENCY, unit=MetricUnit.Milliseconds,
                               value=round((time.monotonic() - started) * 1000, 1))
    return out


def job_of(envelope: dict[str, Any]) -> dict[str, Any]:
    detail = events.parse_event(envelope)
    if isinstance(detail, events.RawObjectStored):
        return {"kind": "plan", "object_id": detail.object_id, "chunk_index": -1, "detail": detail.model_dump()}
    if isinstance(detail, events.ChunkPlanned):
        return {"kind": "chunk", "object_id": detail.object_id, "chunk_index": detail.chunk_index,
                "detail": detail.model_dump()}
    raise ValueError(f"transform does not handle {envelope.get('detail-type')!r}")


@tracer.capture_method
def record_handler(record: SQSRecord) -> dict[str, Any]:
    attempts = failures.receive_count(record.raw_event)
    try:
        envelope = json.loads(record.body)
        logger.append_keys(event_id=envelope.get("id"))
        job = job_of(envelope)
    except Exception as exc:  # no object to name: the DLQ keeps the message, the status record says why
        if failures.last_attempt(attempts):
            announce_unreadable(record, exc, attempts)
        raise
    logger.set_correlation_id(job["object_id"])  # one id from landing to compaction: ingest set the same
    tracer.put_annotation(key="dataset", value=dataset_metrics.dataset_dimension(job["detail"].get("dataset")))
    attempt.set(attempts)
    try:
        return run_once(job=job)
    except Exception as exc:
        if failures.last_attempt(attempts):
            announce_failure(job, exc, attempts, permanent=False)
        raise


def announce_failure(job: dict[str, Any], exc: Exception, attempts: int, *, permanent: bool) -> dict[str, Any]:
    """Say why the object ends here: at once when permanent, before the DLQ on the last transient attempt.

    The raw copy is untouched; `etl status` shows the reason, ObjectFailed carries it.
    """
    detail = job["detail"]
    reason = failures.describe(exc)
    env = jobs.Env.from_environ()
    chunk_index = None if job["kind"] == "plan" else job["chunk_index"]
    progress.record(aws.client("dynamodb"), env.state_table, job["object_id"], "failed", reason=reason,
                    attempts=attempts, permanent=permanent, dataset=detail["dataset"])
    events.publish(aws.client("events"), env.bus, [events.ObjectFailed(
        dataset=detail["dataset"], object_id=job["object_id"], raw_key=detail["raw_key"], chunk_index=chunk_index,
        reason=reason, attempts=attempts, permanent=permanent)])
    logger.error("object failed: permanent, not retried" if permanent else "object failed after every attempt",
                 object_id=job["object_id"], reason=reason, attempts=attempts)
    metrics.add_metric(name="ObjectsFailed", unit=MetricUnit.Count, value=1)
    return {"object_id": job["object_id"], "chunk": chunk_index, "failed": reason, "permanent": permanent}


def announce_unreadable(record: SQSRecord, exc: Exception, attempts: int) -> None:
    """A message that names no object (not JSON, not a platform event): status under its message id."""
    env = jobs.Env.from_environ()
    reason = failures.describe(exc)
    progress.record(aws.client("dynamodb"), env.state_table, f"message-{record.message_id}", "failed",
                    reason=f"unreadable message, kept in the DLQ: {reason}", attempts=attempts)
    logger.error("unreadable message goes to the DLQ", message_id=record.message_id, reason=reason)


@metrics.log_metrics(raise_on_empty_metrics=False)
@tracer.capture_lambda_handler
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    idempotency_config.register_lambda_context(context)
    deadline.set(time.time() + context.get_remaining_time_in_millis() / 1000 - 5)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
