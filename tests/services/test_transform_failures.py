"""The failure taxonomy of ingest and transform handlers, against moto over HTTP (docs/design/failures.md).

Permanent failures end at once: status record with the reason, an ObjectFailed/ObjectRejected event, the
message deleted (no batch item failure, so no retry and no DLQ). Transient failures are retried; only
the last attempt writes the status record (and an event) before the message goes to the DLQ.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from contracts import aws, events, layout, limits, progress
from etl.local.functions import FunctionSpec, LambdaContext
from services.ingest import handler as ingest_handler
from services.transform import handler as transform_handler
from tests.services.erasure_world import World, customers_csv


@pytest.fixture
def env(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[World, list[events.EventDetail]]]:
    """The handlers' environment on moto; every published event recorded (and still put on the bus)."""
    bus = f"bus-{uuid.uuid4().hex[:8]}"
    aws.client("events").create_event_bus(Name=bus)
    c = world.cfg
    for k, v in {"BUS_NAME": bus, "RAW_BUCKET": c.raw_bucket, "LAKE_BUCKET": c.lake_bucket,
                 "QUARANTINE_BUCKET": c.quarantine_bucket, "STATE_TABLE": c.state_table,
                 "GLUE_DATABASE": c.database, "POWERTOOLS_IDEMPOTENCY_DISABLED": "true",
                 "MAX_RECEIVE_COUNT": "3"}.items():
        monkeypatch.setenv(k, v)
    published: list[events.EventDetail] = []
    real = events.publish

    def spy(client: Any, bus_name: str, details: Any) -> int:
        details = list(details)
        n = real(client, bus_name, details)
        published.extend(details)
        return n

    monkeypatch.setattr(events, "publish", spy)
    yield world, published


def record(body: str, receive_count: int = 1) -> dict[str, Any]:
    return {"messageId": uuid.uuid4().hex, "receiptHandle": "r", "body": body,
            "attributes": {"ApproximateReceiveCount": str(receive_count)}, "messageAttributes": {},
            "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn", "awsRegion": "us-east-1"}


def context(name: str) -> LambdaContext:
    return LambdaContext(FunctionSpec(name=name, handler="x", timeout_s=900, memory_mb=128, environment={}))


def invoke(handler: Any, rec: dict[str, Any], name: str) -> dict[str, Any]:
    """The handler's response; a batch whose every record failed raises (Lambda then retries it all): same thing."""
    try:
        return handler({"Records": [rec]}, context(name))
    except BatchProcessingError:
        return {"batchItemFailures": [{"itemIdentifier": rec["messageId"]}]}


def status(w: World, oid: str) -> dict[str, Any]:
    return {r["object_id"]: r for r in progress.list_objects(aws.client("dynamodb"), w.cfg.state_table)}.get(oid, {})


# -- transform -----------------------------------------------------------------------------------------------
def stored_event(w: World, body: bytes | None, name: str = "c.csv") -> events.RawObjectStored:
    oid = uuid.uuid4().hex[:20]
    key = layout.raw_key("customers", "2024-05-01", oid, name)
    if body is not None:
        aws.client("s3").put_object(Bucket=w.cfg.raw_bucket, Key=key, Body=body)
    return events.RawObjectStored(dataset="customers", object_id=oid, raw_bucket=w.cfg.raw_bucket, raw_key=key,
                                  size=len(body or b"x"), etag="e", source_bucket=w.cfg.landing_bucket,
                                  source_key=f"customers/{name}")


def transform_message(detail: events.EventDetail) -> str:
    return json.dumps({"id": uuid.uuid4().hex, "source": detail.SOURCE, "detail-type": detail.DETAIL_TYPE,
                       "detail": detail.model_dump(mode="json")})


def run_transform(body: str, receive_count: int = 1) -> dict[str, Any]:
    return invoke(transform_handler.handler, record(body, receive_count), "etl-test-transform")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "is not UTF-8 text"),
        (b"\x1f\x8b\x08\x00broken", "is not a readable gzip stream"),
        (b"id,name\n1,a\n", "CSV header on line 1 does not match"),
        (None, "no longer exists"),
    ],
    ids=["png", "corrupt-gzip", "header", "raw-copy-gone"],
)
def test_permanent_failures_end_at_once_with_a_reason(env: tuple[World, list], body: bytes | None, why: str) -> None:
    w, published = env
    stored = stored_event(w, body)
    response = run_transform(transform_message(stored))
    assert response == {"batchItemFailures": []}, "deleted, not retried: no DLQ message"
    (failed,) = [e for e in published if isinstance(e, events.ObjectFailed)]
    assert failed.permanent and failed.attempts == 1 and why in failed.reason
    st = status(w, stored.object_id)
    assert st["stage"] == "failed" and why in st["reason"] and st["permanent"] is True


