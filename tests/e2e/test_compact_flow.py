"""Compaction end to end on the local platform: small files in, few files out, readers never see a mix.

One partition (orders of March 2031, which no other test writes) receives 24 small objects at once.
Compaction must start by itself when the contract's threshold (16 small files) is crossed, while
the rest keep arriving; a reader polls the partition through its Glue location the whole time and
must never see a row twice or lose one it saw. Cleanup run right after the first flip must keep the
replaced generation, and delete it (every version) once the grace period is over; `etl compact`
merges what the threshold left.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from tests.e2e.conftest import Platform
from tests.e2e.helpers import cli, queue_drained
from tests.e2e.lake import s3fs

YEAR, MONTH = "2031", "03"
PARTITION = {"order_year": YEAR, "order_month": MONTH}
OBJECTS, ROWS = 24, 20
THRESHOLD = 16  # orders.toml compaction_min_files
#: the first test also pays for the platform's start and the module's flow (~2-3 min on a busy 2-core machine)
pytestmark = pytest.mark.timeout(600)


def orders(n: int, base: int) -> bytes:
    lines = [json.dumps({"order_id": base + i, "customer_id": 7000 + (base + i) % 40, "amount": f"{10 + i % 90}.25",
                         "status": "paid", "order_date": (dt.date(2031, 3, 1) + dt.timedelta(days=i % 31)).isoformat()})
             for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


def location(p: Platform) -> str:
    part = p.client("glue").get_partition(DatabaseName=p.out("glueDatabase"), TableName="orders",
                                          PartitionValues=[YEAR, MONTH])
    return part["Partition"]["StorageDescriptor"]["Location"]


def snapshot(p: Platform) -> tuple[str, list[tuple[str, int]]]:
    """What a reader sees: the files directly under the partition's current location, nothing else."""
    where = location(p)
    filesystem = s3fs(p.state.endpoint)
    infos = filesystem.get_file_info(fs.FileSelector(where.removeprefix("s3://").rstrip("/"), recursive=False))
    rows: list[tuple[str, int]] = []
    for info in infos:
        if info.type == fs.FileType.File:
            t = pq.read_table(info.path, filesystem=filesystem, columns=["_source_object_id", "_source_line"])
            rows += zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True)
    return where, rows


@dataclass
class Reader:
    """Polls the partition while it is written and compacted; records what would break a query."""

    p: Platform
    snapshots: int = 0
    locations: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    seen: set[tuple[str, int]] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.read_once()

    def read_once(self) -> None:
        try:
            where, rows = snapshot(self.p)
        except Exception as exc:  # the partition may not exist yet; anything else is a finding
            if "EntityNotFound" not in repr(exc):
                self.problems.append(f"read failed: {exc!r}")
            return
        self.snapshots += 1
        self.locations.add(where)
        if len(rows) != len(set(rows)):
            self.problems.append(f"{len(rows) - len(set(rows))} rows seen twice at {where}")
        lost = self.seen - set(rows)
        if lost:
            self.problems.append(f"{len(lost)} rows seen before are gone at {where}")
        self.seen |= set(rows)


@dataclass
class Flow:
    landed: set[tuple[str, int]]
    reader: Reader
    compacted: list[dict]
    last_transformed: str
    first_flip: float  # when the first compaction's event was published (the flip happened before)
    replaced_prefix: str  # the generation that flip replaced
    kept_versions: int  # versions under it after a cleanup that ran within the grace period
    kept_checked_at: float


def versions(p: Platform, prefix: str) -> int:
    resp = p.client("s3").list_object_versions(Bucket=p.out("lakeBucket"), Prefix=prefix)
    return len(resp.get("Versions", [])) + len(resp.get("DeleteMarkers", []))


def ours(events: list[dict]) -> list[dict]:
    return [e for e in events if e["detail-type"] == "PartitionCompacted" and e["detail"]["partition"] == PARTITION]


