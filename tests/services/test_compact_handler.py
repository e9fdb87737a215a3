"""The Lambda entry point: dispatch, partial batch failures, the schedule, and the CLI's commands."""

from __future__ import annotations

import json

import pytest

from contracts import events
from contracts.datasets import get_dataset
from etl.compact_cli import CLEANUP_MESSAGE, compact_message, parse_selection
from etl.local.functions import FunctionSpec, LambdaContext, scheduled_event
from services.compact import handler
from services.compact.commands import Cleanup, CompactPartition, parse_command
from services.compact.jobs import Outcome
from services.compact.plan import Trigger
from tests.services.compact_fakes import FakeCompactor, envelope, record

ORDERS = get_dataset("orders")
PART = {"order_year": "2024", "order_month": "05"}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeCompactor:
    f = FakeCompactor()
    monkeypatch.setattr(handler, "compactor", lambda: f)
    return f


def context() -> LambdaContext:
    return LambdaContext(FunctionSpec("etl-test-compact", "services.compact.handler.handler", 60, 512, {}))


def test_each_record_is_dispatched_and_only_the_bad_one_is_retried(fake: FakeCompactor) -> None:
    added = events.PartitionFilesAdded(dataset="orders", partition=PART, generation=1, files=["a.parquet"],
                                       rows=5, bytes=100, object_id="obj1")
    wrong = events.ObjectTransformed(dataset="orders", object_id="o", raw_key="k", chunks=1, rows_in=1,
                                     rows_good=1, rows_quarantined=0, partitions=1)
    records = [record(envelope(added)), record(compact_message("orders", PART)), record(CLEANUP_MESSAGE),
               record('{"command": "compact", "dataset": "orders"}'), record(envelope(wrong))]
    response = handler.handler({"Records": records}, context())
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    assert failed == {records[3]["messageId"], records[4]["messageId"]}, "malformed command, foreign event"
    assert fake.calls == [("files_added", "obj1"), ("compact", ("orders", PART, Trigger.MANUAL)), ("cleanup", None)]


def _added(partition: dict[str, str], object_id: str) -> dict[str, str]:
    return record(envelope(events.PartitionFilesAdded(dataset="orders", partition=partition, generation=1,
                                                      files=[f"{object_id}.parquet"], rows=5, bytes=100,
                                                      object_id=object_id)))


def test_a_burst_for_one_partition_is_checked_once_per_invocation(fake: FakeCompactor) -> None:
    other = {"order_year": "2024", "order_month": "06"}
    burst = [_added(PART, "a"), _added(other, "b"), _added(dict(reversed(PART.items())), "c"), _added(PART, "d")]
    response = handler.handler({"Records": burst}, context())
    assert not response["batchItemFailures"]
    assert fake.calls == [("files_added", "a"), ("files_added", "b")], "c and d were committed before a's check"
    handler.handler({"Records": [_added(PART, "e")]}, context())
    assert fake.calls[-1] == ("files_added", "e"), "the next invocation checks again"


def test_a_failed_check_is_not_an_answer_for_the_rest_of_the_batch(fake: FakeCompactor,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    real, tries = fake.files_added, []

    def flaky(detail: events.PartitionFilesAdded, deadline: float) -> Outcome:
        tries.append(detail.object_id)
        if len(tries) == 1:
            raise RuntimeError("throttled")
        return real(detail, deadline)

    monkeypatch.setattr(fake, "files_added", flaky)
    burst = [_added(PART, "a"), _added(PART, "b"), _added(PART, "c")]
    response = handler.handler({"Records": burst}, context())
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [burst[0]["messageId"]]
    assert tries == ["a", "b"], "b checked the partition itself; c took b's answer"


def test_the_schedule_sweeps_then_cleans_up(fake: FakeCompactor) -> None:
    out = handler.handler(scheduled_event("arn:aws:events:x:1:rule/etl-test-compact-sweep", "us-east-1"), context())
    assert [c[0] for c in fake.calls] == ["sweep", "cleanup"]
    assert out["cleanup"]["objects_deleted"] == 3


@pytest.mark.filterwarnings("ignore:No application metrics")
def test_anything_else_is_refused(fake: FakeCompactor) -> None:
    with pytest.raises(ValueError, match="SQS batch or the sweep"):
        handler.handler({"hello": "world"}, context())


def test_the_deadline_leaves_room_before_the_hard_timeout() -> None:
    import time

    ctx = context()
    deadline = handler.deadline_of(ctx)
    assert time.time() + 50 - 1 <= deadline <= time.time() + 60 - 6 + 1


def test_cli_messages_are_the_commands_the_service_reads() -> None:
    assert parse_command(json.loads(compact_message("orders", PART))) == CompactPartition(
        dataset="orders", partition=PART, reason=Trigger.MANUAL)
    assert isinstance(parse_command(json.loads(CLEANUP_MESSAGE)), Cleanup)


def test_cli_partition_selection_is_checked_against_the_contract() -> None:
    assert parse_selection(ORDERS, ["order_year=2024", "order_month=05"]) == PART
    assert parse_selection(ORDERS, ["order_year=2024"]) == {"order_year": "2024"}
    for bad in (["order_day=1"], ["order_year"], ["order_year=2024", "order_year=2025"]):
        with pytest.raises(ValueError):
            parse_selection(ORDERS, bad)
