"""Partition commits on the real boto3 backends (S3, DynamoDB, Glue), against moto server over HTTP.

The in-memory property test proves the protocol; this one proves the backends speak it: conditional
puts really conflict, Glue partitions are created with the table's Parquet format and flipped,
and purging removes every version of a versioned bucket.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import aws, lake
from contracts.commits import (
    Append,
    CommitSettings,
    ConditionFailed,
    DynamoStateTable,
    FileToStage,
    GlueCatalog,
    Item,
    NewFile,
    PartitionCommitter,
    PartitionRef,
    S3ObjectStore,
)
from contracts.datasets import load_datasets

ORDERS = load_datasets()["orders"]
REF = PartitionRef("orders", {"order_year": "2024", "order_month": "05"})
SETTINGS = CommitSettings(grace_seconds=3600, max_op_seconds=60, clock_margin_seconds=5)
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_endpoint


class Clock:
    """Wall time that the test can move forward (grace periods are hours)."""

    def __init__(self) -> None:
        self.t = time.time()

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Lake:
    bucket: str
    table: str
    database: str
    clock: Clock

    def committer(self, table: DynamoStateTable | None = None) -> PartitionCommitter:
        return PartitionCommitter(
            bucket=self.bucket,
            store=S3ObjectStore(self.bucket),
            table=table or DynamoStateTable(self.table),
            catalog=GlueCatalog(self.database),
            clock=self.clock,
            settings=SETTINGS,
        )

    def partition(self, values: tuple[str, str] = ("2024", "05")) -> dict[str, Any]:
        glue = aws.client("glue")
        part = glue.get_partition(DatabaseName=self.database, TableName="orders", PartitionValues=list(values))
        return part["Partition"]

    def view(self, values: tuple[str, str] = ("2024", "05")) -> list[int]:
        """Order ids a query reads: every object under the Glue partition's location."""
        location = self.partition(values)["StorageDescriptor"]["Location"]
        prefix = location.removeprefix(f"s3://{self.bucket}/")
        s3 = aws.client("s3")
        ids: list[int] = []
        for obj in s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", []):
            body = s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
            ids += pq.read_table(io.BytesIO(body)).column("order_id").to_pylist()
        return sorted(ids)

    def versions(self, prefix: str) -> list[str]:
        resp = aws.client("s3").list_object_versions(Bucket=self.bucket, Prefix=prefix)
        return [v["Key"] for v in resp.get("Versions", []) + resp.get("DeleteMarkers", [])]


@pytest.fixture
def lake_env(aws_env: str) -> Lake:
    """A versioned lake bucket, the state table, a Glue database with the orders table."""
    suffix = uuid.uuid4().hex[:8]
    env = Lake(f"lake-{suffix}", f"state-{suffix}", f"db_{suffix}", Clock())
    s3, ddb, glue = aws.client("s3"), aws.client("dynamodb"), aws.client("glue")
    s3.create_bucket(Bucket=env.bucket)
    s3.put_bucket_versioning(Bucket=env.bucket, VersioningConfiguration={"Status": "Enabled"})
    ddb.create_table(
        TableName=env.table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.update_time_to_live(
        TableName=env.table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
    glue.create_database(DatabaseInput={"Name": env.database})
    glue.create_table(
        DatabaseName=env.database,
        TableInput={
            "Name": "orders",
            "TableType": "EXTERNAL_TABLE",
            "PartitionKeys": [{"Name": p.name, "Type": "string"} for p in ORDERS.partitioning],
            "StorageDescriptor": {
                "Columns": [{"Name": c.name, "Type": c.glue_type} for c in ORDERS.columns],
                "Location": f"s3://{env.bucket}/orders/",
                "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
            },
        },
    )
    return env


def parquet(ids: list[int]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"order_id": pa.array(ids, pa.int64())}), buf)
    return buf.getvalue()


def stage(c: PartitionCommitter, op_id: str, ids: list[int], name: str = "part.parquet") -> NewFile:
    return c.stage(REF, op_id, name, parquet(ids), len(ids))


def append(c: PartitionCommitter, op_id: str, ids: list[int]) -> None:
    c.append(REF, [stage(c, op_id, ids)], op_id)


