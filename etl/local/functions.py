"""Run a function declared in the program as local "sandboxes", fed by its SQS event source mappings.

Honours what Lambda's SQS poller does: batch size, maximum concurrency (one host process per
slot, each running one invocation at a time), partial batch failures (`batchItemFailures`) and,
through moto, the queue's redrive policy to the DLQ. Local deviations that fit a person's
patience: failed messages come back after `ETL_LOCAL_RETRY_DELAY_S` (2 s), and in-flight messages
are held by a heartbeat rather than the queue's long visibility timeout, so a crashed host's
messages come back within `ETL_LOCAL_VISIBILITY_S` (10 s). Run as
`python -m etl.local.functions SPEC_JSON SLOT` with the function's environment variables.
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
from collections.abc import Iterable
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
    #: MaximumBatchingWindowInSeconds: gather up to `batch_size` records for this long before invoking
    batching_window_s: int = 0


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


def retry_delay_s() -> int:
    """Seconds until a failed message is visible again: a local deviation (AWS waits the queue's timeout)."""
    return int(os.environ.get("ETL_LOCAL_RETRY_DELAY_S", "2"))


def visibility_s() -> int:
    """How long a received message stays invisible between heartbeats; a crashed host's return after this."""
    return max(2, int(os.environ.get("ETL_LOCAL_VISIBILITY_S", "10")))


class Heartbeat:
    """Keeps in-flight messages invisible while their invocation runs.

    Locally messages are received with a short visibility timeout (`visibility_s`) instead of the
    queue's production one (e.g. 5,400 s), so a host that crashes mid-invocation gives its messages
    back within seconds. While the invocation runs, this thread renews their invisibility. Past the
    function's timeout Lambda would have ended the invocation; the local host cannot stop a running
    handler, so it keeps holding the messages (no second, concurrent delivery Lambda would never
    make) and says so in the log.
    """

    def __init__(self, fn: FunctionSpec, queue_url: str, messages: list[dict[str, Any]], sqs: Any) -> None:
        # the poller's client (clients are thread-safe): a new thread's own client would be built per
        # invocation, ~0.5 s of CPU taken from the handler it runs beside and counted in its duration
        self.fn, self.queue_url, self.handles, self.sqs = fn, queue_url, [m["ReceiptHandle"] for m in messages], sqs
        self.deadline = time.monotonic() + fn.timeout_s
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def hold(self, messages: list[dict[str, Any]]) -> None:
        """Renew these too (records gathered into the batch after it was first received)."""
        self.handles += [m["ReceiptHandle"] for m in messages]

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        sqs, every, warned = self.sqs, visibility_s() / 3, False
        while not self.done.wait(every):
            if not warned and time.monotonic() > self.deadline:
                warned = True
                print(json.dumps({"local": "timeout-exceeded", "function": self.fn.name,
                                  "timeout_s": self.fn.timeout_s}), flush=True)
            for i in range(0, len(self.handles), 10):
                try:
                    sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=[
                        {"Id": str(n), "ReceiptHandle": h, "VisibilityTimeout": visibility_s()}
                        for n, h in enumerate(self.handles[i : i + 10])])
                except Exception:  # the emulator is going away: the messages come back on their own
                    traceback.print_exc()


