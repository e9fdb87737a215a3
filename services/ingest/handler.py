"""Lambda entry point: SQS batch of forwarded S3 'Object Created' events → ingest each object.

Partial batch failures: a record that raises is reported back and retried (then dead-lettered);
nothing is swallowed. Duplicate deliveries are absorbed by powertools idempotency on DynamoDB.
"""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from contracts import aws, events, progress
from services.ingest.ingest import ingest
from services.ingest.landing import event_reference, resolve

logger = Logger()
metrics = Metrics()
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
    obj = resolve(s3, ref)
    outcome = ingest(s3, obj, os.environ["RAW_BUCKET"])
    detail = outcome.event
    stage = "rejected" if outcome.rejected else "ingested"
    progress.record(
        aws.client("dynamodb"),
        os.environ["STATE_TABLE"],
        detail.object_id,
        stage,
        dataset=getattr(detail, "dataset", None),
        source_key=obj.key,
        raw_key=outcome.raw_key,
        size=obj.size,
        reason=getattr(detail, "reason", None),
    )
    events.publish(aws.client("events"), os.environ["BUS_NAME"], [detail])
    if outcome.rejected:
        logger.warning("object rejected", object_id=detail.object_id, reason=detail.reason, key=obj.key)
        metrics.add_metric(name="ObjectsRejected", unit=MetricUnit.Count, value=1)
    else:
        logger.info("object stored raw", object_id=detail.object_id, raw_key=outcome.raw_key, size=obj.size)
        metrics.add_metric(name="ObjectsIngested", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="BytesIngested", unit=MetricUnit.Bytes, value=obj.size)
    return {"object_id": detail.object_id, "event": detail.DETAIL_TYPE, "raw_key": outcome.raw_key}


def record_handler(record: SQSRecord) -> dict[str, Any]:
    envelope = json.loads(record.body)
    logger.set_correlation_id(envelope.get("id"))
    return ingest_once(ref=event_reference(envelope))


@metrics.log_metrics(raise_on_empty_metrics=False)
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency_config.register_lambda_context(context)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
