"""Erasure end to end on the local platform: the HTTP API, the bus, runs, workers, verification.

Subjects have rows in many partitions of both datasets (customers and orders share customer_id),
in quarantine and in gzip'd raw copies. After a run DuckDB finds none of their rows through the
Glue catalog, every other row is intact, partitions that held no subject keep their files, and no
log line, event or audit record holds a subject id in clear.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import random
import re
import threading
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import events as contract_events
from contracts.arrow import lake_schema
from contracts.commits import DynamoStateTable, GlueCatalog, PartitionCommitter, PartitionRef, S3ObjectStore
from contracts.datasets import load_datasets
from etl.query import LocalEngine
from services.transform.parquet import parquet_bytes
from tests.e2e.conftest import Platform
from tests.e2e.helpers import api, duckdb_count, land, wait_state
from tests.e2e.lake import s3fs

RND = random.Random(uuid.uuid4().int)
BASE = RND.randrange(700_000_000, 799_000_000)  # nine-digit ids: a token search for them is meaningful
SUBJECTS = [BASE + 1, BASE + 2, BASE + 3]  # 3 appears only in quarantine
OTHERS = list(range(BASE + 10, BASE + 40))
DATASETS = load_datasets()
#: the first test also pays for the platform's start and the module's flow (~2-3 min on a busy 2-core machine)
pytestmark = pytest.mark.timeout(600)


# -- helpers ---------------------------------------------------------------------------------------------
def customers_csv(ids: list[int], bad: list[str] = ()) -> bytes:  # type: ignore[assignment]
    rows = [f"{i},Person {i},person{i}@example.com,+4420{i % 10**7:07d},GB,20{20 + i % 4}-{1 + i % 12:02d}-10"
            for i in ids]
    return ("customer_id,name,email,phone,country,signup_date\n" + "\n".join([*rows, *bad]) + "\n").encode()


def orders_jsonl(pairs: list[tuple[int, int]], bad: list[str] = ()) -> bytes:  # type: ignore[assignment]
    start = dt.date(2023, 1, 1)
    lines = [json.dumps({"order_id": o, "customer_id": c, "amount": "19.90", "status": "paid",
                         "order_date": (start + dt.timedelta(days=(o * 37) % 700)).isoformat()}) for o, c in pairs]
    return ("\n".join([*lines, *bad]) + "\n").encode()


def lake(p: Platform, table: str) -> tuple[Counter, dict[tuple[str, ...], str]]:
    """Rows through DuckDB over the Glue catalog, and each partition's current location."""
    engine = LocalEngine(p.out("glueDatabase"), glue=p.client("glue"), filesystem=s3fs(p.state.endpoint))
    rows = Counter(tuple(r.values()) for r in engine.query(f"SELECT * FROM {table}").table.to_pylist())
    glue = p.client("glue")
    locations = {tuple(part["Values"]): part["StorageDescriptor"]["Location"]
                 for page in glue.get_paginator("get_partitions").paginate(DatabaseName=p.out("glueDatabase"),
                                                                         TableName=table)
                 for part in page["Partitions"]}
    return rows, locations


def compacted(p: Platform, table: str) -> set[tuple[str, ...]]:
    """Partitions the compaction service has rewritten so far (its sweep may pick up any quiet partition)."""
    names = DATASETS[table].partition_names
    return {tuple(str(e["detail"]["partition"][n]) for n in names)
            for e in p.events_for("PartitionCompacted", dataset=table)}


def settled(p: Platform) -> None:
    """Every tick sent to the run queue and every task sent to the workers has been handled (none in flight)."""
    p.wait_drained(p.queue_of("etl-local-erasure-run"), p.queue_of("etl-local-erasure-worker"), timeout=120)


def all_versions_text(p: Platform, bucket: str, prefix: str) -> list[tuple[str, bytes]]:
    s3 = p.client("s3")
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            body = s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
            out.append((v["Key"], gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body))
    return out


