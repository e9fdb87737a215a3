"""Transform end to end on the local platform: land → typed Parquet in Glue partitions + quarantine."""

from __future__ import annotations

import datetime as dt
import json
import random
import time
import uuid
from collections import Counter

import pyarrow.parquet as pq

from tests.e2e.conftest import Platform
from tests.e2e.lake import read_table, s3fs

HEADER = "customer_id,name,email,phone,country,signup_date\n"


def customers_csv(ids: range, bad: int = 0) -> bytes:
    rows = [f"{i},Name {i},user{i}@example.com,+4420{i:07d},GB,2023-{(i % 12) + 1:02d}-{(i % 28) + 1:02d}"
            for i in ids]
    bad_rows = [f"not-a-number-{i},X,x@example.com,,GB,2023-01-01" for i in range(bad)]
    return (HEADER + "\n".join(rows + bad_rows) + "\n").encode()


def orders_jsonl(n: int, seed: int, customer_base: int) -> bytes:
    rnd = random.Random(seed)
    start = dt.date(2022, 1, 1)
    lines = []
    for i in range(n):
        day = start + dt.timedelta(days=rnd.randrange(0, 700))
        lines.append(json.dumps({
            "order_id": customer_base * 100000 + i, "customer_id": customer_base + rnd.randrange(50),
            "amount": f"{rnd.randrange(100, 99999) / 100:.2f}", "status": rnd.choice(["placed", "paid", "shipped"]),
            "order_date": day.isoformat()}))
    return ("\n".join(lines) + "\n").encode()


def land_and_wait(p: Platform, key: str, body: bytes, timeout: float = 60) -> dict:
    p.client("s3").put_object(Bucket=p.out("landingBucket"), Key=key, Body=body)
    stored = p.wait_for(lambda _: p.events_for("RawObjectStored", source_key=key))
    oid = stored[0]["detail"]["object_id"]
    (done,) = p.wait_for(lambda _: p.events_for("ObjectTransformed", object_id=oid), timeout=timeout)
    return done["detail"]


def rows_of(p: Platform, table: str, oid: str):
    t, files = read_table(p.client("glue"), p.state.endpoint, p.out("glueDatabase"), table)
    mask = [x == oid for x in t.column("_source_object_id").to_pylist()]
    return t.filter(mask), files


def test_csv_becomes_typed_partitions_and_bad_rows_are_quarantined(platform: Platform) -> None:
    base = random.Random(1).randrange(10**6, 10**7)
    body = customers_csv(range(base, base + 60), bad=3)
    done = land_and_wait(platform, f"customers/{uuid.uuid4().hex[:6]}/c.csv", body)
    assert (done["rows_in"], done["rows_good"], done["rows_quarantined"]) == (63, 60, 3)
    rows, files = rows_of(platform, "customers", done["object_id"])
    assert sorted(rows.column("customer_id").to_pylist()) == list(range(base, base + 60))
    assert str(rows.schema.field("customer_id").type) == "int64"
    assert str(rows.schema.field("signup_date").type).startswith("date32")
    assert all("/gen=" in f for f in files)
    quarantine = platform.client("s3").list_objects_v2(Bucket=platform.out("quarantineBucket"),
                                                       Prefix=f"customers/object={done['object_id']}/")
    (q,) = quarantine["Contents"]
    qt = pq.read_table(f"{platform.out('quarantineBucket')}/{q['Key']}", filesystem=s3fs(platform.state.endpoint))
    assert qt.num_rows == 3
    assert all("customer_id" in r for r in qt.column("_reason").to_pylist())
    assert sorted(qt.column("_source_line").to_pylist()) == [62, 63, 64]


