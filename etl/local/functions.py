"""Run a function declared in the program in-process, fed by its SQS event source mapping.

Honours what Lambda's SQS poller does: batch size, maximum concurrency (one polling thread per
slot), partial batch failures (`batchItemFailures`), the visibility timeout and, through moto,
the queue's redrive policy to the DLQ. Run as `python -m etl.local.functions SPEC_JSON` with the
function's environment variables; the supervisor starts one such process per function.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from contracts import aws

LOCAL_CONCURRENCY_CAP = int(os.environ.get("ETL_LOCAL_MAX_CONCURRENCY", "2"))


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    handler: str
    timeout_s: int
    memory_mb: int
    environment: dict[str, str]


@dataclass(frozen=True)
class MappingSpec:
    queue_arn: str
    queue_url: str
    batch_size: int
    max_concurrency: int
    report_batch_item_failures: bool


@dataclass(frozen=True)
class ScheduleSpec:
    rule: str
    expression: str

    @property
    def every_s(self) -> float:
        return rate_seconds(self.expression)


_RATE_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


def rate_seconds(expression: str) -> float:
    """Seconds between firings of `rate(N unit)`; cron expressions are not fired locally."""
    expr = expression.strip()
    if not (expr.startswith("rate(") and expr.endswith(")")):
        raise ValueError(f"the local timer fires rate(...) schedules only, not {expression!r}")
    value, _, unit = expr[5:-1].strip().partition(" ")
    if unit not in _RATE_UNITS or not value.isdigit() or int(value) < 1:
        raise ValueError(f"malformed schedule expression {expression!r}")
    return int(value) * _RATE_UNITS[unit] * float(os.environ.get("ETL_LOCAL_SCHEDULE_SCALE", "1"))


def scheduled_event(rule_arn: str, region: str) -> dict[str, Any]:
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "000000000000", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region, "resources": [rule_arn], "detail": {},
    }


class LambdaContext:
    """The subset of Lambda's context object handlers and powertools use."""

    def __init__(self, fn: FunctionSpec) -> None:
        self.function_name = fn.name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = fn.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{fn.name}"
        self.log_group_name = f"/aws/lambda/{fn.name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + fn.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def report(started: float) -> dict[str, float]:
    """Lambda's REPORT line, locally: wall duration (what Lambda bills) and the host's peak RSS so far."""
    return {"duration_ms": round((time.perf_counter() - started) * 1000, 1), "max_rss_mb": round(peak_rss_mb(), 1)}


def peak_rss_mb() -> float:
    """This process's own peak: VmHWM starts afresh at exec, ru_maxrss would carry the supervisor's peak over."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stop_processes(procs: Iterable[subprocess.Popen], timeout_s: float = 10) -> None:
    """SIGTERM every process, then SIGKILL whichever has not exited within the timeout."""
    procs = list(procs)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()


#: set in every function host before a handler is imported: no X-Ray daemon listens locally, so powertools'
#: Tracer must neither patch clients nor try to send segments (the program asks for active tracing on AWS)
HOST_ENVIRONMENT = {"POWERTOOLS_TRACE_DISABLED": "true"}


def load_handler(dotted: str) -> Any:
    """Import a handler as Lambda would, in this host's environment (tracing off: see HOST_ENVIRONMENT)."""
    os.environ.update(HOST_ENVIRONMENT)
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda builds from a received SQS batch."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


