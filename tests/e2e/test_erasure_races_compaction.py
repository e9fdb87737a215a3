"""An erasure and a compaction of the same partition at the same time, end to end on the local platform.

One partition (orders of July 2032, which no other test writes) receives 17 small objects, so
compaction starts by itself, then 10 more (below the threshold, so an `etl compact` has files to
merge). A subject has rows in most of them, among 30 other customers. Then an erasure request for
the subject and a run are filed while 3 more objects, none holding the subject, are appended one
after the other; `etl compact` of the partition is queued as soon as the erasure starts rewriting.

Left alone, the two would mostly commit one after the other (compaction takes a second, the
erasure several), so the test makes them meet: it holds the partition with a commit of its own
(one more row, appended through the commit protocol) until both have planned on the same
manifest and staged their files, then lets go. Whichever commits first, the other replace was
planned on files that are gone and must raise ReplaceConflict and re-plan (contracts/commits/).
Then: no subject row is left, every other row is there exactly once (landed, appended and held
ones), the request is verified with a certificate from its first attempt, nothing was
dead-lettered, and compacting again changes no row. Which side committed first, and which one
re-planned, is printed (`Race.order`) and in assertion messages; both orders must pass. (When the
erasure won, the compaction's new plan took in the held one-row file, whose text columns its writer
stored without dictionaries; compaction could not read it and was dead-lettered: services/compact/runs.py.)
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from contracts.arrow import lake_schema
from contracts.commits import DynamoStateTable, GlueCatalog, PartitionCommitter, PartitionRef, S3ObjectStore
from contracts.datasets import load_datasets
from etl.query import LocalEngine
from services.transform.parquet import parquet_bytes
from tests.e2e.conftest import Platform
from tests.e2e.helpers import api, cli, duckdb_count, land, queue_drained, wait_state
from tests.e2e.lake import s3fs

#: the first test also pays for the platform and the whole race
pytestmark = pytest.mark.timeout(600)

YEAR, MONTH = "2032", "07"
PARTITION = {"order_year": YEAR, "order_month": MONTH}
FIRST, SECOND, RACING, ROWS = 17, 10, 3, 12  # objects per wave, rows per object
RND = random.Random(uuid.uuid4().int)
BASE = RND.randrange(800_000_000, 899_000_000)  # nine-digit ids, apart from test_erasure_flow's
SUBJECT = BASE + 1
OTHERS = list(range(BASE + 10, BASE + 40))
HOLD_AFTER = round(RND.uniform(0.2, 2), 2)  # the partition stays held this long after both replaces wait

Row = tuple[str, int, int, int, Decimal, str, dt.date]  # object id, line, order_id, customer_id, amount, status, date


def rows_of(wave: int, k: int, subject: bool) -> list[tuple[int, int, Decimal, str, dt.date]]:
    """The rows of object k of a wave: unique order ids, the subject in every fourth row if `subject`."""
    out = []
    for i in range(ROWS):
        customer = SUBJECT if subject and i % 4 == 1 else OTHERS[(wave * 7 + k * 3 + i) % len(OTHERS)]
        amount = Decimal(f"{1 + (k * 37 + i * 11) % 500}.{i:02d}")
        out.append((BASE * 1000 + wave * 300 + k * ROWS + i, customer, amount, "paid" if i % 3 else "shipped",
                    dt.date(int(YEAR), int(MONTH), 1 + (k * 5 + i) % 31)))
    return out


def jsonl(rows: list[tuple[int, int, Decimal, str, dt.date]]) -> bytes:
    return "".join(json.dumps({"order_id": o, "customer_id": c, "amount": str(a), "status": s,
                               "order_date": d.isoformat()}) + "\n" for o, c, a, s, d in rows).encode()


def partition_rows(p: Platform) -> Counter[Row]:
    """The partition's rows through DuckDB over the Glue catalog, lineage included (a multiset)."""
    engine = LocalEngine(p.out("glueDatabase"), glue=p.client("glue"), filesystem=s3fs(p.state.endpoint))
    sql = ("SELECT _source_object_id, _source_line, order_id, customer_id, amount, status, order_date FROM orders "
           f"WHERE order_year = '{YEAR}' AND order_month = '{MONTH}'")
    return Counter(tuple(r.values()) for r in engine.query(sql).table.to_pylist())


def compacted(p: Platform) -> list[dict[str, Any]]:
    return [e for e in p.drain_events() if e["detail-type"] == "PartitionCompacted" and e["detail"]["partition"] ==
            PARTITION]