def test_big_object_is_chunked_and_equals_whole(platform: Platform) -> None:
    """Local config cuts objects over 64 KiB: ~300 KiB of orders fans out to several chunks."""
    body = orders_jsonl(2500, seed=7, customer_base=900000)
    assert len(body) > 4 * 65536
    done = land_and_wait(platform, f"orders/{uuid.uuid4().hex[:6]}/big.jsonl", body, timeout=120)
    assert done["chunks"] >= 4 and done["rows_good"] == 2500 and done["rows_quarantined"] == 0
    chunked = platform.events_for("ChunkPlanned", object_id=done["object_id"])
    assert sorted(e["detail"]["chunk_index"] for e in chunked) == list(range(done["chunks"]))
    rows, _ = rows_of(platform, "orders", done["object_id"])
    expected = sorted((json.loads(line)["order_id"], i + 1) for i, line in enumerate(body.decode().splitlines()))
    got = sorted(zip(rows.column("order_id").to_pylist(), rows.column("_source_line").to_pylist(), strict=True))
    assert got == expected, "every row once, with its line number in the whole object"


def test_duplicate_delivery_of_every_event_leaves_the_lake_identical(platform: Platform) -> None:
    body = orders_jsonl(400, seed=11, customer_base=800000)
    done = land_and_wait(platform, f"orders/{uuid.uuid4().hex[:6]}/dup.jsonl", body)
    oid = done["object_id"]
    before, _ = rows_of(platform, "orders", oid)
    envelopes = [e for e in platform.drain_events() if e["detail"].get("object_id") == oid
                 and e["detail-type"] in ("RawObjectStored", "ChunkPlanned")]
    commits = len(platform.events_for("PartitionFilesAdded", object_id=oid))
    queue = platform.state.functions["etl-local-transform"]["mappings"][0]["queue_url"]
    sqs = platform.client("sqs")
    for envelope in envelopes:
        for _ in range(2):
            sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(envelope))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until every duplicate has been handled
        a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
        if a["ApproximateNumberOfMessages"] == "0" and a["ApproximateNumberOfMessagesNotVisible"] == "0":
            break
        time.sleep(0.3)
    else:
        raise AssertionError("the transform queue did not drain")
    after, _ = rows_of(platform, "orders", oid)
    # rows, not file names: the compaction sweep may merge these partitions with other tests' files meanwhile
    lineage = Counter(zip(after.column("order_id").to_pylist(), after.column("_source_line").to_pylist(), strict=True))
    assert lineage == Counter(zip(before.column("order_id").to_pylist(), before.column("_source_line").to_pylist(),
                                  strict=True))
    assert max(lineage.values()) == 1, "no row twice"
    assert len(platform.events_for("PartitionFilesAdded", object_id=oid)) == commits, "a replay commits nothing new"
    assert len(platform.events_for("ObjectTransformed", object_id=oid)) == 1


def test_unreadable_object_fails_at_once_and_keeps_the_raw_copy(platform: Platform) -> None:
    """A PNG can never become rows: ObjectFailed (permanent) on the first attempt, no retry, no DLQ message."""
    key = f"customers/{uuid.uuid4().hex[:6]}/binary.csv"
    body = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    platform.client("s3").put_object(Bucket=platform.out("landingBucket"), Key=key, Body=body)
    (stored,) = platform.wait_for(lambda _: platform.events_for("RawObjectStored", source_key=key))
    d = stored["detail"]
    (failed,) = platform.wait_for(lambda _: platform.events_for("ObjectFailed", object_id=d["object_id"]), timeout=60)
    assert failed["detail"]["attempts"] == 1 and failed["detail"]["permanent"]
    assert "is not UTF-8 text" in failed["detail"]["reason"]
    raw = platform.client("s3").get_object(Bucket=d["raw_bucket"], Key=d["raw_key"])["Body"].read()
    assert raw == body
    sqs = platform.client("sqs")
    dlq = sqs.get_queue_url(QueueName="etl-local-transform-dlq")["QueueUrl"]
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=1).get("Messages", [])
    assert all(json.loads(m["Body"])["detail"].get("object_id") != d["object_id"] for m in dead)