def failed_ids(response: Any, messages: list[dict[str, Any]], reports_failures: bool) -> set[str]:
    """Which messages stay on the queue: the reported failures, or all if the response is malformed."""
    if not reports_failures:
        return set()
    if response is None or response == {}:
        return set()
    try:
        return {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
    except (AttributeError, KeyError, TypeError):
        return {m["MessageId"] for m in messages}


class Poller:
    def __init__(self, fn: FunctionSpec, mapping: MappingSpec, stop: threading.Event) -> None:
        self.fn, self.mapping, self.stop = fn, mapping, stop
        self.handler = load_handler(fn.handler)
        self.retry_delay = os.environ.get("ETL_LOCAL_RETRY_DELAY_S")

    def run(self) -> None:
        sqs = aws.client("sqs")
        while not self.stop.is_set():
            try:
                resp = sqs.receive_message(
                    QueueUrl=self.mapping.queue_url,
                    MaxNumberOfMessages=min(10, self.mapping.batch_size),
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            except Exception:  # the emulator is going away or restarting: back off, keep polling
                if self.stop.wait(1):
                    return
                continue
            messages = resp.get("Messages", [])
            if messages:
                self.invoke(sqs, messages)

    def invoke(self, sqs: Any, messages: list[dict[str, Any]]) -> None:
        event = sqs_event(messages, self.mapping.queue_arn, sqs.meta.region_name)
        started = time.perf_counter()
        try:
            response = self.handler(event, LambdaContext(self.fn))
            failed = failed_ids(response, messages, self.mapping.report_batch_item_failures)
        except Exception:  # a raising handler fails the whole batch, as on Lambda
            traceback.print_exc()
            failed = {m["MessageId"] for m in messages}
        took = report(started)  # the handler's time only: the poller's deletes are not Lambda's
        done = [m for m in messages if m["MessageId"] not in failed]
        for i in range(0, len(done), 10):
            sqs.delete_message_batch(
                QueueUrl=self.mapping.queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done[i : i + 10])],
            )
        if failed and self.retry_delay is not None:
            # Local-only shortcut: make failed messages visible again sooner than the queue's timeout.
            for m in messages:
                if m["MessageId"] in failed:
                    sqs.change_message_visibility(
                        QueueUrl=self.mapping.queue_url,
                        ReceiptHandle=m["ReceiptHandle"],
                        VisibilityTimeout=int(self.retry_delay),
                    )
        print(json.dumps({"local": "invocation", "function": self.fn.name, "records": len(messages),
                          "failed": len(failed), **took}), flush=True)


def fire_schedule(fn: FunctionSpec, schedule: ScheduleSpec, stop: threading.Event) -> None:
    """Invoke the handler every period, like an EventBridge schedule; errors are printed, not hidden."""
    handler = load_handler(fn.handler)
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    while not stop.wait(schedule.every_s):
        started = time.perf_counter()
        try:
            handler(scheduled_event(schedule.rule, region), LambdaContext(fn))
            outcome = "ok"
        except Exception:  # EventBridge would retry and then drop; the log shows the failure
            traceback.print_exc()
            outcome = "error"
        print(json.dumps({"local": "schedule", "function": fn.name, "rule": schedule.rule, "outcome": outcome,
                          **report(started)}), flush=True)


def serve(fn: FunctionSpec, mappings: list[MappingSpec], schedules: Sequence[ScheduleSpec] = ()) -> None:
    """Poll every mapping and fire every schedule of the function until SIGTERM/SIGINT."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = []
    for mapping in mappings:
        slots = max(1, min(mapping.max_concurrency, LOCAL_CONCURRENCY_CAP))
        poller = Poller(fn, mapping, stop)
        for n in range(slots):
            t = threading.Thread(target=poller.run, name=f"{fn.name}-{n}", daemon=True)
            t.start()
            threads.append(t)
    for schedule in schedules:
        t = threading.Thread(target=fire_schedule, args=(fn, schedule, stop), name=schedule.rule, daemon=True)
        t.start()
        threads.append(t)
    while not stop.wait(0.5):
        pass
    for t in threads:
        t.join(timeout=5)


def main(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    fn = FunctionSpec(**spec["function"])
    serve(fn, [MappingSpec(**m) for m in spec["mappings"]], [ScheduleSpec(**x) for x in spec.get("schedules", [])])


if __name__ == "__main__":
    main(sys.argv)
