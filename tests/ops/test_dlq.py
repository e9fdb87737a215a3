"""`etl dlq list|show|redrive` against moto server over HTTP: nothing is deleted by show, nothing lost by redrive."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import typer
from botocore.exceptions import ClientError
from rich.console import Console
from typer.testing import CliRunner

from etl import dlq, dlq_cli
from etl.local.platform import PlatformState, StackState


@dataclass
class Env:
    name: str
    sqs: Any
    urls: dict[str, str]

    def put(self, queue: str, n: int) -> list[str]:
        bodies = [json.dumps({"detail-type": "Object Created", "detail": {"object": {"key": f"customers/{i}.csv"}}})
                  for i in range(n)]
        for i, body in enumerate(bodies):
            self.sqs.send_message(QueueUrl=self.urls[queue], MessageBody=body,
                                  MessageAttributes={"attempt": {"DataType": "Number", "StringValue": str(i)}})
        return bodies

    def drain(self, queue: str) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(QueueUrl=self.urls[queue], MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                                MessageAttributeNames=["All"]).get("Messages", []):
            got += batch
            for m in batch:
                self.sqs.delete_message(QueueUrl=self.urls[queue], ReceiptHandle=m["ReceiptHandle"])
        return got

    def depth(self, queue: str) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.urls[queue], AttributeNames=["All"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def dlqs(self) -> list[dlq.DeadLetterQueue]:
        return dlq.describe(self.sqs, dlq.queue_urls(self.sqs, self.name))


@pytest.fixture
def env(moto_endpoint: str) -> Env:
    """A fresh env: ingest and transform queues with DLQs, a queue without one, and another env's DLQ."""
    name = f"dq{uuid.uuid4().hex[:6]}"
    sqs = boto3.client("sqs")
    urls: dict[str, str] = {}
    for service in ("ingest", "transform"):
        dlq_url = sqs.create_queue(QueueName=f"etl-{name}-{service}-dlq")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        urls[f"{service}-dlq"] = dlq_url
        urls[f"{service}-queue"] = sqs.create_queue(QueueName=f"etl-{name}-{service}-queue", Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 3})})["QueueUrl"]
    urls["plain"] = sqs.create_queue(QueueName=f"etl-{name}-plain")["QueueUrl"]
    sqs.create_queue(QueueName=f"etl-x{name}-ingest-dlq")
    return Env(name, sqs, urls)


def test_list_finds_every_dlq_of_the_env_with_depth_and_source(env: Env) -> None:
    env.put("ingest-dlq", 2)
    found = env.dlqs()
    assert [(d.name, d.depth, d.sources) for d in found] == [
        (f"etl-{env.name}-ingest-dlq", 2, (f"etl-{env.name}-ingest-queue",)),
        (f"etl-{env.name}-transform-dlq", 0, (f"etl-{env.name}-transform-queue",)),
    ]


def test_resolve_accepts_short_and_full_names_and_urls(env: Env) -> None:
    found = env.dlqs()
    full = f"etl-{env.name}-ingest-dlq"
    for ref in ("ingest", "ingest-dlq", full, env.urls["ingest-dlq"]):
        assert dlq.resolve(found, env.name, ref).name == full
    with pytest.raises(dlq.DlqError, match=f"no dead-letter queue 'erasure' in env {env.name}; DLQs: {full}, "):
        dlq.resolve(found, env.name, "erasure")


def test_show_peeks_without_deleting_and_restores_visibility(env: Env) -> None:
    bodies = env.put("ingest-dlq", 3)
    target = dlq.resolve(env.dlqs(), env.name, "ingest")
    seen = dlq.peek(env.sqs, target.url, limit=10, visibility_s=60)
    assert sorted(m.body for m in seen) == sorted(bodies)
    assert {m.summary() for m in seen} == {f"Object Created customers/{i}.csv" for i in range(3)}
    assert all(m.receive_count == 1 and m.sent_at for m in seen)
    # visible again at once despite the 60 s visibility of the peek: a consumer gets all three now
    assert sorted(m["Body"] for m in env.drain("ingest-dlq")) == sorted(bodies)