def quarantine_rows(p: Platform, dataset: str) -> list[dict[str, Any]]:
    fs, bucket = s3fs(p.state.endpoint), p.out("quarantineBucket")
    keys = [o["Key"] for page in p.client("s3").get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{dataset}/") for o in page.get("Contents", [])]
    return [r for k in keys for r in pq.read_table(f"{bucket}/{k}", filesystem=fs).to_pylist()]


def token(i: int) -> re.Pattern[bytes]:
    return re.compile(rb"(?<![0-9])" + str(i).encode() + rb"(?![0-9])")


# -- the main run ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def erased(platform: Platform) -> dict[str, Any]:
    p = platform
    tag = uuid.uuid4().hex[:6]
    s1, s2, s3 = SUBJECTS
    objs = land(p, {
        "c1": (f"customers/{tag}/c1.csv", customers_csv([*OTHERS[:15], s1, s2])),
        "c2": (f"customers/{tag}/c2.csv.gz", gzip.compress(customers_csv(
            OTHERS[15:], bad=[f"{s3},Person {s3},person{s3}@example.com,,GB,not-a-date",
                              f"{s2},Person {s2},person{s2}@example.com,,GB,2023-13-45"]))),
        "o1": (f"orders/{tag}/o1.jsonl.gz", gzip.compress(orders_jsonl(
            [(BASE + 10_000 + n, s1 if n % 4 == 0 else OTHERS[n % 30]) for n in range(1, 80)],
            bad=[f'{{"order_id": {BASE + 900}, "customer_id": {s2}, "amount": "lots"}}']))),
        "o2": (f"orders/{tag}/o2.jsonl", orders_jsonl([(BASE + 100 + n, s2) for n in range(6)])),
    })
    before = {t: lake(p, t) for t in ("customers", "orders")}
    q_before = {t: quarantine_rows(p, t) for t in ("customers", "orders")}
    status, resp = api(p, "POST", "/erasure-requests", {
        "subject_ids": [str(s) for s in SUBJECTS], "reason": "GDPR art. 17", "ticket": f"T-{tag}",
        "requested_by": "dpo@example.com", "client_request_id": f"main-{tag}"})
    assert status == 202, resp
    rid = resp["id"]
    assert api(p, "POST", "/erasure-runs")[0] == 202
    final = wait_state(p, rid, {"COMPLETED", "FAILED"})
    return {"rid": rid, "final": final, "objs": objs, "before": before, "q_before": q_before, "tag": tag}


def test_no_subject_row_is_left_and_every_other_row_is_intact(platform: Platform, erased: dict[str, Any]) -> None:
    p = platform
    assert erased["final"]["state"] == "COMPLETED", erased["final"]
    for table in ("customers", "orders"):
        rows_before, _ = erased["before"][table]
        rows_after, _ = lake(p, table)
        col = 0 if table == "customers" else 1
        gone = Counter({r: n for r, n in rows_before.items() if r[col] in SUBJECTS})
        assert gone, f"the test puts subject rows in {table}"
        assert rows_after == rows_before - gone
        assert duckdb_count(p, table, SUBJECTS) == 0


def test_partitions_without_subjects_were_not_rewritten(platform: Platform, erased: dict[str, Any]) -> None:
    p = platform
    for table in ("customers", "orders"):
        rows_before, loc_before = erased["before"][table]
        _, loc_after = lake(p, table)
        names = DATASETS[table].partition_names
        col = 0 if table == "customers" else 1
        # partition values are the last columns DuckDB returns (the partition keys)
        with_subject = {tuple(str(v) for v in r[-len(names):]) for r in rows_before if r[col] in SUBJECTS}
        changed = {k for k in loc_before if loc_after.get(k) != loc_before[k]}
        assert with_subject <= changed, "every partition holding a subject was rewritten"
        assert changed - with_subject <= compacted(p, table), "any other change is the compaction sweep's, not ours"


def test_quarantine_and_raw_copies_hold_no_subject(platform: Platform, erased: dict[str, Any]) -> None:
    p = platform
    for table in ("customers", "orders"):
        left = quarantine_rows(p, table)
        assert not [r for r in left if any(str(s) in json.dumps(r) for s in SUBJECTS)]
        kept = [r for r in erased["q_before"][table] if not any(str(s) in json.dumps(r) for s in SUBJECTS)]
        assert Counter(json.dumps(r, sort_keys=True, default=str) for r in left) >= Counter(
            json.dumps(r, sort_keys=True, default=str) for r in kept), "other refused rows stay in quarantine"
    for name, oid in erased["objs"].items():
        dataset = "customers" if name.startswith("c") else "orders"
        copies = all_versions_text(p, p.out("rawBucket"), f"{dataset}/received=")
        mine = [(k, t) for k, t in copies if f"/{oid}/" in k]
        assert len(mine) == 1, f"{name}: one version of one raw copy, got {[k for k, _ in mine]}"
        assert not any(token(s).search(mine[0][1]) for s in SUBJECTS), name
        others = [o for o in OTHERS if token(o).search(mine[0][1])]
        assert others or name == "o2", "other rows of the raw copy are kept"
    landing = p.client("s3").list_objects_v2(Bucket=p.out("landingBucket"), Prefix=f"orders/{erased['tag']}/")
    assert not landing.get("Contents"), "landing originals of rewritten raw copies are deleted"


def test_certificate_and_event_carry_hashes_only(platform: Platform, erased: dict[str, Any]) -> None:
    p = platform
    rid = erased["rid"]
    status, cert = api(p, "GET", f"/erasure-requests/{rid}/certificate")
    assert status == 200 and cert["outcome"] == "COMPLETED" and cert["verification"]["passed"]
    assert cert["datasets"]["customers"]["rows_removed"] == 2
    assert cert["datasets"]["orders"]["rows_removed"] == 19 + 6
    assert cert["copies_purged"]["quarantine_rows_removed"] == 3
    status, md = api(p, "GET", f"/erasure-requests/{rid}/certificate?format=md")
    assert status == 200 and md.startswith(f"# Erasure certificate — {rid}")
    (done,) = p.wait_for(lambda _: p.events_for("ErasureCompleted", request_id=rid))
    assert done["detail"]["verified"] and done["detail"]["rows_removed"] == 2 + 19 + 6
    assert done["detail"]["subject_hashes"] == cert["subjects"]["hashes"]
    text = (json.dumps(cert) + md + json.dumps([e for e in p.drain_events()
                                                 if e["detail-type"] != "ErasureRequested"])).encode()
    assert not any(token(s).search(text) for s in SUBJECTS)
    assert not any(f"person{s}@".encode() in text for s in SUBJECTS)


def test_requests_racing_with_appends_lose_nothing_and_a_failed_attempt_is_retried(platform: Platform) -> None:
    """A writer holds a partition's claim while erasure wants to commit there: the worker's commit fails
    (PartitionBusy) after its rewrites are staged, the message is redelivered, and the retry completes
    from its checkpoint; the rows the other writer appended are all kept."""
    p = platform
    subject = BASE + 500
    tag = uuid.uuid4().hex[:6]
    land(p, {"r": (f"orders/{tag}/r.jsonl", orders_jsonl([(BASE + 5000, subject), (BASE + 5001, OTHERS[0])]))})
    before, _ = lake(p, "orders")
    (row,) = [r for r in before if r[1] == subject]
    names = DATASETS["orders"].partition_names
    ref = PartitionRef("orders", dict(zip(names, (str(v) for v in row[-len(names):]), strict=True)))
    extra = pa.table({"order_id": [BASE + 6000], "customer_id": [OTHERS[1]], "amount": [Decimal("1.00")],
                      "status": ["paid"],
                      "order_date": [dt.date(int(ref.values["order_year"]), int(ref.values["order_month"]), 3)],
                      "_source_object_id": ["race"], "_source_line": [1]})
    extra = extra.cast(lake_schema(DATASETS["orders"]))

    release = threading.Event()

    class HeldStore(S3ObjectStore):
        """The other writer's commit copies only once the test lets it: it holds the partition meanwhile."""

        def copy(self, src: str, dst: str) -> None:
            release.wait(300)
            super().copy(src, dst)

    env = {"AWS_ENDPOINT_URL": p.state.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    os.environ.update(env)
    writer = PartitionCommitter(bucket=p.out("lakeBucket"), store=HeldStore(p.out("lakeBucket")),
                                table=DynamoStateTable(p.out("stateTable")), catalog=GlueCatalog(p.out("glueDatabase")))
    staged = writer.stage(ref, f"race-{tag}", "race.parquet", parquet_bytes(extra, DATASETS["orders"]), 1)
    appender = threading.Thread(target=writer.append, args=(ref, [staged], f"race-{tag}"))
    log = Path(os.environ["ETL_LOCAL_DIR"]) / "logs" / "etl-local-erasure-worker.log"
    failures_before = log.read_text().count('"failed": 1')
    appender.start()
    status, resp = api(p, "POST", "/erasure-requests", {"subject_ids": [str(subject)], "reason": "race",
                                                        "datasets": ["orders"]})
    assert status == 202
    api(p, "POST", "/erasure-runs")
    deadline = time.monotonic() + 300  # generous for a loaded machine: the loop ends as the attempt fails
    while log.read_text().count('"failed": 1') == failures_before and time.monotonic() < deadline:
        time.sleep(0.5)  # the worker waits for the busy partition (20 s), then its invocation fails
    release.set()
    final = wait_state(p, resp["id"], {"COMPLETED", "FAILED"})
    appender.join(60)
    assert final["state"] == "COMPLETED", final
    assert log.read_text().count('"failed": 1') > failures_before, "the busy partition failed an attempt"
    after, _ = lake(p, "orders")
    assert not [r for r in after if r[1] == subject]
    assert [r for r in after if r[0] == BASE + 6000], "the concurrently appended row is kept"
    appended = Counter({r: n for r, n in after.items() if r[0] == BASE + 6000})
    assert after == before - Counter({r: n for r, n in before.items() if r[1] == subject}) + appended


def test_cancel_before_erasing_rewrites_nothing(platform: Platform, erased: dict[str, Any]) -> None:
    p = platform
    subject = OTHERS[5]
    before, locations = lake(p, "customers")
    status, resp = api(p, "POST", "/erasure-requests", {"subject_ids": [str(subject)], "reason": "changed mind"})
    assert status == 202
    status, cancelled = api(p, "POST", f"/erasure-requests/{resp['id']}/cancel")
    assert status == 200 and cancelled["state"] == "CANCELLED"
    api(p, "POST", "/erasure-runs")
    settled(p)  # the run's tick was handled, and every task it may have sent: a rewrite would be done by now
    after, locations_after = lake(p, "customers")
    assert after == before
    moved = {k for k in locations if locations_after.get(k) != locations[k]}
    assert moved <= compacted(p, "customers"), "only the compaction sweep may have moved a partition meanwhile"
    status, again = api(p, "POST", f"/erasure-requests/{resp['id']}/cancel")
    assert status == 200 and again["state"] == "CANCELLED", "cancelling twice is idempotent"
    status, cert = api(p, "GET", f"/erasure-requests/{resp['id']}/certificate")
    assert status == 404 and "cancelled" in cert["message"]
    status, done = api(p, "POST", f"/erasure-requests/{erased['rid']}/cancel")
    assert status == 409 and "COMPLETED" in done["message"]


def test_duplicate_delivery_on_the_bus_files_one_request_and_one_certificate(platform: Platform) -> None:
    p = platform
    client_id = f"crm-{uuid.uuid4().hex[:8]}"
    detail = contract_events.ErasureRequested(subject_ids=[str(BASE + 777)], reason="crm", requested_by="crm",
                                              client_request_id=client_id)
    bus = p.client("events")
    for _ in range(3):
        bus.put_events(Entries=[detail.entry(p.out("busName"))])
    deadline = time.monotonic() + 30
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not found:
        _, page = api(p, "GET", "/erasure-requests?limit=50")
        found = [r for r in page["items"] if r["client_request_id"] == client_id]
        time.sleep(0.5)
    p.wait_drained(p.queue_of("etl-local-erasure-intake"))  # the other deliveries have been handled by now
    _, page = api(p, "GET", "/erasure-requests?limit=100")
    (req,) = [r for r in page["items"] if r["client_request_id"] == client_id]
    assert req["source"] == "event"
    api(p, "POST", "/erasure-runs")
    wait_state(p, req["id"], {"COMPLETED"})
    p.wait_for(lambda _: p.events_for("ErasureCompleted", request_id=req["id"]))  # published right after the state
    api(p, "POST", "/erasure-runs")  # one more tick: a duplicate, if any, would be published by it
    settled(p)
    assert len(p.events_for("ErasureCompleted", request_id=req["id"])) == 1
    assert api(p, "GET", f"/erasure-requests/{req['id']}/certificate")[0] == 200


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [
    ("POST", "/erasure-requests", b"not json", 400, "the body must be JSON"),
    ("POST", "/erasure-requests", {"subject_ids": ["1"]}, 400, "reason: Field required"),
    ("POST", "/erasure-requests", {"subject_ids": ["1"], "reason": "r", "datasets": ["x"]}, 400, "'x' is not"),
    ("POST", "/erasure-requests", {"subject_ids": ["abc"], "reason": "r"}, 400, "subject_ids[0] is not a valid"),
    ("POST", "/erasure-requests", {"subject_ids": [], "reason": "r"}, 400, "at least 1 item"),
    ("GET", "/erasure-requests/er-20990101000000-0000000000", None, 404, "no erasure request"),
    ("GET", "/erasure-requests/nope", None, 404, "ids look like"),
    ("GET", "/erasure-requests?limit=0", None, 400, "limit must be between"),
    ("DELETE", "/erasure-requests", None, 404, "Not Found"),
])
def test_invalid_requests_get_a_4xx_that_says_why(platform: Platform, method: str, path: str, body: Any,
                                                   status: int, message: str) -> None:
    raw = body if isinstance(body, bytes) else None
    got, resp = api(platform, method, path, None if raw else body, raw=raw)
    assert got == status, resp
    assert message in json.dumps(resp) if not isinstance(resp, str) else message in resp
    assert "abc" not in json.dumps(resp)


def test_no_log_line_holds_a_subject_id(platform: Platform, erased: dict[str, Any]) -> None:
    logs = Path(os.environ["ETL_LOCAL_DIR"]) / "logs"
    text = b"".join(f.read_bytes() for f in sorted(logs.glob("*.log")))
    assert b"erasure request received" in text, "the erasure functions' logs are captured here"
    for s in SUBJECTS:
        assert not token(s).search(text), f"a log line holds subject {s}"
        assert f"person{s}@".encode() not in text