def test_transient_failure_retries_and_only_the_last_attempt_records_why(
    env: tuple[World, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    w, published = env
    stored = stored_event(w, customers_csv([1, 2]))

    def throttled(*_: Any, **__: Any) -> None:
        raise ConnectionError("S3 throttled the request (SlowDown)")

    monkeypatch.setattr(transform_handler.jobs, "transform_chunk", throttled)
    body = transform_message(stored)
    for attempt in (1, 2):
        assert len(run_transform(body, attempt)["batchItemFailures"]) == 1
        assert not status(w, stored.object_id) and not published, "no verdict before the last attempt"
    assert len(run_transform(body, 3)["batchItemFailures"]) == 1, "the last attempt still fails: to the DLQ"
    (failed,) = published
    assert isinstance(failed, events.ObjectFailed) and not failed.permanent and failed.attempts == 3
    assert "SlowDown" in status(w, stored.object_id)["reason"]


def test_an_unreadable_message_has_a_status_record_when_it_goes_to_the_dlq(env: tuple[World, list]) -> None:
    w, _ = env
    rec = record("not json at all", receive_count=3)
    response = invoke(transform_handler.handler, rec, "etl-test-transform")
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [rec["messageId"]]
    st = status(w, f"message-{rec['messageId']}")
    assert st["stage"] == "failed" and "unreadable message" in st["reason"]


# -- ingest --------------------------------------------------------------------------------------------------
def s3_event(bucket: str, key: str, etag: str = "e", version: str | None = None) -> str:
    obj: dict[str, Any] = {"key": key, "size": 1, "etag": etag}
    if version:
        obj["version-id"] = version
    return json.dumps({"version": "0", "id": uuid.uuid4().hex, "detail-type": "Object Created", "source": "aws.s3",
                       "account": "123456789012", "time": "2024-05-01T10:00:00Z", "region": "us-east-1",
                       "resources": [], "detail": {"bucket": {"name": bucket}, "object": obj}})


def run_ingest(body: str, receive_count: int = 1) -> dict[str, Any]:
    return invoke(ingest_handler.handler, record(body, receive_count), "etl-test-ingest")


def land(w: World, key: str, body: bytes = b"x\n", **extra: Any) -> str:
    return aws.client("s3").put_object(Bucket=w.cfg.landing_bucket, Key=key, Body=body, **extra)["ETag"].strip('"')


def rejected(published: list) -> events.ObjectRejected:
    (event,) = [e for e in published if isinstance(e, events.ObjectRejected)]
    return event


def test_an_object_deleted_before_ingest_is_rejected_at_once(env: tuple[World, list]) -> None:
    w, published = env
    key = f"customers/{uuid.uuid4().hex[:6]}/gone.csv"
    assert run_ingest(s3_event(w.cfg.landing_bucket, key)) == {"batchItemFailures": []}
    event = rejected(published)
    assert "no longer exists" in event.reason and event.raw_key is None
    assert status(w, event.object_id)["stage"] == "rejected"


def test_a_key_too_long_for_the_raw_copy_is_rejected_and_kept_under_a_key_that_fits(env: tuple[World, list]) -> None:
    w, published = env
    key = f"customers/{uuid.uuid4().hex[:6]}/" + "u" * 980 + "/batch.csv"  # < 1,024 bytes; the raw key is not
    assert len(key.encode()) <= limits.S3_KEY_BYTES
    etag = land(w, key)
    assert run_ingest(s3_event(w.cfg.landing_bucket, key, etag)) == {"batchItemFailures": []}
    event = rejected(published)
    assert "raw copy key would be" in event.reason and "S3 allows 1,024" in event.reason
    assert len(event.raw_key.encode()) <= limits.S3_KEY_BYTES and event.raw_key.endswith("/batch.csv")
    raw = aws.client("s3").get_object(Bucket=w.cfg.raw_bucket, Key=event.raw_key)
    assert raw["Body"].read() == b"x\n" and raw["Metadata"]["etl-object-id"] == event.object_id
    assert status(w, event.object_id)["stage"] == "rejected"


def test_metadata_over_the_s3_limit_with_lineage_is_rejected_and_the_copy_keeps_lineage(
    env: tuple[World, list]
) -> None:
    w, published = env
    key = f"customers/{uuid.uuid4().hex[:6]}/meta.csv"
    etag = land(w, key, Metadata={"note": "n" * 1990})  # fits alone, not with the platform's lineage entries
    assert run_ingest(s3_event(w.cfg.landing_bucket, key, etag)) == {"batchItemFailures": []}
    event = rejected(published)
    assert "user metadata would be" in event.reason
    meta = aws.client("s3").head_object(Bucket=w.cfg.raw_bucket, Key=event.raw_key)["Metadata"]
    assert "note" not in meta and meta["etl-object-id"] == event.object_id
    assert limits.metadata_bytes(meta) <= limits.S3_USER_METADATA_BYTES


def test_ingest_records_a_transient_failure_on_its_last_attempt(
    env: tuple[World, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    w, published = env
    key = f"customers/{uuid.uuid4().hex[:6]}/flaky.csv"
    etag = land(w, key)

    def broken(*_: Any, **__: Any) -> None:
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(ingest_handler, "ingest", broken)
    body = s3_event(w.cfg.landing_bucket, key, etag)
    oid = layout.object_id(w.cfg.landing_bucket, key, etag)
    assert len(run_ingest(body, 1)["batchItemFailures"]) == 1 and not status(w, oid) and not published
    assert len(run_ingest(body, 3)["batchItemFailures"]) == 1
    (failed,) = published
    assert isinstance(failed, events.IngestFailed) and failed.attempts == 3 and failed.object_id == oid
    st = status(w, oid)
    assert st["stage"] == "failed" and "connection reset" in st["reason"] and st["source_key"] == key


# -- limits --------------------------------------------------------------------------------------------------
def test_limits_are_measured_as_aws_measures_them() -> None:
    assert limits.key_problem("a" * 1024) is None and limits.key_problem("é" * 513)
    assert limits.metadata_bytes({"ab": "cé"}) == 5
    entry = {"Source": "s", "DetailType": "d", "Detail": "x" * (limits.EVENT_ENTRY_BYTES)}
    assert limits.event_problem(entry)
    with pytest.raises(limits.LimitExceeded):
        events.publish(None, "bus", [events.ObjectFailed(dataset="d", object_id="o", raw_key="k", reason="r" * 300_000,
                                                         attempts=1)])