def test_show_respects_the_limit(env: Env) -> None:
    env.put("ingest-dlq", 5)
    assert len(dlq.peek(env.sqs, env.urls["ingest-dlq"], limit=2)) == 2
    assert env.depth("ingest-dlq") == 5


def test_manual_redrive_moves_every_message_back_with_its_attributes(env: Env) -> None:
    bodies = env.put("ingest-dlq", 3)
    target = dlq.resolve(env.dlqs(), env.name, "ingest")
    progress: list[tuple[int, int]] = []
    result = dlq.redrive(env.sqs, target, method="manual", on_progress=lambda d, t: progress.append((d, t)))
    assert result == dlq.RedriveResult(3, "manual", f"etl-{env.name}-ingest-queue")
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert env.depth("ingest-dlq") == 0
    back = env.drain("ingest-queue")
    assert sorted(m["Body"] for m in back) == sorted(bodies)
    assert sorted(m["MessageAttributes"]["attempt"]["StringValue"] for m in back) == ["0", "1", "2"]


class FailingSends:
    """The real client, except that the n-th send fails (throttled, network, …)."""

    def __init__(self, sqs: Any, fail_on: int) -> None:
        self.sqs, self.fail_on, self.sends = sqs, fail_on, 0

    def send_message(self, **kwargs: Any) -> Any:
        self.sends += 1
        if self.sends == self.fail_on:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "SendMessage")
        return self.sqs.send_message(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sqs, name)


def test_a_failed_send_loses_nothing(env: Env) -> None:
    bodies = env.put("ingest-dlq", 3)
    target = dlq.resolve(env.dlqs(), env.name, "ingest")
    with pytest.raises(dlq.DlqError, match=r"stays in .*-ingest-dlq; 1 moved before it"):
        dlq.redrive(FailingSends(env.sqs, 2), target, method="manual")
    moved, left = env.drain("ingest-queue"), env.drain("ingest-dlq")  # the failed one is visible again at once
    assert len(moved) == 1 and len(left) == 2
    assert sorted(m["Body"] for m in moved + left) == sorted(bodies)


def test_redrive_to_another_queue_and_refuses_when_the_source_is_ambiguous(env: Env) -> None:
    env.put("transform-dlq", 1)
    target = dlq.resolve(env.dlqs(), env.name, "transform")
    result = dlq.redrive(env.sqs, target, env.urls["plain"], method="manual")
    assert result.moved == 1 and result.destination == f"etl-{env.name}-plain"
    orphan = dlq.DeadLetterQueue("etl-x-dlq", env.urls["transform-dlq"], target.arn, 0, 0, ())
    with pytest.raises(dlq.DlqError, match=r"DLQ of 0 queues .*--to QUEUE"):
        dlq.redrive(env.sqs, orphan)


class MoveTasks:
    """SQS's message move task API as AWS answers it (moto has none): RUNNING, then COMPLETED."""

    def __init__(self, sqs: Any, supported: bool = True) -> None:
        self.sqs, self.supported, self.polls = sqs, supported, 0
        self.started: dict[str, Any] = {}

    def start_message_move_task(self, **kwargs: Any) -> dict[str, Any]:
        if not self.supported:
            raise ClientError({"Error": {"Code": "UnsupportedOperation", "Message": "no"}}, "StartMessageMoveTask")
        self.started = kwargs
        return {"TaskHandle": "h-1"}

    def list_message_move_tasks(self, **kwargs: Any) -> dict[str, Any]:
        self.polls += 1
        status = "COMPLETED" if self.polls > 1 else "RUNNING"
        return {"Results": [{"TaskHandle": "h-1", "Status": status, "ApproximateNumberOfMessagesMoved": self.polls,
                             "ApproximateNumberOfMessagesToMove": 2}]}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sqs, name)