def by_first_id(lake_env: Lake, c: PartitionCommitter) -> dict[int, str]:
    """Committed file names by the first order id they hold."""
    s3 = aws.client("s3")
    names = {}
    for f in c.current(REF).files:
        body = s3.get_object(Bucket=lake_env.bucket, Key=f.key)["Body"].read()
        names[pq.read_table(io.BytesIO(body)).column("order_id")[0].as_py()] = f.name
    return names


class HookedTable(DynamoStateTable):
    """Runs `hook` just before the first intent is written, to force a real conditional conflict."""

    def __init__(self, name: str, hook: Callable[[], None], pk: str | None = None) -> None:
        super().__init__(name)
        self.hook: Callable[[], None] | None = hook
        self.pk = pk  # only before an intent of this partition
        self.conflicts = 0

    def put_if_version(self, item: Item, expected: int | None) -> None:
        mine = self.pk is None or item["pk"] == self.pk
        if self.hook and mine and item["sk"] == "state" and json.loads(str(item["body"]))["pending"]:
            hook, self.hook = self.hook, None
            hook()
        try:
            super().put_if_version(item, expected)
        except ConditionFailed:
            self.conflicts += 1
            raise


def test_first_append_registers_the_partition_with_the_tables_format(lake_env: Lake) -> None:
    c = lake_env.committer()
    key = c.reserve_staging(REF, "obj-1#0", "chunk-0.parquet")  # a Lambda writes Parquet straight to S3
    pq.write_table(pa.table({"order_id": [1, 2, 3]}), f"{lake_env.bucket}/{key}", filesystem=aws.s3_filesystem())
    result = c.append(REF, [NewFile("chunk-0.parquet", key, 3)], "obj-1#0")

    location = f"s3://{lake_env.bucket}/orders/order_year=2024/order_month=05/gen=1/"
    assert (result.generation, result.location) == (1, location)
    sd = lake_env.partition()["StorageDescriptor"]
    table_sd = aws.client("glue").get_table(DatabaseName=lake_env.database, Name="orders")["Table"]["StorageDescriptor"]
    assert sd["Location"] == location
    assert sd["SerdeInfo"]["SerializationLibrary"] == PARQUET_SERDE
    assert (sd["InputFormat"], sd["OutputFormat"]) == (table_sd["InputFormat"], table_sd["OutputFormat"])
    assert sd["Columns"] == table_sd["Columns"]
    assert lake_env.view() == [1, 2, 3]
    state = c.current(REF)
    assert [(f.rows, f.key.startswith(location.removeprefix(f"s3://{lake_env.bucket}/"))) for f in state.files] == [
        (3, True)
    ]
    assert c.append(REF, [NewFile("chunk-0.parquet", key, 3)], "obj-1#0").replayed
    assert lake_env.view() == [1, 2, 3]


def test_replace_flips_the_generation_and_cleanup_purges_every_version_after_grace(lake_env: Lake) -> None:
    c = lake_env.committer()
    for i, ids in enumerate([[1], [2], [3]]):
        append(c, f"obj-{i}", ids)
    names = by_first_id(lake_env, c)
    old = c.current(REF)
    result = c.replace(REF, [names[1], names[2]], [stage(c, "compact-1", [1, 2])], "compact-1")

    assert result.generation == 2 and lake_env.partition()["StorageDescriptor"]["Location"] == result.location
    assert lake_env.view() == [1, 2, 3]
    old_prefix = old.location.removeprefix(f"s3://{lake_env.bucket}/")
    s3 = aws.client("s3")
    s3.put_object(Bucket=lake_env.bucket, Key=old.files[0].key, Body=parquet([1]))  # a second version
    s3.delete_object(Bucket=lake_env.bucket, Key=old.files[1].key)  # and a delete marker
    assert len(lake_env.versions(old_prefix)) == 5

    report = c.cleanup(lake_env.clock.now() + SETTINGS.grace_seconds - 60)
    assert report.objects_deleted == 0 and len(lake_env.versions(old_prefix)) == 5  # queries may still read them

    lake_env.clock.t += SETTINGS.grace_seconds + 1
    report = c.cleanup()
    assert lake_env.versions(old_prefix) == []
    assert lake_env.versions(lake.STAGING_ROOT) == []
    assert report.complete and report.overdue == 0 and report.postponed == 0
    assert lake_env.view() == [1, 2, 3]
    live = result.location.removeprefix(f"s3://{lake_env.bucket}/")
    assert sorted(lake_env.versions(live)) == sorted(f.key for f in c.current(REF).files)