@pytest.fixture(scope="module")
def flow(platform: Platform) -> Iterator[Flow]:
    reader = Reader(platform)
    thread = threading.Thread(target=reader.run, daemon=True)
    thread.start()
    s3, run = platform.client("s3"), uuid.uuid4().hex[:6]
    keys = [f"orders/compact-{run}/part-{i:03d}.jsonl" for i in range(OBJECTS)]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=platform.out("landingBucket"), Key=key, Body=orders(ROWS, 31_000_000 + i * 1000))
    stored = platform.wait_for(
        lambda ev: (found := [e for e in ev if e["detail-type"] == "RawObjectStored"
                              and e["detail"]["source_key"] in keys]) and len(found) == OBJECTS and found,
        timeout=60)
    ids = {e["detail"]["object_id"] for e in stored}
    (first, *_) = platform.wait_for(lambda ev: ours(ev), timeout=60)
    replaced = f"orders/order_year={YEAR}/order_month={MONTH}/gen={first['detail']['generation'] - 1}/"
    cli(platform, "compact-cleanup")  # right after the flip, while files are still arriving
    queue_drained(platform)
    kept, kept_at = versions(platform, replaced), time.time()
    transformed = platform.wait_for(
        lambda ev: (found := [e for e in ev if e["detail-type"] == "ObjectTransformed"
                              and e["detail"]["object_id"] in ids]) and len(found) == OBJECTS and found,
        timeout=90)
    queue_drained(platform)
    reader.stop.set()
    thread.join(timeout=10)
    reader.read_once()  # one read after the last commit, so `seen` can be complete
    yield Flow({(oid, line) for oid in ids for line in range(1, ROWS + 1)}, reader, ours(platform.drain_events()),
               max(e["time"] for e in transformed), event_time(first), replaced, kept, kept_at)


def event_time(envelope: dict) -> float:
    return dt.datetime.fromisoformat(envelope["time"].replace("Z", "+00:00")).timestamp()


def test_small_files_are_compacted_by_themselves_while_more_arrive(flow: Flow, platform: Platform) -> None:
    assert flow.compacted, "compaction started without being asked"
    assert min(e["time"] for e in flow.compacted) <= flow.last_transformed, "it ran while files were arriving"
    where, rows = snapshot(platform)
    assert sorted(rows) == sorted(flow.landed), "every row exactly once"
    newest = max(e["detail"]["generation"] for e in flow.compacted)
    assert where.endswith(f"/gen={newest}/"), "Glue points at the newest generation"
    files = len(pq.ParquetDataset(where.removeprefix("s3://"), filesystem=s3fs(platform.state.endpoint)).files)
    assert files < THRESHOLD and files <= OBJECTS - THRESHOLD + 1, f"{files} files left of {OBJECTS}"
    for e in flow.compacted:
        d = e["detail"]
        assert d["files_after"] < d["files_before"] and d["rows"] > 0 and d["bytes_after"] > 0


def test_a_reader_never_saw_a_row_twice_or_lost_one(flow: Flow) -> None:
    # two Glue locations seen means the reader read on both sides of a flip; how many reads fit in the flow
    # depends only on the machine's speed
    assert len(flow.reader.locations) >= 2 and flow.reader.snapshots > len(flow.reader.locations), \
        "it read across at least one flip"
    assert flow.reader.problems == []
    assert flow.reader.seen == flow.landed


def test_etl_compact_merges_what_the_threshold_left(flow: Flow, platform: Platform) -> None:
    out = cli(platform, "compact", "orders", "-p", f"order_year={YEAR}", "-p", f"order_month={MONTH}")
    assert "queued compaction of 1 partition" in out
    queue_drained(platform)
    where, rows = snapshot(platform)
    assert sorted(rows) == sorted(flow.landed)
    files = pq.ParquetDataset(where.removeprefix("s3://"), filesystem=s3fs(platform.state.endpoint)).files
    assert len(files) == 1, "everything fits one target: one file"
    table = pq.read_table(files[0], filesystem=s3fs(platform.state.endpoint))
    keys = list(zip(table.column("order_date").to_pylist(), table.column("order_id").to_pylist(), strict=True))
    assert keys == sorted(keys), "sorted by the contract's sort key"


def test_cleanup_deletes_the_replaced_generation_only_after_the_grace_period(flow: Flow, platform: Platform) -> None:
    grace = float(platform.state.functions["etl-local-compact"]["function"]["environment"]["GRACE_SECONDS"])
    assert flow.kept_checked_at < flow.first_flip + grace, "the first cleanup ran within the grace period"
    assert flow.kept_versions > 0, "not before: queries that started on the old generation can still read it"
    time.sleep(max(0.0, flow.first_flip + grace + 3 - time.time()))
    cli(platform, "compact-cleanup")
    queue_drained(platform)
    assert versions(platform, flow.replaced_prefix) == 0, "after: every version of every replaced file is gone"
    _, rows = snapshot(platform)
    assert sorted(rows) == sorted(flow.landed), "the current generation is untouched"
