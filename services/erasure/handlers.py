"""Lambda entry points of the erasure service.

- `api_handler`: the HTTP API (api.py).
- `events_handler`: ErasureRequested from the platform bus (SQS batch): validated and stored like an
  API request, idempotent on client_request_id (else the event id). An invalid request cannot get
  better by retrying: it is recorded as FAILED and announced (ErasureCompleted); errors that may
  pass on retry (throttling, network) raise, so the message is retried and then dead-lettered.
- `run_handler`: ticks of the run engine, from the schedule or its SQS queue (on demand, fan-in).
- `worker_handler`: the tasks of a run an SQS message names (several partitions of a dataset, or one task);
  on the last delivery each unfinished task's failure is recorded so verification can decide, then it
  raises so the message is dead-lettered.
Handlers never log subject ids: only request ids, hashes and counts. Traces follow the same rule: the
annotations are request/run ids and dataset names, responses and errors are not captured (an error may
quote a path of a partition keyed by a subject), and AWS SDK calls are not auto-traced (X-Ray would record
their S3 keys). Each worker task flushes its own metrics with a `dataset` dimension (contracts/metrics.py).
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from contracts import aws, events
from contracts import metrics as dataset_metrics
from contracts.commits import CommitSettings, PartitionCommitter
from contracts.datasets import load_datasets
from services.erasure import api, intake, worker
from services.erasure.config import Config
from services.erasure.engine import Engine, Ports
from services.erasure.lake import OutOfTime
from services.erasure.store import Store
from services.erasure.vault import load_salt
from services.erasure.workspace import Workspace

logger = Logger()
metrics = Metrics()
tracer = Tracer(auto_patch=False)
processor = BatchProcessor(event_type=EventType.SQS)
#: stop starting new work this long before Lambda's hard timeout
SAFETY_S = 60


def _send(url: str, body: dict[str, Any]) -> None:
    delay = {"DelaySeconds": min(900, int(body["delay_s"]))} if body.get("delay_s") else {}
    aws.client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(body), **delay)


def _committer(cfg: Config) -> PartitionCommitter:
    return PartitionCommitter.on_aws(bucket=cfg.lake_bucket, table_name=cfg.state_table, database=cfg.database,
                                     settings=CommitSettings(busy_wait_seconds=cfg.commit_busy_wait_s))


def engine(cfg: Config | None = None) -> Engine:
    cfg = cfg or Config.from_environ()
    topic = cfg.alerts_topic

    def notify(subject: str, message: str) -> None:
        if topic:
            aws.client("sns").publish(TopicArn=topic, Subject=subject[:100], Message=message)

    bus = cfg.bus
    ports = Ports(
        send=_send,
        publish=lambda details: events.publish(aws.client("events"), bus, details),
        notify=notify,
        metric=lambda name, value: metrics.add_metric(name=name, unit=MetricUnit.Count, value=value),
    )
    return Engine(cfg, store=Store.of(cfg), workspace=Workspace(cfg.erasure_bucket), committer=_committer(cfg),
                  ports=ports, salt=load_salt(cfg.salt_parameter))


def task_worker(cfg: Config) -> worker.Worker:
    return worker.Worker.of(cfg, store=Store.of(cfg), workspace=Workspace(cfg.erasure_bucket),
                            committer=_committer(cfg), salt=load_salt(cfg.salt_parameter), send=_send)


def _deadline(context: LambdaContext) -> float:
    return time.time() + max(5.0, context.get_remaining_time_in_millis() / 1000 - SAFETY_S)


# -- API ----------------------------------------------------------------------------------------------
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@logger.inject_lambda_context(clear_state=True)
def api_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return api.app.resolve(event, context)


# -- ErasureRequested from the bus ----------------------------------------------------------------
@tracer.capture_method(capture_response=False, capture_error=False)
def _intake_record(record: SQSRecord) -> dict[str, Any]:
    envelope = json.loads(record.body)
    logger.set_correlation_id(envelope.get("id"))
    if envelope.get("detail-type") != events.ErasureRequested.DETAIL_TYPE:
        raise ValueError(f"erasure intake does not handle {envelope.get('detail-type')!r}")
    cfg = Config.from_environ()
    store, salt = Store.of(cfg), load_salt(cfg.salt_parameter)
    data = envelope.get("detail") or {}
    key = data.get("client_request_id") or f"event:{envelope.get('id')}"
    try:
        body = intake.parse({k: v for k, v in data.items() if k != "schema_version"}, load_datasets())
    except intake.InvalidRequest as exc:
        req, created = intake.refuse(cfg, store, salt, data, exc.errors, source="event", idempotency=key)
        if created:
            events.publish(aws.client("events"), cfg.bus, [events.ErasureCompleted(
                request_id=req.id, state="FAILED", subject_hashes=req.subject_hashes, datasets=req.datasets,
                rows_removed=0, files_rewritten=0, verified=False)])
        logger.warning("invalid ErasureRequested recorded as FAILED", request_id=req.id, problems=exc.errors)
        tracer.put_annotation(key="request_id", value=req.id)
        return {"request_id": req.id, "created": created}
    req, created = intake.create(cfg, store, salt, body, caller=envelope.get("source"), source="event",
                                 idempotency=key)
    logger.info("erasure request received" if created else "duplicate erasure request", request_id=req.id,
                subjects=len(req.subject_hashes))
    tracer.put_annotation(key="request_id", value=req.id)
    tracer.put_annotation(key="datasets", value=",".join(sorted(req.datasets)))
    if created:
        api.maybe_start(cfg, store)
    return {"request_id": req.id, "created": created}


@metrics.log_metrics(raise_on_empty_metrics=False)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@logger.inject_lambda_context(clear_state=True)
def events_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=_intake_record, processor=processor, context=context)


# -- run ticks ----------------------------------------------------------------------------------------
@metrics.log_metrics(raise_on_empty_metrics=False)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@logger.inject_lambda_context(clear_state=True)
def run_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """One tick for a whole batch (schedule or SQS): failing raises, so SQS redelivers every message."""
    start, run_ids = False, []
    if "Records" in event:
        for r in event["Records"]:
            body = json.loads(r["body"])
            start |= body.get("action") == "start"
            if body.get("run_id"):
                run_ids.append(body["run_id"])
    report = engine().tick(start=start, deadline=_deadline(context), run_ids=run_ids)
    logger.info("tick", started=report["started"], advanced=report["advanced"], at_risk=report["at_risk"])
    return {"batchItemFailures": []}


# -- worker tasks -------------------------------------------------------------------------------------
@tracer.capture_method(capture_response=False, capture_error=False)
def _task_record(record: SQSRecord, lambda_context: LambdaContext) -> dict[str, Any]:
    body = json.loads(record.body)
    run_id, tasks = body["run_id"], worker.message_tasks(body)
    logger.append_keys(run_id=run_id, task_id=tasks[0], tasks=len(tasks))
    tracer.put_annotation(key="run_id", value=run_id)
    cfg = Config.from_environ()
    w = task_worker(cfg)
    try:
        out = worker.run_tasks(w, run_id, tasks, deadline=_deadline(lambda_context))
    except OutOfTime as exc:
        _send(cfg.work_queue_url, body)  # continue in a fresh invocation: finished tasks are skipped
        logger.info("tasks continue in another invocation", detail=w.safe_text(w.store.get_run(run_id), str(exc)))
        return {"status": "continued"}
    except Exception as exc:
        attempts = int(record.attributes.approximate_receive_count or 1)
        if attempts >= cfg.max_receive_count:
            reasons = ({t: f"{type(e).__name__}: {e}" for t, e in exc.errors.items()}
                       if isinstance(exc, worker.TasksFailed) else f"{type(exc).__name__}: {exc}")
            worker.record_failure(w, run_id, tasks, reasons)
            logger.error("tasks failed on their last delivery", attempts=attempts, error=type(exc).__name__)
        raise
    logger.info("tasks finished", **out)
    metrics.add_metric(name=dataset_metrics.ROWS_REMOVED, unit=MetricUnit.Count, value=out.get("rows_removed", 0))
    for name, counts in out.get("by_dataset", {}).items():  # tasks already done, or of a run gone, count nothing
        dataset = dataset_metrics.dataset_dimension(name)
        tracer.put_annotation(key="dataset", value=dataset)
        with dataset_metrics.for_dataset(metrics, dataset) as m:
            m.add_metric(name=dataset_metrics.ROWS_REMOVED, unit=MetricUnit.Count, value=counts["rows_removed"])
            m.add_metric(name=dataset_metrics.FILES_REWRITTEN, unit=MetricUnit.Count,
                         value=counts["files_rewritten"])
    return out


@metrics.log_metrics(raise_on_empty_metrics=False)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@logger.inject_lambda_context(clear_state=True)
def worker_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=_task_record, processor=processor, context=context)

