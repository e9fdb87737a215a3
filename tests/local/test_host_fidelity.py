"""Local failure fidelity: one invocation per host process, a crashed host's messages come back in seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import boto3
import pytest

from etl.local import functions
from etl.local.functions import FunctionSpec, MappingSpec
from tests.local import fake_handlers

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def queue(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[object, str, str]]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"q-{time.monotonic_ns()}", Attributes={"VisibilityTimeout": "5400"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    yield sqs, url, arn


def fn(handler: str, timeout_s: int = 60) -> FunctionSpec:
    return FunctionSpec(name="fn", handler=f"tests.local.fake_handlers.{handler}", timeout_s=timeout_s,
                        memory_mb=128, environment={})


def mapping(url: str, arn: str, concurrency: int = 5) -> MappingSpec:
    return MappingSpec(queue_arn=arn, queue_url=url, batch_size=1, max_concurrency=concurrency,
                       report_batch_item_failures=True)


def visible(sqs: object, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


def test_concurrency_is_processes_not_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(functions, "LOCAL_CONCURRENCY_CAP", 3)
    spec = mapping("u", "a", concurrency=10)
    assert functions.slots([spec]) == 3 and functions.slots([]) == 1
    assert functions.slots([mapping("u", "a", concurrency=1), spec]) == 3


def test_a_host_runs_one_invocation_at_a_time(queue: tuple, moto_endpoint: str) -> None:
    sqs, url, arn = queue
    second = sqs.create_queue(QueueName=f"q2-{time.monotonic_ns()}")["QueueUrl"]
    second_arn = sqs.get_queue_attributes(QueueUrl=second, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for n in range(6):
        sqs.send_message(QueueUrl=url if n % 2 else second, MessageBody=json.dumps({"n": n}))
    fake_handlers.ACTIVE.update(now=0, most=0)
    before = len(fake_handlers.CALLS)
    stop = threading.Event()
    host = threading.Thread(target=functions.serve, kwargs={
        "fn": fn("overlap"), "mappings": [mapping(url, arn), mapping(second, second_arn)], "stop": stop})
    host.start()
    deadline = time.monotonic() + 30
    while len(fake_handlers.CALLS) - before < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    host.join(10)
    assert len(fake_handlers.CALLS) - before == 6, "every message of both mappings was handled"
    assert fake_handlers.ACTIVE["most"] == 1, "never two invocations at once in one host process"


def host(spec: FunctionSpec, maps: list[MappingSpec], env: dict[str, str], log: Path) -> subprocess.Popen:
    payload = json.dumps({"function": asdict(spec), "mappings": [asdict(m) for m in maps], "schedules": []})
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "etl.local.functions", payload, "0"], cwd=ROOT,
                                env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=out,
                                stderr=subprocess.STDOUT)


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_crashed_hosts_messages_come_back_within_seconds(queue: tuple, moto_endpoint: str, tmp_path: Path) -> None:
    """The queue's visibility timeout is 5,400 s; a killed host's message must be visible again long before."""
    sqs, url, arn = queue
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    log = tmp_path / "host.log"
    env = {"AWS_ENDPOINT_URL": moto_endpoint, "ETL_LOCAL_VISIBILITY_S": "5", "ETL_TEST_SLEEP_S": "60"}
    proc = host(fn("slow"), [mapping(url, arn)], env, log)
    try:
        assert wait_until(lambda: "invoked" in log.read_text()), log.read_text()
        held_until = time.monotonic() + 5 + 1  # past the local visibility: only the heartbeat can hold it so long
        while time.monotonic() < held_until:
            assert visible(sqs, url) == 0, "a running invocation keeps its message invisible"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert wait_until(lambda: visible(sqs, url) == 1, 20), "the crashed host's message came back"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_an_invocation_past_its_timeout_keeps_its_message_and_says_so(
    queue: tuple, moto_endpoint: str, tmp_path: Path,
) -> None:
    """A running handler is never delivered a second time meanwhile; the log says Lambda would have ended it."""
    sqs, url, arn = queue
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    log = tmp_path / "host.log"
    env = {"AWS_ENDPOINT_URL": moto_endpoint, "ETL_LOCAL_VISIBILITY_S": "3", "ETL_TEST_SLEEP_S": "8"}
    proc = host(fn("slow", timeout_s=1), [mapping(url, arn)], env, log)
    try:
        assert wait_until(lambda: "timeout-exceeded" in log.read_text()), log.read_text()
        assert visible(sqs, url) == 0
        assert wait_until(lambda: '"local": "invocation"' in log.read_text(), 30)
        assert log.read_text().count("invoked") == 1, "delivered once"
    finally:
        proc.kill()
        proc.wait(10)


def test_a_batching_window_gathers_a_burst_into_one_invocation_without_redelivery(
        queue: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """Like Lambda's MaximumBatchingWindowInSeconds: records arriving within the window share an invocation;
    those held meanwhile stay invisible past the local visibility timeout (never twice in one batch)."""
    sqs, url, arn = queue
    monkeypatch.setenv("ETL_LOCAL_VISIBILITY_S", "2")
    gathering = MappingSpec(queue_arn=arn, queue_url=url, batch_size=20, max_concurrency=1,
                            report_batch_item_failures=True, batching_window_s=5)
    poller = functions.Poller(fn("record"), gathering)
    sqs.send_message(QueueUrl=url, MessageBody="first")
    late = threading.Timer(3.0, lambda: [sqs.send_message(QueueUrl=url, MessageBody=f"late-{n}") for n in range(3)])
    before = len(fake_handlers.CALLS)
    late.start()
    assert poller.poll(sqs, 1)
    late.join()
    batches = fake_handlers.CALLS[before:]
    assert len(batches) == 1
    bodies = [r["body"] for r in batches[0]["Records"]]
    assert sorted(bodies) == ["first", "late-0", "late-1", "late-2"], "one record each, the first not redelivered"
    assert visible(sqs, url) == 0


def test_a_full_batch_does_not_wait_for_the_window(queue: tuple) -> None:
    sqs, url, arn = queue
    for n in range(4):
        sqs.send_message(QueueUrl=url, MessageBody=str(n))
    full = MappingSpec(queue_arn=arn, queue_url=url, batch_size=4, max_concurrency=1,
                       report_batch_item_failures=True, batching_window_s=300)
    before = len(fake_handlers.CALLS)
    poller = functions.Poller(fn("record"), full)
    done = threading.Thread(target=poller.poll, args=(sqs, 1))
    done.start()
    done.join(60)  # far less than the window: the batch is full once all four are received
    assert not done.is_alive() and len(fake_handlers.CALLS[before:][0]["Records"]) == 4