def test_append_losing_to_a_replace_rebases_into_the_new_generation(lake_env: Lake) -> None:
    c = lake_env.committer()
    append(c, "obj-1", [1])
    append(c, "obj-2", [2])
    names = by_first_id(lake_env, c)

    def compaction_commits_first() -> None:
        other = lake_env.committer()
        other.replace(REF, [names[1], names[2]], [stage(other, "compact-1", [1, 2])], "compact-1")

    table = HookedTable(lake_env.table, compaction_commits_first)
    racing = lake_env.committer(table)
    result = racing.append(REF, [stage(racing, "obj-3", [3])], "obj-3")

    assert table.conflicts == 1
    assert result.generation == 2 and lake_env.partition()["StorageDescriptor"]["Location"] == result.location
    assert lake_env.view() == [1, 2, 3]


def test_replace_losing_to_an_append_keeps_the_appended_rows(lake_env: Lake) -> None:
    c = lake_env.committer()
    append(c, "obj-1", [1])
    append(c, "obj-2", [2])
    names = by_first_id(lake_env, c)
    table = HookedTable(lake_env.table, lambda: append(lake_env.committer(), "obj-3", [3]))
    racing = lake_env.committer(table)
    result = racing.replace(REF, [names[1], names[2]], [stage(racing, "compact-1", [1, 2])], "compact-1")

    assert table.conflicts == 1
    assert result.generation == 2
    assert lake_env.view() == [1, 2, 3]
    assert len(c.current(REF).files) == 2


def test_erasure_to_zero_files_and_reconcile_after_the_partition_was_dropped(lake_env: Lake) -> None:
    c = lake_env.committer()
    append(c, "obj-1", [1])
    append(c, "obj-2", [2])
    names = by_first_id(lake_env, c)
    result = c.replace(REF, [names[1]], [], "erase-subject-x")
    assert lake_env.view() == [2]
    assert result.removed == (names[1],) and result.added == ()

    aws.client("glue").delete_partition(
        DatabaseName=lake_env.database, TableName="orders", PartitionValues=["2024", "05"]
    )
    assert c.reconcile(REF) is not None
    assert lake_env.partition()["StorageDescriptor"]["Location"] == result.location
    assert lake_env.view() == [2]
    assert c.reconcile(REF) is None


def test_partition_values_needing_escapes_survive_s3_copies_and_glue(lake_env: Lake) -> None:
    c = lake_env.committer()
    ref = PartitionRef("orders", {"order_year": "2024", "order_month": "a/b c%"})
    first = c.append(ref, [c.stage(ref, "obj-1", "p.parquet", parquet([1]), 1)], "obj-1")
    c.append(ref, [c.stage(ref, "obj-2", "p.parquet", parquet([2]), 1)], "obj-2")
    result = c.replace(
        ref, [f.name for f in c.current(ref).files], [c.stage(ref, "c", "p.parquet", parquet([1, 2]), 2)], "c"
    )

    assert first.location.endswith("/orders/order_year=2024/order_month=a%2Fb c%25/gen=1/")
    assert lake_env.partition(("2024", "a/b c%"))["StorageDescriptor"]["Location"] == result.location
    assert lake_env.view(("2024", "a/b c%")) == [1, 2]