def test_auto_uses_the_sqs_move_task_when_available(env: Env) -> None:
    env.put("ingest-dlq", 2)
    target = dlq.resolve(env.dlqs(), env.name, "ingest")
    client = MoveTasks(env.sqs)
    progress: list[tuple[int, int]] = []
    sleeps: list[float] = []
    result = dlq.redrive(client, target, on_progress=lambda d, t: progress.append((d, t)), sleep=sleeps.append)
    assert result == dlq.RedriveResult(2, "move-task", f"etl-{env.name}-ingest-queue")
    assert client.started["SourceArn"] == target.arn and client.started["DestinationArn"].endswith("-ingest-queue")
    assert progress == [(1, 2), (2, 2)] and sleeps == [1.0]


def test_auto_falls_back_to_one_at_a_time_without_move_tasks(env: Env) -> None:
    env.put("ingest-dlq", 2)
    target = dlq.resolve(env.dlqs(), env.name, "ingest")
    result = dlq.redrive(MoveTasks(env.sqs, supported=False), target)
    assert (result.moved, result.method) == (2, "manual") and env.depth("ingest-dlq") == 0
    with pytest.raises(dlq.DlqError, match="message move task failed"):
        dlq.redrive(MoveTasks(env.sqs, supported=False), target, method="move-task")


# -- the command ----------------------------------------------------------------------------------------------------
def invoke(*args: str) -> Any:
    """`etl dlq …` as wired into the main app, on consoles wide enough that no name is cut."""
    root = typer.Typer()
    root.add_typer(dlq_cli.app, name="dlq")
    root.callback()(lambda: None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dlq_cli, "console", Console(width=200))
        mp.setattr(dlq_cli, "err", Console(width=200, stderr=True))
        return CliRunner().invoke(root, ["dlq", *args])


def test_cli_list_show_redrive_on_a_deployed_env(env: Env) -> None:
    env.put("ingest-dlq", 2)
    listed = invoke("list", "--env", env.name)
    assert listed.exit_code == 0, listed.output
    assert f"etl-{env.name}-ingest-dlq" in listed.stdout and f"etl-{env.name}-ingest-queue" in listed.stdout
    shown = invoke("show", "ingest", "--env", env.name)
    assert shown.exit_code == 0 and "showing 2" in shown.stdout and "customers/1.csv" in shown.stdout
    assert env.depth("ingest-dlq") == 2
    moved = invoke("redrive", "ingest", "--env", env.name, "--method", "manual")
    assert moved.exit_code == 0, moved.output
    assert "moved 2 message(s)" in moved.stdout and env.depth("ingest-dlq") == 0 and env.depth("ingest-queue") == 2
    missing = invoke("show", "erasure", "--env", env.name)
    assert missing.exit_code == 1 and "no dead-letter queue 'erasure'" in missing.stderr


@pytest.fixture
def local_state(env: Env, moto_endpoint: str, tmp_path: Path) -> Iterator[None]:
    """A local platform state file naming the env's queues, as `etl local up` writes it."""
    resources = [{"type": "aws:sqs/queue:Queue", "name": k, "id": u, "effect": "created"} for k, u in env.urls.items()]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ETL_LOCAL_DIR", str(tmp_path))
        PlatformState(pid=os.getpid(), endpoint=moto_endpoint, status="ready",
                      stacks={"ingest-local": StackState(outputs={}, resources=resources)}).save()
        yield


def test_cli_list_on_the_local_platform_reads_the_state_file(env: Env, local_state: None) -> None:
    env.put("transform-dlq", 1)
    listed = invoke("list")
    assert listed.exit_code == 0, listed.output
    assert f"etl-{env.name}-ingest-dlq" in listed.stdout and f"etl-{env.name}-transform-dlq" in listed.stdout
    assert f"etl-x{env.name}-ingest-dlq" not in listed.stdout  # not a queue of this platform
    moved = invoke("redrive", f"etl-{env.name}-transform-dlq")  # auto → one at a time on the emulator
    assert moved.exit_code == 0 and "(manual)" in moved.stdout and env.depth("transform-queue") == 1
