"""Dead letters: list every DLQ of an env, peek at messages without consuming them, move them back.

Redrive never loses a message: SQS's own message move task when the endpoint has it (AWS), otherwise
one message at a time — receive, send to the source queue, and only then delete from the DLQ. A crash
between send and delete leaves a duplicate, never a gap; the services are idempotent per object version.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from contracts import naming

DLQ_SUFFIX = naming.dlq_name("")
Method = Literal["auto", "move-task", "manual"]


class DlqError(RuntimeError):
    """A queue cannot be found or a redrive cannot proceed; the message says which."""


@dataclass(frozen=True)
class DeadLetterQueue:
    name: str
    url: str
    arn: str
    depth: int
    in_flight: int
    sources: tuple[str, ...]  # names of the queues that dead-letter into it


@dataclass(frozen=True)
class Peeked:
    message_id: str
    body: str
    receive_count: int
    sent_at: float | None  # epoch seconds
    attributes: dict[str, Any]

    def summary(self) -> str:
        """What the message is about: the event type and object key when the body is an event."""
        try:
            event = json.loads(self.body)
        except ValueError:
            return ""
        if not isinstance(event, dict):
            return ""
        detail: dict[str, Any] = event["detail"] if isinstance(event.get("detail"), dict) else {}
        key = (detail.get("object") or {}).get("key") if isinstance(detail.get("object"), dict) else None
        parts = [str(event.get("detail-type") or ""), str(key or detail.get("object_id") or "")]
        return " ".join(p for p in parts if p)


def _name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def queue_urls(sqs: Any, env: str) -> list[str]:
    """Every queue of the env (AWS): list_queues with the `etl-<env>-` prefix, all pages."""
    urls: list[str] = []
    for page in sqs.get_paginator("list_queues").paginate(QueueNamePrefix=naming.prefix(env) + "-"):
        urls += page.get("QueueUrls", [])
    return sorted(urls)


def describe(sqs: Any, urls: Iterable[str]) -> list[DeadLetterQueue]:
    """The DLQs among `urls` (names ending in -dlq) with depths and source queues."""
    found = []
    for url in sorted(u for u in urls if _name(u).endswith(DLQ_SUFFIX)):
        attrs = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["QueueArn", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        sources = sqs.list_dead_letter_source_queues(QueueUrl=url).get("queueUrls", [])
        found.append(DeadLetterQueue(
            name=_name(url), url=url, arn=attrs["QueueArn"], depth=int(attrs["ApproximateNumberOfMessages"]),
            in_flight=int(attrs["ApproximateNumberOfMessagesNotVisible"]), sources=tuple(sorted(map(_name, sources))),
        ))
    return found


def resolve(dlqs: Iterable[DeadLetterQueue], env: str, queue: str) -> DeadLetterQueue:
    """A DLQ by URL, full name (etl-dev-ingest-dlq) or short name (ingest, ingest-dlq)."""
    dlqs = list(dlqs)
    short = queue.removesuffix(DLQ_SUFFIX)
    wanted = {queue, naming.dlq_name(naming.name(env, short)), naming.dlq_name(short)}
    for d in dlqs:
        if d.url == queue or d.name in wanted:
            return d
    known = ", ".join(d.name for d in dlqs) or "none"
    raise DlqError(f"no dead-letter queue {queue!r} in env {env}; DLQs: {known}")


def peek(sqs: Any, url: str, limit: int = 10, visibility_s: int = 5) -> list[Peeked]:
    """Read up to `limit` messages and make each visible again at once: nothing is deleted.
    (Peeking counts as a receive; a DLQ has no redrive policy, so that moves nothing.)"""
    seen: dict[str, Peeked] = {}
    handles: list[str] = []
    try:
        while len(seen) < limit:
            batch = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=min(10, limit - len(seen)), VisibilityTimeout=visibility_s,
                WaitTimeSeconds=0, AttributeNames=["All"], MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                break
            for m in batch:
                handles.append(m["ReceiptHandle"])
                attrs = m.get("Attributes", {})
                sent = attrs.get("SentTimestamp")
                seen.setdefault(m["MessageId"], Peeked(
                    m["MessageId"], m["Body"], int(attrs.get("ApproximateReceiveCount", 0)),
                    int(sent) / 1000 if sent else None, dict(m.get("MessageAttributes", {})),
                ))
    finally:
        for handle in handles:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    return list(seen.values())[:limit]


@dataclass(frozen=True)
class RedriveResult:
    moved: int
    method: str  # move-task | manual
    destination: str


Progress = Callable[[int, int], Any]  # (moved so far, total expected)


def redrive(
    sqs: Any,
    dlq: DeadLetterQueue,
    destination_url: str | None = None,
    *,
    method: Method = "auto",
    on_progress: Progress | None = None,
    poll_s: float = 1.0,
    sleep: Callable[[float], Any] = time.sleep,
) -> RedriveResult:
    """Move the DLQ's messages back to its source queue (or `destination_url`)."""
    if destination_url is None:
        if len(dlq.sources) != 1:
            raise DlqError(f"{dlq.name} is the DLQ of {len(dlq.sources)} queues ({', '.join(dlq.sources) or 'none'}): "
                           "say where to send its messages with --to QUEUE")
        destination_url = sqs.get_queue_url(QueueName=dlq.sources[0])["QueueUrl"]
    if method in ("auto", "move-task"):
        try:
            return _move_task(sqs, dlq, destination_url, on_progress, poll_s, sleep)
        except ClientError as exc:
            if method == "move-task":
                raise DlqError(f"message move task failed: {exc}") from exc
    return _manual(sqs, dlq, destination_url, on_progress)


