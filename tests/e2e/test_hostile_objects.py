"""Every hostile object of issue #12 (and the ones tested elsewhere) landed at once, then counted one by one.

For each object that becomes rows: rows in the lake + rows in quarantine = records of the source (the
Python `csv` module, or JSON lines, as an independent oracle), and every lake row is the record that
starts on its `_source_line`, value for value — never a fragment of a record. For each object that can
never succeed: a status record with its reason, an ObjectFailed/ObjectRejected event on the first
attempt, and no message in any DLQ.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq

from contracts import limits, progress
from tests.e2e.conftest import Platform
from tests.e2e.lake import read_table, s3fs

HEADER = "customer_id,name,email,phone,country,signup_date"


def customers(*rows: str, newline: str = "\n") -> bytes:
    return newline.join([HEADER, *rows, ""]).encode()


def row(i: int, name: str | None = None, day: str = "2023-05-01") -> str:
    return f"{i},{name or f'Name {i}'},u{i}@example.com,+44{i:07d},GB,{day}"


def spanning_rows(n: int, base: int) -> list[str]:
    """Many records, every 7th with a quoted value spanning lines whose tail looks like a valid row."""
    out = []
    for i in range(n):
        cid = base + i
        out.append(f'{cid},"note{i}\n{base + 50_000 + i},x",m{i}@x.com,,DE,2024-01-02' if i % 7 == 3 else row(cid))
    return out


@dataclass
class Case:
    name: str
    dataset: str
    body: bytes
    #: "rows": transformed, counted; "failed" / "rejected": permanent, reason must contain `why`
    outcome: str = "rows"
    why: str = ""
    key_suffix: str = "data.csv"
    metadata: dict[str, str] | None = None
    #: the whole landing key ({run} filled in), when not `<dataset>/<run>/<name>/<key_suffix>`
    key: str = ""
    #: not landed: only its S3 event is delivered (the object was deleted before ingest ran)
    gone: bool = False


def cases(base: int) -> list[Case]:
    issue = customers(row(base + 1), f'{base + 2},"note\n{base + 42},x",m@x.com,,DE,2024-01-01', row(base + 3))
    big = customers(*spanning_rows(1400, base + 1000))  # ~100 KB: local chunks are 64 KiB, cuts near quotes
    assert len(big) > 65536
    return [
        Case("issue-row-from-nowhere", "customers", issue),
        Case("issue-row-from-nowhere-crlf", "customers", issue.replace(b"\n", b"\r\n")),
        Case("spanning-records-across-chunks", "customers", big),
        Case("unclosed-quote-at-end", "customers", customers(row(base + 4), f'{base + 5},"Eve,e@x.io,,FR,2024-01-02')),
        Case("stray-quotes-in-values", "customers", customers(row(base + 6, 'Ann "Nan" Lee'), row(base + 7, '"Bo, Jr"'),
                                                              f'{base + 8},a"b,c@x.io,,GB,2023-01-01')),
        Case("bom-crlf-blank-and-bad-rows", "customers",
             b"\xef\xbb\xbf" + customers(row(base + 9), "", "   ", "1,2", row(base + 10, day="not-a-date"),
                                         newline="\r\n")),
        Case("gzip", "customers", gzip.compress(customers(row(base + 11), row(base + 12))), key_suffix="c.csv.gz"),
        Case("jsonl-hostile-lines", "orders",
             b'{"order_id": 1, "customer_id": 2, "amount": "1.50", "status": "paid", "order_date": "2024-01-01"}\n'
             b'not json\n{"order_id": [1]}\n\n[1, 2]\n'
             b'{"order_id": 3, "customer_id": 2, "amount": "1.5", "status": "x", "order_date": "2024-02-01"}\r\n',
             key_suffix="o.jsonl"),
        Case("unicode-key", "customers", customers(row(base + 13)), key_suffix="ünï cødé+plus/日本.csv"),
        # permanent failures: at once, with a reason, never in a DLQ
        Case("not-utf8", "customers", customers(row(base + 14, "Zoë")).replace("ë".encode(), b"\xeb"),
             "failed", "is not UTF-8 text"),
        Case("png", "customers", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "failed", "is not UTF-8 text"),
        Case("corrupt-gzip", "customers", gzip.compress(customers(row(base + 15)))[:30], "failed",
             "is not a readable gzip stream"),
        Case("header-mismatch", "customers", b"id,name\n1,a\n", "failed", "CSV header on line 1 does not match"),
        Case("key-too-long", "customers", customers(row(base + 16)), "rejected", "S3 allows 1,024",
             key_suffix="k" * 990 + ".csv"),
        Case("metadata-too-large", "customers", customers(row(base + 17)), "rejected", "user metadata would be",
             metadata={"note": "n" * 1990}),
        Case("empty", "customers", b"", "rejected", "object is empty"),
        Case("deleted-before-ingest", "customers", customers(row(base + 19)), "rejected", "no longer exists",
             gone=True),
        Case("control-character-key", "customers", customers(row(base + 20)), "rejected", "control characters",
             key="customers/{run}/bell\x07.csv"),
        Case("dot-dot-key", "customers", customers(row(base + 21)), "rejected", "'..' path segments",
             key="customers/{run}/../escape.csv"),
        Case("no-dataset-folder", "customers", customers(row(base + 22)), "rejected", "no dataset folder",
             key="{run}-at-root.csv"),
        Case("unknown-dataset", "no_such_dataset", customers(row(base + 18)), "rejected", "unknown dataset"),
    ]


def source_records(case: Case) -> dict[int, list[str]]:
    """{first line: fields} of every non-empty record, by the csv module (or one JSON value per line)."""
    data = gzip.decompress(case.body) if case.body[:2] == b"\x1f\x8b" else case.body
    text = data.decode("utf-8-sig")
    out: dict[int, list[str]] = {}
    if case.dataset == "orders":
        for n, line in enumerate(io.StringIO(text, newline=None), start=1):
            if line.strip("\r\n"):
                out[n] = [line.rstrip("\r\n")]
        return out
    reader = csv.reader(io.StringIO(text, newline=""))
    before = 0
    for fields in reader:
        if fields and before > 0:  # skip the header
            out[before + 1] = fields
        before = reader.line_num
    return out


def s3_event(bucket: str, key: str) -> dict[str, Any]:
    """What S3 sends for an object that has been deleted since (the message outlived the object)."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
            "account": "000000000000", "time": "2024-05-01T10:00:00Z", "region": "us-east-1", "resources": [],
            "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 10, "etag": "gone"}}}