# -- batched appends (append_many): the transform's way of committing every partition of a chunk ----------
def _refs(n: int) -> list[PartitionRef]:
    return [
        PartitionRef("orders", {"order_year": str(2000 + i // 12), "order_month": f"{i % 12 + 1:02d}"})
        for i in range(n)
    ]


def _values(ref: PartitionRef) -> tuple[str, str]:
    return (ref.values["order_year"], ref.values["order_month"])


class RequestCounter:
    """Counts the AWS requests this thread's clients send, by (service, operation)."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        for service in ("s3", "dynamodb", "glue"):
            aws.client(service).meta.events.register("before-call", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[(model.service_model.endpoint_prefix, model.name)] += 1

    def close(self) -> None:
        for service in ("s3", "dynamodb", "glue"):
            aws.client(service).meta.events.unregister("before-call", self._count)

    def of(self, service: str) -> int:
        return sum(n for (s, _), n in self.calls.items() if s == service)


def _views(lake_env: Lake) -> dict[tuple[str, ...], list[int]]:
    """What a query reads from every partition: the objects under each Glue location (one listing)."""
    s3, glue = aws.client("s3"), aws.client("glue")
    pages = glue.get_paginator("get_partitions").paginate(DatabaseName=lake_env.database, TableName="orders")
    where = {p["StorageDescriptor"]["Location"]: tuple(p["Values"]) for page in pages for p in page["Partitions"]}
    views: dict[tuple[str, ...], list[int]] = {v: [] for v in where.values()}
    listing = s3.get_paginator("list_objects_v2").paginate(Bucket=lake_env.bucket, Prefix="orders/")
    for obj in (o for page in listing for o in page.get("Contents", [])):
        location = f"s3://{lake_env.bucket}/{obj['Key'].rsplit('/', 1)[0]}/"
        if location in where:
            body = s3.get_object(Bucket=lake_env.bucket, Key=obj["Key"])["Body"].read()
            views[where[location]] += pq.read_table(io.BytesIO(body)).column("order_id").to_pylist()
    return {v: sorted(ids) for v, ids in views.items()}


def _batch(c: PartitionCommitter, refs: list[PartitionRef], first_id: int, op: str, workers: int = 1) -> list[Any]:
    files = [FileToStage(ref, f"{op}:{i}", "part.parquet", parquet([first_id + i]), 1) for i, ref in enumerate(refs)]
    staged = c.stage_many(files, workers=workers)
    return c.append_many([Append(f.ref, (s,), f.op_id) for f, s in zip(files, staged, strict=True)], workers=workers)


def test_batched_append_commits_every_partition_in_a_few_requests(lake_env: Lake) -> None:
    """105 partitions (more than one transaction holds), 3 of them already committed: each gets its
    row exactly once, new ones are registered with the table's format, and the request count is a
    handful per 100 partitions instead of a dozen per partition."""
    c = lake_env.committer()
    refs = _refs(105)
    _batch(c, refs[:3], 10_000, "before")
    counter = RequestCounter()
    try:
        results = _batch(c, refs, 0, "chunk")
    finally:
        counter.close()
    assert [r.generation for r in results] == [1] * 105 and not any(r.replayed for r in results)
    expected = {_values(ref): [i] + ([10_000 + i] if i < 3 else []) for i, ref in enumerate(refs)}
    assert _views(lake_env) == expected
    sd = lake_env.partition(_values(refs[-1]))["StorageDescriptor"]
    assert sd["SerdeInfo"]["SerializationLibrary"] == PARQUET_SERDE and sd["Columns"]
    calls = counter.calls
    assert calls[("dynamodb", "BatchGetItem")] == 4  # states, then op records: 100 + 5 keys each
    assert calls[("dynamodb", "BatchWriteItem")] == 5  # op records, 25 a request
    assert calls[("dynamodb", "PutItem")] == 1 + 2 * 105  # one staging entry; a conditional intent and finalise each
    assert calls[("dynamodb", "GetItem")] == 0
    assert calls[("s3", "HeadObject")] == 0  # staged by this committer: size and age known
    assert (calls[("s3", "PutObject")], calls[("s3", "CopyObject")]) == (105, 105)
    assert calls[("glue", "BatchCreatePartition")] == 2 and calls[("glue", "CreatePartition")] == 0
    assert calls[("glue", "BatchGetPartition")] == 1 and counter.of("glue") == 4  # + one GetTable

    again = _batch(c, refs, 0, "chunk")  # a retried chunk: replayed from the op records, nothing copied
    assert all(r.replayed for r in again)
    assert _views(lake_env) == expected


def test_batched_append_losing_a_partition_to_another_writer_rebases_it(lake_env: Lake) -> None:
    refs = _refs(5)
    other = lake_env.committer()
    _batch(other, refs, 100, "first")

    def rival() -> None:  # another chunk commits to refs[2] between our read and our intent
        other.append(refs[2], [stage_at(other, refs[2], "rival", 999)], "rival")

    table = HookedTable(lake_env.table, rival, pk="p#orders#order_year=2000/order_month=03")
    c = lake_env.committer(table)
    _batch(c, refs, 0, "chunk", workers=4)
    assert table.conflicts == 1  # only the rival's partition lost its condition; it was re-read and rebased
    for i, ref in enumerate(refs):
        assert lake_env.view(_values(ref)) == sorted([100 + i, i] + ([999] if i == 2 else []))


def stage_at(c: PartitionCommitter, ref: PartitionRef, op_id: str, order_id: int) -> NewFile:
    return c.stage(ref, op_id, "part.parquet", parquet([order_id]), 1)
