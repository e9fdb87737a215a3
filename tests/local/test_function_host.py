"""The local function host behaves like Lambda's SQS poller and EventBridge schedules."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from etl.local import functions
from etl.local.functions import FunctionSpec, MappingSpec, Poller, ScheduleSpec
from tests.local import fake_handlers


class FakeSqs:
    class meta:
        region_name = "us-east-1"

    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.visibility: list[tuple[str, int]] = []

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> None:
        self.deleted += [e["ReceiptHandle"] for e in Entries]

    def change_message_visibility(self, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int) -> None:
        self.visibility.append((ReceiptHandle, VisibilityTimeout))


def spec(handler: str) -> FunctionSpec:
    return FunctionSpec(name="fn", handler=f"tests.local.fake_handlers.{handler}", timeout_s=30, memory_mb=128,
                        environment={})


MAPPING = MappingSpec(queue_arn="arn:aws:sqs:us-east-1:1:q", queue_url="http://q", batch_size=10, max_concurrency=2,
                      report_batch_item_failures=True)
MESSAGES = [{"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": "{}"} for i in range(3)]


def test_partial_batch_failure_deletes_only_successes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_LOCAL_RETRY_DELAY_S", "3")
    sqs = FakeSqs()
    Poller(spec("fail_second"), MAPPING).invoke(sqs, MESSAGES)
    assert sqs.deleted == ["r0", "r2"]
    assert sqs.visibility == [("r1", 3)]
    event = fake_handlers.CALLS[-1]
    assert [r["messageId"] for r in event["Records"]] == ["m0", "m1", "m2"]
    assert event["Records"][0]["eventSource"] == "aws:sqs"


def test_raising_handler_fails_the_whole_batch_and_retries_within_seconds_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ETL_LOCAL_RETRY_DELAY_S", raising=False)
    sqs = FakeSqs()
    Poller(spec("explode"), MAPPING).invoke(sqs, MESSAGES)
    assert sqs.deleted == []
    assert sqs.visibility == [("r0", 2), ("r1", 2), ("r2", 2)], "local default: back after 2 s, not 5,400 s"


def test_success_deletes_everything(capsys: pytest.CaptureFixture[str]) -> None:
    sqs = FakeSqs()
    Poller(spec("record"), MAPPING).invoke(sqs, MESSAGES)
    assert sqs.deleted == ["r0", "r1", "r2"]
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # the local REPORT line
    assert line["local"] == "invocation" and line["records"] == 3 and line["failed"] == 0
    assert line["duration_ms"] >= 0 and 0 < line["max_rss_mb"] == pytest.approx(functions.peak_rss_mb(), rel=0.5)


@pytest.mark.parametrize(("response", "expected"), [
    (None, set()), ({}, set()), ({"batchItemFailures": [{"itemIdentifier": "m1"}]}, {"m1"}),
    ({"batchItemFailures": "garbage"}, {"m0", "m1", "m2"}),
])
def test_failed_ids(response: Any, expected: set[str]) -> None:
    assert functions.failed_ids(response, MESSAGES, True) == expected


@pytest.mark.parametrize(("expr", "seconds"), [("rate(1 minute)", 60), ("rate(5 minutes)", 300),
                                               ("rate(2 hours)", 7200), ("rate(1 day)", 86400)])
def test_rate_expressions(expr: str, seconds: int) -> None:
    assert functions.rate_seconds(expr) == seconds


@pytest.mark.parametrize("expr", ["cron(0 12 * * ? *)", "rate(0 minutes)", "rate(five minutes)"])
def test_unfireable_schedules_fail_by_name(expr: str) -> None:
    with pytest.raises(ValueError, match=r"rate|malformed"):
        functions.rate_seconds(expr)


def test_schedule_fires_on_a_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_LOCAL_SCHEDULE_SCALE", "0.001")  # rate(1 minute) → every 60 ms
    stop = threading.Event()
    before = len(fake_handlers.CALLS)
    t = threading.Thread(target=functions.fire_schedule,
                         args=(spec("record"), ScheduleSpec("arn:aws:events:rule/sweep", "rate(1 minute)"), stop))
    t.start()
    deadline = time.monotonic() + 30
    while len(fake_handlers.CALLS) - before < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    t.join(2)
    fired = fake_handlers.CALLS[before:]
    assert len(fired) >= 2, "it fired again and again"
    assert fired[0]["detail-type"] == "Scheduled Event" and fired[0]["resources"] == ["arn:aws:events:rule/sweep"]