class Poller:
    """One event source mapping as seen by one sandbox: receive a batch, invoke, settle the messages."""

    def __init__(self, fn: FunctionSpec, mapping: MappingSpec, handler: Any = None) -> None:
        self.fn, self.mapping = fn, mapping
        self.handler = handler or load_handler(fn.handler)

    def poll(self, sqs: Any, wait_s: int) -> bool:
        """Receive one batch and invoke the handler on it; False when the queue had nothing."""
        messages = self._receive(sqs, self.mapping.batch_size, wait_s)
        if messages:
            with Heartbeat(self.fn, self.mapping.queue_url, messages, sqs) as beat:
                if self.mapping.batching_window_s:
                    self._gather(sqs, messages, beat)
                self.invoke(sqs, messages)
        return bool(messages)

    def _receive(self, sqs: Any, up_to: int, wait_s: int) -> list[dict[str, Any]]:
        try:
            resp = sqs.receive_message(
                QueueUrl=self.mapping.queue_url,
                MaxNumberOfMessages=min(10, up_to),
                WaitTimeSeconds=wait_s,
                VisibilityTimeout=visibility_s(),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        except Exception:  # the emulator is going away or restarting: the caller backs off
            return []
        return list(resp.get("Messages", []))

    def _gather(self, sqs: Any, messages: list[dict[str, Any]], beat: Heartbeat) -> None:
        """Like Lambda's batching window: keep receiving until the batch is full or the window has passed.

        The messages already held stay invisible meanwhile (the heartbeat renews them); the function's
        timeout counts from the invocation, not from the first record.
        """
        ends = time.monotonic() + self.mapping.batching_window_s
        while len(messages) < self.mapping.batch_size and (left := ends - time.monotonic()) > 0:
            more = self._receive(sqs, self.mapping.batch_size - len(messages), max(1, min(20, round(left))))
            beat.hold(more)
            messages += more
        beat.deadline = time.monotonic() + self.fn.timeout_s

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
        for m in messages:  # local deviation: failed messages come back after seconds, not the queue's timeout
            if m["MessageId"] in failed:
                sqs.change_message_visibility(QueueUrl=self.mapping.queue_url, ReceiptHandle=m["ReceiptHandle"],
                                              VisibilityTimeout=retry_delay_s())
        print(json.dumps({"local": "invocation", "function": self.fn.name, "records": len(messages),
                          "failed": len(failed), **took}), flush=True)


def fire(fn: FunctionSpec, handler: Any, schedule: ScheduleSpec, region: str) -> None:
    """One scheduled invocation, like an EventBridge schedule; errors are printed, not hidden."""
    started = time.perf_counter()
    try:
        handler(scheduled_event(schedule.rule, region), LambdaContext(fn))
        outcome = "ok"
    except Exception:  # EventBridge would retry and then drop; the log shows the failure
        traceback.print_exc()
        outcome = "error"
    print(json.dumps({"local": "schedule", "function": fn.name, "rule": schedule.rule, "outcome": outcome,
                      **report(started)}), flush=True)


def fire_schedule(fn: FunctionSpec, schedule: ScheduleSpec, stop: threading.Event) -> None:
    """Invoke the handler every period until stopped (a standalone timer; hosts fire their schedules in `serve`)."""
    handler = load_handler(fn.handler)
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    while not stop.wait(schedule.every_s):
        fire(fn, handler, schedule, region)


def slots(mappings: Iterable[MappingSpec]) -> int:
    """Host processes for a function: its largest mapping concurrency, capped locally (at least one)."""
    return max([1, *(min(m.max_concurrency, LOCAL_CONCURRENCY_CAP) for m in mappings)])


def serve(fn: FunctionSpec, mappings: list[MappingSpec], schedules: Iterable[ScheduleSpec] = (), slot: int = 0,
          stop: threading.Event | None = None) -> None:
    """One sandbox: poll every mapping and fire every schedule given, one invocation at a time.

    Like a Lambda execution environment, a host process never runs two invocations at once, so a
    handler module's state (a powertools BatchProcessor, a metrics buffer) is never shared between
    concurrent invocations; the supervisor runs `slots()` processes per function for concurrency.
    """
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    handler = load_handler(fn.handler)
    pollers = [Poller(fn, m, handler) for m in mappings]
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    due = [(s, time.monotonic() + s.every_s) for s in schedules]
    sqs = aws.client("sqs") if pollers else None
    wait_s = 1 if len(pollers) == 1 and not due else 0
    while not stop.is_set():
        busy = False
        for poller in pollers:
            busy = poller.poll(sqs, wait_s) or busy
            if stop.is_set():
                return
        for i, (schedule, at) in enumerate(due):
            if time.monotonic() >= at:
                fire(fn, handler, schedule, region)
                due[i] = (schedule, time.monotonic() + schedule.every_s)
        if not busy and wait_s == 0:
            stop.wait(0.25)


def main(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    fn = FunctionSpec(**spec["function"])
    serve(fn, [MappingSpec(**m) for m in spec["mappings"]], [ScheduleSpec(**x) for x in spec.get("schedules", [])],
          slot=int(argv[2]) if len(argv) > 2 else 0)


if __name__ == "__main__":
    main(sys.argv)
