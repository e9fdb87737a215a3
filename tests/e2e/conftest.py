"""The local platform, started once per worker exactly as a user would: `etl local up --detach`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from contracts import events as contract_events
from etl.local.platform import PlatformState, pid_alive

ROOT = Path(__file__).resolve().parents[2]
E2E_CHUNK_BYTES = 65536  # objects over 64 KiB are cut into several chunks in the e2e platform
E2E_COMPACT_WINDOW_S = 2  # seconds the compact queue gathers events (etl:compactBatchWindowSeconds)


def etl(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etl.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


@dataclass
class Platform:
    state: PlatformState
    cli_env: dict[str, str]
    observed: list[dict[str, Any]] = field(default_factory=list)
    observer_url: str = ""

    def out(self, key: str, component: str = "core") -> Any:
        return self.state.output(component, key)

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.state.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def drain_events(self) -> list[dict[str, Any]]:
        """Everything published on the platform bus so far, each validated against the contract."""
        sqs = self.client("sqs")
        while True:
            msgs = sqs.receive_message(QueueUrl=self.observer_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            batch = msgs.get("Messages", [])
            if not batch:
                return self.observed
            for m in batch:
                envelope = json.loads(m["Body"])
                if envelope["source"].startswith("etl."):
                    contract_events.parse_event(envelope)  # raises if the event breaks its schema
                self.observed.append(envelope)
                sqs.delete_message(QueueUrl=self.observer_url, ReceiptHandle=m["ReceiptHandle"])

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate(self.drain_events())
            if found:
                return found
            time.sleep(0.25)
        raise AssertionError(f"condition not met within {timeout}s; events seen: "
                             f"{[e['detail-type'] for e in self.observed]}")

    def queue_of(self, function: str) -> str:
        """The URL of the queue a function of the platform consumes (its first event source mapping)."""
        return str(self.state.functions[function]["mappings"][0]["queue_url"])

    def wait_drained(self, *queue_urls: str, timeout: float = 60) -> None:
        """Wait until the queues hold no message, visible, in flight or delayed, all at one look: their consumers
        have handled every one (a consumer that sends to another of the queues has sent by then).

        The positive signal a negative check waits for (instead of a fixed sleep): once the handler has
        deleted every message, whatever it was going to publish has been published.
        """
        sqs = self.client("sqs")
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            held = {url: sum(int(v) for v in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
                             ["Attributes"].values()) for url in queue_urls}
            if not any(held.values()):
                return
            time.sleep(0.25)
        raise AssertionError(f"queues still hold messages after {timeout}s: {held}")

    def events_for(self, detail_type: str, **detail: Any) -> list[dict[str, Any]]:
        return [e for e in self.drain_events() if e["detail-type"] == detail_type
                and all(e["detail"].get(k) == v for k, v in detail.items())]


@pytest.fixture(scope="package")  # once per worker that runs e2e tests (one group), down when the group is done
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    state_dir = tmp_path_factory.mktemp("etl-local")
    env = {**os.environ, "ETL_LOCAL_DIR": str(state_dir), "ETL_LOCAL_RETRY_DELAY_S": "1",
           "PYTHONPATH": str(ROOT)}
    env.pop("AWS_ENDPOINT_URL", None)
    # Small chunks so that small test files fan out (the local default is AWS's 128 MiB), and a 2 s
    # compaction batching window (default 10 s) so that a threshold compaction still meets files arriving
    # within the seconds a test lands them. A busy machine can take minutes to start every host:
    # `etl local up` itself fails with the reason if it cannot.
    started = etl("local", "up", "--detach", "--port", "0", "--set", f"transform:chunkBytes={E2E_CHUNK_BYTES}",
                  "--set", f"compact:compactBatchWindowSeconds={E2E_COMPACT_WINDOW_S}", env=env, timeout=600)
    assert started.returncode == 0, started.stdout + started.stderr
    os.environ["ETL_LOCAL_DIR"] = str(state_dir)
    state = PlatformState.load()
    assert state is not None and state.status == "ready"
    p = Platform(state, env)
    sqs, bus = p.client("sqs"), p.client("events")
    url = sqs.create_queue(QueueName=f"observer-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sources = sorted({t.SOURCE for t in contract_events.EVENT_TYPES.values()} | {"aws.s3"})
    bus.put_rule(Name="test-observer", EventBusName=p.out("busName"),
                 EventPattern=json.dumps({"source": sources}))
    bus.put_targets(Rule="test-observer", EventBusName=p.out("busName"), Targets=[{"Id": "observer", "Arn": arn}])
    p.observer_url = url
    try:
        yield p
    finally:
        stopped = etl("local", "down", env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert not pid_alive(state.pid), "supervisor still running after `etl local down`"
        assert state.hosts and not [n for n, pid in state.hosts.items() if pid_alive(pid)], "function hosts left"
        os.environ.pop("ETL_LOCAL_DIR", None)
