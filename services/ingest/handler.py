"""Lambda entry point: SQS batch of forwarded S3 'Object Created' events → ingest each object.

Failures follow docs/design/failures.md. An object that can never be ingested (gone before ingest
ran, a key or metadata over an S3 limit, …) is rejected at once: status `rejected`, ObjectRejected
with the reason, no retry. Anything else raises: the record is reported back and retried, and on its
last attempt the status record (`failed`) and an IngestFailed event say why before the message goes
to the DLQ; nothing is swallowed. Duplicate deliveries are absorbed by powertools idempotency on DynamoDB.
Each object ingested or rejected flushes its own metrics with a `dataset` dimension (contracts/metrics.py);
trace annotations (searchable in X-Ray) carry the dataset only.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from contracts import aws, events, failures, layout, progress
from contracts import metrics as dataset_metrics
from services.ingest.config import settings
from services.ingest.ingest import Outcome, ingest, missing, refused
from services.ingest.landing import LandedObject, event_reference, resolve

logger = Logger()
metrics = Metrics()
tracer = Tracer()
processor = BatchProcessor(event_type=EventType.SQS)
idempotency_config = IdempotencyConfig(
    event_key_jmespath="[bucket, key, version, etag]",
    expires_after_seconds=7 * 24 * 3600,
    raise_on_no_idempotency_key=True,
)
persistence = DynamoDBPersistenceLayer(table_name=os.environ.get("IDEMPOTENCY_TABLE", "idempotency"))


@idempotent_function(data_keyword_argument="ref", config=idempotency_config, persistence_store=persistence)
def ingest_once(ref: dict[str, Any]) -> dict[str, Any]:
    """Copy + announce one object version exactly once (a failure clears the record: retry redoes it)."""
    s3 = aws.client("s3")
    started = time.monotonic()
    obj = resolve(s3, ref)
    try:
        outcome = missing(ref) if obj is None else ingest(s3, obj, settings().raw_bucket)
    except Exception as exc:  # AWS refused the request itself: no retry would pass
        if not failures.is_permanent(exc):
            raise
        outcome = refused(ref, failures.describe(exc))
    return announce(outcome, obj, started)


def announce(outcome: Outcome, obj: LandedObject | None, started: float) -> dict[str, Any]:
    """Status record, event, log and metrics of one ingested or rejected object."""
    detail = outcome.event
    size = obj.size if obj else 0
    logger.set_correlation_id(detail.object_id)  # the id every later event and log line of this object carries
    dataset = dataset_metrics.dataset_dimension(getattr(detail, "dataset", None))
    tracer.put_annotation(key="dataset", value=dataset)
    stage = "rejected" if outcome.rejected else "ingested"
    progress.record(
        aws.client("dynamodb"),
        settings().state_table,
        detail.object_id,
        stage,
        dataset=getattr(detail, "dataset", None),
        source_key=detail.source_key,
        raw_key=outcome.raw_key,
        size=size,
        reason=getattr(detail, "reason", None),
    )
    events.publish(aws.client("events"), settings().bus, [detail])
    with dataset_metrics.for_dataset(metrics, dataset) as per_dataset:
        if outcome.rejected:
            logger.warning("object rejected", object_id=detail.object_id, reason=detail.reason, key=detail.source_key)
            for m in (metrics, per_dataset):
                m.add_metric(name=dataset_metrics.OBJECTS_REJECTED, unit=MetricUnit.Count, value=1)
        else:
            logger.info("object stored raw", object_id=detail.object_id, raw_key=outcome.raw_key, size=size)
            for m in (metrics, per_dataset):
                m.add_metric(name=dataset_metrics.OBJECTS_INGESTED, unit=MetricUnit.Count, value=1)
                m.add_metric(name=dataset_metrics.BYTES_INGESTED, unit=MetricUnit.Bytes, value=size)
        per_dataset.add_metric(name=dataset_metrics.INGEST_LATENCY, unit=MetricUnit.Milliseconds,
                               value=round((time.monotonic() - started) * 1000, 1))
    return {"object_id": detail.object_id, "event": detail.DETAIL_TYPE, "raw_key": outcome.raw_key}


@tracer.capture_method
def record_handler(record: SQSRecord) -> dict[str, Any]:
    attempts = failures.receive_count(record.raw_event)
    ref: dict[str, Any] | None = None
    try:
        envelope = json.loads(record.body)
        logger.set_correlation_id(envelope.get("id"))  # until the object id is known
        logger.append_keys(event_id=envelope.get("id"))
        ref = event_reference(envelope)
        return ingest_once(ref=ref)
    except Exception as exc:
        if failures.last_attempt(attempts):
            announce_failure(record, ref, exc, attempts)
        raise


def announce_failure(record: SQSRecord, ref: dict[str, Any] | None, exc: Exception, attempts: int) -> None:
    """Last attempt: the status record (and IngestFailed) say why before the message goes to the DLQ."""
    reason = failures.describe(exc)
    env = settings()
    ddb, table = aws.client("dynamodb"), env.state_table
    if ref is None:  # not an S3 event: no object to name; the DLQ keeps the message
        progress.record(ddb, table, f"message-{record.message_id}", "failed",
                        reason=f"unreadable message, kept in the DLQ: {reason}", attempts=attempts)
        logger.error("unreadable message goes to the DLQ", message_id=record.message_id, reason=reason)
        return
    oid = layout.object_id(ref["bucket"], ref["key"], ref["version"] or ref["etag"])
    dataset = layout.LandingKey.parse(ref["key"]).dataset
    progress.record(ddb, table, oid, "failed", reason=reason, attempts=attempts, source_key=ref["key"],
                    dataset=dataset)
    events.publish(aws.client("events"), env.bus, [events.IngestFailed(
        dataset=dataset, object_id=oid, source_bucket=ref["bucket"], source_key=ref["key"],
        source_version=ref["version"], reason=reason, attempts=attempts)])
    logger.error("object failed after every attempt", object_id=oid, reason=reason, attempts=attempts)
    metrics.add_metric(name="ObjectsFailed", unit=MetricUnit.Count, value=1)


@metrics.log_metrics(raise_on_empty_metrics=False)
@tracer.capture_lambda_handler
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency_config.register_lambda_context(context)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