def quarantine_rows(p: Platform, dataset: str, oid: str) -> list[dict[str, Any]]:
    listing = p.client("s3").list_objects_v2(Bucket=p.out("quarantineBucket"), Prefix=f"{dataset}/object={oid}/")
    fs = s3fs(p.state.endpoint)
    return [r for o in listing.get("Contents", [])
            for r in pq.read_table(f"{p.out('quarantineBucket')}/{o['Key']}", filesystem=fs).to_pylist()]


def dlq_object_ids(p: Platform) -> set[str]:
    sqs, found = p.client("sqs"), set()
    for fn in ("etl-local-ingest", "etl-local-transform"):
        url = sqs.get_queue_url(QueueName=f"{fn}-dlq")["QueueUrl"]
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=1).get("Messages", []):
            detail = json.loads(m["Body"]).get("detail", {})
            found |= {detail.get("object_id"), detail.get("object", {}).get("key")}
    return found


def test_every_hostile_object_is_accounted_for(platform: Platform) -> None:
    base = 7_000_000 + uuid.uuid4().int % 1_000_000 * 10
    run = uuid.uuid4().hex[:6]
    s3 = platform.client("s3")
    keys: dict[str, Case] = {}
    ingest_queue = platform.state.functions["etl-local-ingest"]["mappings"][0]["queue_url"]
    for case in cases(base):
        key = case.key.format(run=run) if case.key else f"{case.dataset}/{run}/{case.name}/{case.key_suffix}"
        if case.name == "key-too-long":
            key = key[: limits.S3_KEY_BYTES]
        keys[key] = case
        if case.gone:
            platform.client("sqs").send_message(QueueUrl=ingest_queue, MessageBody=json.dumps(s3_event(
                platform.out("landingBucket"), key)))
            continue
        extra = {"Metadata": case.metadata} if case.metadata else {}
        s3.put_object(Bucket=platform.out("landingBucket"), Key=key, Body=case.body, **extra)

    def ended(events: list) -> dict[str, dict] | None:
        ids = {e["detail"]["object_id"]: e["detail"]["source_key"] for e in events
               if e["detail-type"] in ("RawObjectStored", "ObjectRejected") and e["detail"].get("source_key") in keys}
        final = {e["detail"]["object_id"]: e for e in events
                 if e["detail-type"] in ("ObjectTransformed", "ObjectFailed") and e["detail"]["object_id"] in ids}
        final |= {e["detail"]["object_id"]: e for e in events if e["detail-type"] == "ObjectRejected"
                  and e["detail"].get("source_key") in keys}
        if len(final) < len(keys):
            return None
        return {ids[oid]: e for oid, e in final.items()}

    outcome = platform.wait_for(ended, timeout=240)
    status = {r["object_id"]: r for r in progress.list_objects(platform.client("dynamodb"), platform.out("stateTable"))}
    lakes = {ds: read_table(platform.client("glue"), platform.state.endpoint, platform.out("glueDatabase"), ds)[0]
             for ds in ("customers", "orders")}
    dead = dlq_object_ids(platform)
    for key, case in keys.items():
        event = outcome[key]
        d, oid = event["detail"], event["detail"]["object_id"]
        if case.outcome != "rows":  # permanent: at once, with a reason, in `etl status`, never dead-lettered
            expected = "ObjectFailed" if case.outcome == "failed" else "ObjectRejected"
            assert event["detail-type"] == expected, (case.name, d)
            assert case.why in d["reason"], (case.name, d["reason"])
            assert d.get("attempts", 1) == 1 and d.get("permanent", True), case.name
            assert status[oid]["stage"] == case.outcome and case.why in status[oid]["reason"], case.name
            assert oid not in dead and key not in dead, f"{case.name} reached a DLQ"
            continue
        assert event["detail-type"] == "ObjectTransformed", (case.name, d)
        source = source_records(case)
        lake = lakes[case.dataset]
        mine = lake.filter([x == oid for x in lake.column("_source_object_id").to_pylist()]).to_pylist()
        quarantined = quarantine_rows(platform, case.dataset, oid)
        assert len(mine) + len(quarantined) == len(source), (case.name, len(mine), len(quarantined), len(source))
        assert (d["rows_in"], d["rows_good"], d["rows_quarantined"]) == (len(source), len(mine), len(quarantined))
        for r in mine:  # content: each lake row is the record that starts on its line, never a fragment
            fields = source.get(r["_source_line"])
            assert fields is not None, f"{case.name}: lake row on line {r['_source_line']} starts no record"
            if case.dataset == "customers":
                assert [str(r["customer_id"]), r["name"], r["email"]] == fields[:3], (case.name, r, fields)
            else:
                assert json.loads(fields[0])["order_id"] == r["order_id"], (case.name, r, fields)
        assert {q["_source_line"] for q in quarantined} == set(source) - {r["_source_line"] for r in mine}
        if case.name.startswith("issue-row-from-nowhere"):
            assert base + 42 not in {r["customer_id"] for r in mine}, "the tail of a record became a customer"
            (q,) = quarantined
            assert "spans lines" in q["_reason"] and q["_raw"].count("\n") == 1
        if case.name == "spanning-records-across-chunks":
            assert d["chunks"] >= 2, "the object was cut into chunks"
            assert not {r["customer_id"] for r in mine} & set(range(base + 51_000, base + 53_000))