def dlq_depth(p: Platform, function: str) -> int:
    sqs = p.client("sqs")
    url = p.state.functions[function]["mappings"][0]["queue_url"]
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
                        ["Attributes"]["RedrivePolicy"])
    dlq = sqs.get_queue_url(QueueName=policy["deadLetterTargetArn"].rsplit(":", 1)[-1])["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


def staged_since(p: Platform, since: float) -> list[tuple[float, str]]:
    """Files staged for the partition since `since`: (when, writer: erased | compact | part); a replace that
    lost a conflict leaves its staged files behind (cleanup deletes them after the grace period)."""
    prefix = f"_staging/orders/order_year={YEAR}/order_month={MONTH}/"
    pages = p.client("s3").get_paginator("list_objects_v2").paginate(Bucket=p.out("lakeBucket"), Prefix=prefix)
    return sorted((o["LastModified"].timestamp() - since, o["Key"].rsplit("/", 1)[1].split("-", 1)[0])
                  for page in pages for o in page.get("Contents", []) if o["LastModified"].timestamp() >= since - 1)


class Racer(threading.Thread):
    """Waits at the barrier (if any), runs `work`, keeps its result or exception for the main thread."""

    def __init__(self, barrier: threading.Barrier | None, work: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.barrier, self.work, self.result, self.error = barrier, work, None, None
        self.started_at = self.ended_at = 0.0

    def run(self) -> None:
        try:
            if self.barrier is not None:
                self.barrier.wait(30)
            self.started_at = time.time()
            self.result = self.work()
        except BaseException as exc:  # re-raised in the main thread by outcome()
            self.error = exc
        self.ended_at = time.time()

    def outcome(self, timeout: float) -> Any:
        self.join(timeout)
        assert not self.is_alive(), f"{self.work} still running after {timeout}s"
        if self.error is not None:
            raise self.error
        return self.result


class Hold:
    """The test's own append of one row, whose claim holds the partition until both replaces wait for it.

    Its commit copies only once `release` is set, so meanwhile every other commit of the partition waits
    (PartitionBusy after 20 s, retried). Released when the compaction has staged its bin and the erasure
    has staged every rewritten file, both have planned on the same manifest and both are waiting: the
    one that commits second has planned on stale files and must re-plan, whichever it is.
    """

    def __init__(self, p: Platform, tag: str) -> None:
        ds = load_datasets()["orders"]
        self.entered, self.release = threading.Event(), threading.Event()
        entered, release = self.entered, self.release

        class HeldStore(S3ObjectStore):
            def copy(self, src: str, dst: str) -> None:
                entered.set()
                release.wait(150)
                super().copy(src, dst)

        writer = PartitionCommitter(bucket=p.out("lakeBucket"), store=HeldStore(p.out("lakeBucket")),
                                    table=DynamoStateTable(p.out("stateTable")),
                                    catalog=GlueCatalog(p.out("glueDatabase")))
        oid, order_id, customer = f"held-{tag}", BASE * 1000 + 999, OTHERS[0]
        amount, date = Decimal("12.34"), dt.date(int(YEAR), int(MONTH), 15)
        table = pa.table({"order_id": [order_id], "customer_id": [customer], "amount": [amount],
                          "status": ["paid"], "order_date": [date], "_source_object_id": [oid],
                          "_source_line": [1]}).cast(lake_schema(ds))
        ref = PartitionRef("orders", PARTITION)
        staged = writer.stage(ref, oid, "held.parquet", parquet_bytes(table, ds), 1)
        self.row: Row = (oid, 1, order_id, customer, amount, "paid", date)
        self.appender = Racer(None, lambda: writer.append(ref, [staged], oid, deadline=time.time() + 150))
        self.appender.start()
        assert self.entered.wait(30), "the held append did not claim the partition"

    def until_both_wait(self, p: Platform, since: float, timeout: float) -> float:
        """Release once both replaces are staged; returns when."""
        s3, bucket = p.client("s3"), p.out("erasureBucket", "erasure")
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if "compact" in {w for _, w in staged_since(p, since)}:
                    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="runs/")
                    for o in (o for page in pages for o in page.get("Contents", [])):
                        if "/checkpoints/" in o["Key"] and o["LastModified"].timestamp() >= since - 1 and \
                                b'"staged_all"' in s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read():
                            # both poll the claim, backing off to once a second: which one sees it gone
                            # first depends on this pause
                            time.sleep(HOLD_AFTER)
                            return time.time()
                time.sleep(0.2)
            raise AssertionError(f"compaction and erasure did not both stage within {timeout}s")
        finally:
            self.release.set()


class Flips(threading.Thread):
    """Watches the partition's Glue location: when each generation became what readers see."""

    def __init__(self, p: Platform) -> None:
        super().__init__(daemon=True)
        self.glue, self.database, self.stop = p.client("glue"), p.out("glueDatabase"), threading.Event()
        self.seen: list[tuple[float, int]] = []

    def run(self) -> None:
        while not self.stop.wait(0.1):
            loc = self.glue.get_partition(DatabaseName=self.database, TableName="orders",
                                          PartitionValues=[YEAR, MONTH])["Partition"]["StorageDescriptor"]["Location"]
            gen = int(loc.rstrip("/").rsplit("/gen=", 1)[1])
            if not self.seen or self.seen[-1][1] != gen:
                self.seen.append((time.time(), gen))


@dataclass
class Race:
    expected: Counter[Row]  # every landed row but the subject's
    subject_rows: int
    appended: set[str]  # object ids appended during the race
    rid: str
    final: dict[str, Any]
    erasure_generation: int
    compactions: list[dict[str, Any]]  # PartitionCompacted of the partition since the race started
    order: str  # who committed first, as far as generations tell
    dlq_before: dict[str, int]


def expected_rows(oid: str, rows: list[tuple[int, int, Decimal, str, dt.date]]) -> list[Row]:
    return [(oid, line, *r) for line, r in enumerate(rows, start=1)]


@pytest.fixture(scope="module")
def race(platform: Platform) -> Race:
    p = platform
    tag = uuid.uuid4().hex[:6]
    dlq_before = {f: dlq_depth(p, f) for f in ("etl-local-compact", "etl-local-erasure-worker", "etl-local-transform")}
    bodies: dict[str, list[tuple[int, int, Decimal, str, dt.date]]] = {}
    waves = {}
    for wave, count in ((1, FIRST), (2, SECOND)):
        objs = {}
        for k in range(count):
            name = f"w{wave}-{k:02d}"
            bodies[name] = rows_of(wave, k, subject=k % 5 != 3)  # the subject is in most objects, not all
            objs[name] = (f"orders/race-{tag}/{name}.jsonl", jsonl(bodies[name]))
        seen = {e["id"] for e in compacted(p)}
        waves[wave] = land(p, objs)
        if wave == 1:  # 17 small files crossed the contract's threshold: compaction started by itself
            p.wait_for(lambda _, s=seen: [e for e in compacted(p) if e["id"] not in s], timeout=90)
            queue_drained(p, timeout=60)
    oids = {**waves[1], **waves[2]}

    # -- the race -------------------------------------------------------------------------------------------------
    before = {e["id"] for e in compacted(p)}
    barrier = threading.Barrier(3)
    rid: list[str] = []

    def erase() -> str:
        status, resp = api(p, "POST", "/erasure-requests", {
            "subject_ids": [str(SUBJECT)], "reason": "race with compaction", "ticket": f"T-{tag}",
            "client_request_id": f"race-{tag}"})
        assert status == 202, resp
        rid.append(resp["id"])
        assert api(p, "POST", "/erasure-runs")[0] == 202
        return resp["id"]

    def compact() -> tuple[float, str]:
        # Queued together with the request, `etl compact` would be committed long before the erasure reads
        # the partition (the run first finds through the whole catalog), and a compaction that waits at the
        # held partition for longer than its staged file may live (locally 5 s: grace - 2 x timeout - margin)
        # re-plans and stages again, so no race is left. So it is queued when the erasure has started rewriting.
        deadline = time.monotonic() + 120
        while "erased" not in {w for _, w in staged_since(p, released)}:
            assert time.monotonic() < deadline, "the erasure did not start rewriting"
            time.sleep(0.1)
        return time.time(), cli(p, "compact", "orders", "-p", f"order_year={YEAR}", "-p", f"order_month={MONTH}")

    racing = {f"w3-{k:02d}": rows_of(3, k, subject=False) for k in range(RACING)}

    def append() -> dict[str, str]:
        out = {}
        for name, rows in racing.items():  # one after the other, each transformed before the next lands
            out.update(land(p, {name: (f"orders/race-{tag}/{name}.jsonl", jsonl(rows))}))
        return out

    with pytest.MonkeyPatch.context() as env:
        for k, v in {"AWS_ENDPOINT_URL": p.state.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                     "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            env.setenv(k, v)
        hold = Hold(p, tag)
        flips, released = Flips(p), time.time()
        erasure, compaction, appends = Racer(barrier, erase), Racer(barrier, compact), Racer(barrier, append)
        for t in (flips, erasure, compaction, appends):
            t.start()
        try:
            erasure.outcome(60)
            held_for = hold.until_both_wait(p, released, timeout=120)
            compact_at, out = compaction.outcome(60)
            assert "queued compaction of 1 partition" in out
            hold.appender.outcome(60)
            appended = appends.outcome(240)
            final = wait_state(p, rid[0], {"COMPLETED", "FAILED"}, timeout=180)
            p.wait_for(lambda _: [e for e in compacted(p) if e["id"] not in before], timeout=240)
            queue_drained(p, timeout=60)
        finally:  # whatever failed, the watcher stops before the platform does (its next call would fail)
            flips.stop.set()
            flips.join(10)
    ours = [e for e in compacted(p) if e["id"] not in before]
    # before cleanup deletes the compaction's (40 s locally)
    staged = [s for s in staged_since(p, released) if s[1] in ("erased", "compact")]

    bodies.update(racing)
    landed = {**oids, **appended}
    expected = Counter(r for name, oid in landed.items() for r in expected_rows(oid, bodies[name]) if r[3] != SUBJECT)
    expected[hold.row] += 1
    subject_rows = sum(1 for rows in bodies.values() for r in rows if r[1] == SUBJECT)
    _, cert = api(p, "GET", f"/erasure-requests/{rid[0]}/certificate")
    parts = cert.get("datasets", {}).get("orders", {}).get("partitions", []) if isinstance(cert, dict) else []
    gens = [x["generation"] for x in parts if x["partition"] == PARTITION]
    erasure_gen = gens[0] if gens else -1
    compaction_gens = sorted(e["detail"]["generation"] for e in ours)
    t0 = released
    first = "erasure" if compaction_gens and erasure_gen < compaction_gens[0] else "compaction"
    order = (f"{first} committed first: erasure generation {erasure_gen}, compaction generation(s) {compaction_gens}; "
             f"Glue flips (s after release: generation) {[(round(t - t0, 1), g) for t, g in flips.seen]}; "
             f"`etl compact` started at {compact_at - t0:.1f}s, both waited at the held partition until "
             f"{held_for - t0:.1f}s ({HOLD_AFTER}s after both had staged); request {final['state']}; "
             "staged/committed files: "
             f"erasure {sum(w == 'erased' for _, w in staged)}/"
             f"{sum(1 for x in parts for f in x['files'] if f.get('new_key'))}, "
             f"compaction {sum(w == 'compact' for _, w in staged)}/{sum(e['detail']['files_after'] for e in ours)} "
             "(more staged than committed: that side lost a conflict and re-planned); staged at "
             f"{[(round(t, 1), w) for t, w in staged]}")
    print(f"\nrace: {order}")
    return Race(expected, subject_rows, set(appended.values()), rid[0], final, erasure_gen, ours, order, dlq_before)


def test_the_request_completes_verified_with_a_certificate(platform: Platform, race: Race) -> None:
    assert race.final["state"] == "COMPLETED", (race.order, race.final)
    assert race.final["result"]["verified"], race.final["result"]
    status, cert = api(platform, "GET", f"/erasure-requests/{race.rid}/certificate")
    assert status == 200 and cert["outcome"] == "COMPLETED" and cert["verification"]["passed"], cert
    # the subject's rows all existed before the race (the appends hold none): each is erased once, by the
    # first attempt - a second attempt would mean verification found a row a stale compaction brought back
    assert cert["run"]["attempts"] == 1, (race.order, cert["verification"])
    assert cert["datasets"]["orders"]["rows_removed"] == race.subject_rows, race.order
    assert race.erasure_generation > 0, f"the certificate names the partition it rewrote: {cert['datasets']}"


def test_no_row_of_the_subject_is_left(platform: Platform, race: Race) -> None:
    assert duckdb_count(platform, "orders", [SUBJECT]) == 0, race.order
    assert duckdb_count(platform, "customers", [SUBJECT]) == 0


def test_every_other_row_is_there_exactly_once(platform: Platform, race: Race) -> None:
    rows = partition_rows(platform)
    assert race.subject_rows > 0 and race.expected, "the test lands rows of the subject and of others"
    lost, extra = race.expected - rows, rows - race.expected
    assert not lost and not extra, (f"{race.order}: {sum(lost.values())} row(s) lost, {sum(extra.values())} "
                                    f"unexpected or duplicated: {list(lost)[:3]} {list(extra)[:3]}")
    assert {r[0] for r in rows} >= race.appended, "rows appended during the race are kept"


def test_both_sides_committed_and_nothing_was_dead_lettered(platform: Platform, race: Race) -> None:
    assert race.compactions, f"`etl compact` compacted the partition: {race.order}"
    for e in race.compactions:
        d = e["detail"]
        assert d["files_after"] < d["files_before"] and d["rows"] > 0, d
    after = {f: dlq_depth(platform, f) for f in race.dlq_before}
    assert after == race.dlq_before, f"messages dead-lettered during the race: {race.order}"


def test_compacting_again_changes_no_row(platform: Platform, race: Race) -> None:
    before = partition_rows(platform)
    out = cli(platform, "compact", "orders", "-p", f"order_year={YEAR}", "-p", f"order_month={MONTH}")
    assert "queued compaction of 1 partition" in out
    queue_drained(platform)
    assert partition_rows(platform) == before == race.expected, race.order
    assert duckdb_count(platform, "orders", [SUBJECT]) == 0