def _move_task(sqs: Any, dlq: DeadLetterQueue, destination_url: str, on_progress: Progress | None,
               poll_s: float, sleep: Callable[[float], Any]) -> RedriveResult:
    """SQS moves the messages server side (attributes kept); poll the task until it ends."""
    dest_arn = sqs.get_queue_attributes(QueueUrl=destination_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    handle = sqs.start_message_move_task(SourceArn=dlq.arn, DestinationArn=dest_arn)["TaskHandle"]
    while True:
        tasks = sqs.list_message_move_tasks(SourceArn=dlq.arn, MaxResults=10).get("Results", [])
        task = next((t for t in tasks if t.get("TaskHandle") == handle), tasks[0] if tasks else {})
        moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
        total = int(task.get("ApproximateNumberOfMessagesToMove", dlq.depth) or dlq.depth)
        if on_progress:
            on_progress(moved, total)
        status = task.get("Status", "RUNNING")
        if status == "COMPLETED":
            return RedriveResult(moved, "move-task", _name(destination_url))
        if status in ("FAILED", "CANCELLED"):
            raise DlqError(f"message move task {status.lower()} after {moved} message(s): "
                           f"{task.get('FailureReason', 'no reason given')}")
        sleep(poll_s)


def _manual(sqs: Any, dlq: DeadLetterQueue, destination_url: str, on_progress: Progress | None) -> RedriveResult:
    """One message at a time: send, then delete. Stops when the DLQ is empty or the initial depth moved
    (messages that fail again and come back are left for the next redrive, not looped on)."""
    fifo = destination_url.endswith(".fifo")
    total, moved = dlq.depth, 0
    while moved < max(total, 1):
        batch = sqs.receive_message(QueueUrl=dlq.url, MaxNumberOfMessages=1, VisibilityTimeout=60, WaitTimeSeconds=0,
                                    AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
        if not batch:
            break
        m = batch[0]
        send: dict[str, Any] = {"QueueUrl": destination_url, "MessageBody": m["Body"]}
        if m.get("MessageAttributes"):
            send["MessageAttributes"] = m["MessageAttributes"]
        if fifo:
            attrs = m.get("Attributes", {})
            send["MessageGroupId"] = attrs.get("MessageGroupId", "redrive")
            send["MessageDeduplicationId"] = attrs.get("MessageDeduplicationId", m["MessageId"])
        try:
            sqs.send_message(**send)
        except ClientError as exc:
            sqs.change_message_visibility(QueueUrl=dlq.url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
            raise DlqError(f"could not send message {m['MessageId']} to {_name(destination_url)} ({exc}); "
                           f"it stays in {dlq.name}; {moved} moved before it") from exc
        sqs.delete_message(QueueUrl=dlq.url, ReceiptHandle=m["ReceiptHandle"])
        moved += 1
        if on_progress:
            on_progress(moved, max(total, moved))
    return RedriveResult(moved, "manual", _name(destination_url))
