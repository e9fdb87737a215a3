"""Schema evolution end to end on the local platform: a lake holding files of two contract versions.

`usage_events` (tenant-partitioned) has a recorded history: v1 had quantity int32, unit_price
float32, amount decimal(10,2) and no `plan`; v2 (shipped) widens the three and adds `plan`. The
test deploys the v1 table as an earlier `pulumi up` would have, commits v1 files (their partitions
are registered with v1 columns), then does what a deploy of v2 does (`etl datasets apply`) and lands
v2 data through the platform. Then: the table and every partition carry v2's columns; `etl query`
(DuckDB), DuckDB over the files and Spark with the Glue schema read old rows with NULL `plan` and
widened values; a breaking change is refused; compaction of one tenant's mixed partition writes v2
alone; erasure rewriting a v1 file keeps it v1 and readable, and touches no other tenant.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from contracts import schema_evolution as evolution
from contracts.arrow import lake_schema
from contracts.commits import PartitionCommitter, PartitionRef
from contracts.datasets import DATASETS_DIR, load_datasets
from etl import catalog_sync
from etl.query import LocalEngine, arrow_type
from services.transform.parquet import parquet_bytes
from tests.conftest import SEED
from tests.e2e.conftest import ROOT, Platform, etl
from tests.e2e.helpers import api, wait_state
from tests.e2e.lake import s3fs

V2 = load_datasets()["usage_events"]
V1 = evolution.locked_dataset(V2, 1, DATASETS_DIR)
BASE = random.Random(SEED).randrange(800_000_000, 899_000_000)
U1, U2, U3, U4, U5 = (BASE + i for i in range(1, 6))
D24, D25 = dt.date(2024, 3, 1), dt.date(2025, 1, 15)
#: v1 files the test commits itself, by partition (tenant, event_year): rows of (event, user, qty, price, amount)
V1_FILES = {
    ("acme", "2024"): [[(1, U1, 3, 0.5, "1.50"), (2, U2, 10, 0.5, "5.00")], [(3, U1, 7, None, "3.50")]],
    ("globex", "2024"): [[(10, U3, 1, 2.25, "2.25"), (11, U4, 4, 2.25, "9.00")]],
}
V2_CSV = ("event_id,tenant_id,user_id,event_date,quantity,unit_price,amount,plan\n"
          f"4,acme,{U2},2024-03-02,6000000000,0.001,6000000.00,pro\n"
          f"12,globex,{U4},2025-01-15,2,2.25,4.50,\n"
          f"20,initech,{U5},2024-05-01,1,1.0,1.00,free\n")


def v1_table(rows: list[tuple], tenant: str, oid: str) -> pa.Table:
    return pa.table({
        "event_id": [r[0] for r in rows], "tenant_id": [tenant] * len(rows), "user_id": [r[1] for r in rows],
        "event_date": [D24] * len(rows), "quantity": [r[2] for r in rows], "unit_price": [r[3] for r in rows],
        "amount": [Decimal(r[4]) for r in rows], "_source_object_id": [oid] * len(rows),
        "_source_line": list(range(1, len(rows) + 1)),
    }, schema=lake_schema(V1))


def partition_files(p: Platform, values: tuple[str, str]) -> list[str]:
    part = p.client("glue").get_partition(DatabaseName=p.out("glueDatabase"), TableName="usage_events",
                                          PartitionValues=list(values))["Partition"]
    where = part["StorageDescriptor"]["Location"].removeprefix("s3://").rstrip("/")
    infos = s3fs(p.state.endpoint).get_file_info(fs.FileSelector(where, recursive=False))
    return sorted(i.path for i in infos if i.type == fs.FileType.File)


def locations(p: Platform) -> dict[tuple[str, ...], str]:
    glue = p.client("glue")
    pages = glue.get_paginator("get_partitions").paginate(DatabaseName=p.out("glueDatabase"), TableName="usage_events")
    return {tuple(x["Values"]): x["StorageDescriptor"]["Location"] for page in pages for x in page["Partitions"]}


def query(p: Platform, sql: str) -> pa.Table:
    return LocalEngine(p.out("glueDatabase"), glue=p.client("glue"), filesystem=s3fs(p.state.endpoint)).query(sql).table


def download(p: Platform, into: Path) -> Path:
    """Every current file of the table under Hive-style folders, as Spark or DuckDB would list them."""
    filesystem = s3fs(p.state.endpoint)
    for values in locations(p):
        folder = into.joinpath(*(f"{k}={v}" for k, v in zip(V2.partition_names, values, strict=True)))
        folder.mkdir(parents=True, exist_ok=True)
        for path in partition_files(p, values):
            with filesystem.open_input_file(path) as src:
                (folder / path.rsplit("/", 1)[-1]).write_bytes(src.read())
    return into


@pytest.fixture(scope="module")
def lake(platform: Platform) -> dict[str, Any]:
    p = platform
    glue, db = p.client("glue"), p.out("glueDatabase")
    os.environ.update({"AWS_ENDPOINT_URL": p.state.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    # the v1 table, as the deploy of v1 left it
    table = glue.get_table(DatabaseName=db, Name="usage_events")["Table"]
    data = {k: v for k, v in table.items() if k in catalog_sync._TABLE_INPUT_KEYS}
    data["StorageDescriptor"] = {**data["StorageDescriptor"], "Columns": catalog_sync.desired_columns(V1)}
    data["Parameters"] = {**data["Parameters"], **evolution.table_parameters(V1)}
    glue.update_table(DatabaseName=db, TableInput=data)
    committer = PartitionCommitter.on_aws(bucket=p.out("lakeBucket"), table_name=p.out("stateTable"), database=db)
    for (tenant, year), files in V1_FILES.items():
        ref = PartitionRef("usage_events", {"tenant": tenant, "event_year": year})
        for i, rows in enumerate(files):
            oid = f"v1-{tenant}-{i}"
            staged = committer.stage(ref, oid, f"{oid}.parquet", parquet_bytes(v1_table(rows, tenant, oid), V1),
                                     len(rows))
            committer.append(ref, [staged], oid)
    before = {}
    for v in V1_FILES:
        part = glue.get_partition(DatabaseName=db, TableName="usage_events", PartitionValues=list(v))["Partition"]
        before[v] = [(c["Name"], c["Type"]) for c in part["StorageDescriptor"]["Columns"]]
    # the deploy of v2: the table's columns, then every registered partition's
    applied = etl("datasets", "apply", "--env", "local", env=p.cli_env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    key = f"usage_events/{uuid.uuid4().hex[:6]}/v2.csv"
    p.client("s3").put_object(Bucket=p.out("landingBucket"), Key=key, Body=V2_CSV.encode())
    stored = p.wait_for(lambda _: p.events_for("RawObjectStored", source_key=key), timeout=60)
    oid = stored[0]["detail"]["object_id"]
    p.wait_for(lambda _: p.events_for("ObjectTransformed", object_id=oid), timeout=90)
    return {"before": before, "applied": applied.stdout}


def test_v1_partitions_were_registered_with_v1_columns_and_apply_brought_them_to_v2(
        platform: Platform, lake: dict[str, Any]) -> None:
    p = platform
    glue, db = p.client("glue"), p.out("glueDatabase")
    v1_cols = [(n, t) for n, t in evolution.glue_columns(V1)]
    assert all(cols == v1_cols for cols in lake["before"].values()), "precondition: the lake of a v1 deploy"
    assert "usage_events" in lake["applied"]
    want = [(n, t) for n, t in evolution.glue_columns(V2)]
    table = glue.get_table(DatabaseName=db, Name="usage_events")["Table"]
    assert [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]] == want
    assert table["Parameters"][evolution.TABLE_VERSION] == "2"
    parts = [x for page in glue.get_paginator("get_partitions").paginate(DatabaseName=db, TableName="usage_events")
             for x in page["Partitions"]]
    assert len(parts) >= 4
    for part in parts:  # no HIVE_PARTITION_SCHEMA_MISMATCH: every partition has the table's columns
        assert [(c["Name"], c["Type"]) for c in part["StorageDescriptor"]["Columns"]] == want, part["Values"]


def test_each_file_records_the_contract_version_it_was_written_with(platform: Platform, lake: dict) -> None:
    fsys = s3fs(platform.state.endpoint)

    def versions(values: tuple[str, str]) -> list[int | None]:
        out = []
        for path in partition_files(platform, values):
            with fsys.open_input_file(path) as f:
                found = evolution.file_contract(pq.read_metadata(f).metadata)
            assert found.dataset == "usage_events"
            out.append(found.version)
        return sorted(out)

    assert versions(("acme", "2024")) == [1, 1, 2]
    assert versions(("globex", "2025")) == [2]


EXPECTED = {  # event_id -> (quantity, unit_price, amount, plan, tenant)
    1: (3, 0.5, Decimal("1.50"), None, "acme"), 2: (10, 0.5, Decimal("5.00"), None, "acme"),
    3: (7, None, Decimal("3.50"), None, "acme"), 4: (6_000_000_000, 0.001, Decimal("6000000.00"), "pro", "acme"),
    10: (1, 2.25, Decimal("2.25"), None, "globex"), 11: (4, 2.25, Decimal("9.00"), None, "globex"),
    12: (2, 2.25, Decimal("4.50"), None, "globex"), 20: (1, 1.0, Decimal("1.00"), "free", "initech"),
}


def rows_of(t: pa.Table) -> dict[int, tuple]:
    return {r["event_id"]: (r["quantity"], r["unit_price"], r["amount"], r["plan"], r["tenant"]) for r in t.to_pylist()}


def test_etl_query_reads_old_and_new_files_with_the_new_schema(platform: Platform, lake: dict) -> None:
    t = query(platform, "SELECT event_id, quantity, unit_price, amount, plan, tenant FROM usage_events")
    assert rows_of(t) == EXPECTED
    assert t.schema.field("quantity").type == pa.int64() and t.schema.field("unit_price").type == pa.float64()
    assert t.schema.field("amount").type == pa.decimal128(14, 2)
    nulls = query(platform, "SELECT count(*) AS n FROM usage_events WHERE plan IS NULL AND tenant = 'acme'")
    assert nulls.column("n")[0].as_py() == 3, "v1 rows read NULL for the column v2 added"


def test_duckdb_reads_the_files_by_name_into_the_wider_types(platform: Platform, lake: dict, tmp_path: Path) -> None:
    root = download(platform, tmp_path / "usage_events")
    con = duckdb.connect()
    rel = con.sql(f"SELECT event_id, quantity, unit_price, amount, plan, tenant FROM read_parquet("
                  f"'{root}/*/*/*.parquet', hive_partitioning = true, union_by_name = true)")
    types = dict(zip(rel.columns, [str(t) for t in rel.types], strict=True))
    assert (types["quantity"], types["unit_price"], types["amount"]) == ("BIGINT", "DOUBLE", "DECIMAL(14,2)")
    got = {r[0]: (r[1], None if r[2] is None else float(r[2]), r[3], r[4], r[5]) for r in rel.fetchall()}
    assert got == {k: (v[0], v[1], v[2], v[3], v[4]) for k, v in EXPECTED.items()}


def _spark_type(glue_type: str) -> Any:
    from pyspark.sql import types as T

    arrow = arrow_type(glue_type)
    if pa.types.is_decimal(arrow):
        return T.DecimalType(arrow.precision, arrow.scale)
    return {pa.string(): T.StringType(), pa.int64(): T.LongType(), pa.int32(): T.IntegerType(),
            pa.float64(): T.DoubleType(), pa.float32(): T.FloatType(), pa.date32(): T.DateType(),
            pa.bool_(): T.BooleanType(), pa.timestamp("us"): T.TimestampNTZType()}[arrow]


def test_spark_reads_the_lake_with_the_glue_schema(platform: Platform, lake: dict, tmp_path: Path) -> None:
    pyspark = pytest.importorskip("pyspark", reason="pyspark is in the bench extra (`pip install -e .[bench]`)")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs a Java runtime (java 17+) on PATH or JAVA_HOME")
    from pyspark.sql import SparkSession
    from pyspark.sql import types as T

    table = platform.client("glue").get_table(DatabaseName=platform.out("glueDatabase"), Name="usage_events")["Table"]
    schema = T.StructType([T.StructField(c["Name"], _spark_type(c["Type"])) for c in
                           table["StorageDescriptor"]["Columns"]] +
                          [T.StructField(k["Name"], T.StringType()) for k in table["PartitionKeys"]])
    root = download(platform, tmp_path / "usage_events")
    spark = (SparkSession.builder.master("local[1]").appName("schema-evolution-test")
             .config("spark.driver.memory", "1g").config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "1").getOrCreate())
    try:
        rows = spark.read.schema(schema).option("basePath", str(root)).parquet(str(root)).collect()
    finally:
        spark.stop()
    assert pyspark.__version__
    got = {r["event_id"]: (r["quantity"], r["unit_price"], r["amount"], r["plan"], r["tenant"]) for r in rows}
    assert got == EXPECTED


def test_etl_datasets_diff_shows_partitions_and_files_by_version(platform: Platform, lake: dict) -> None:
    shown = etl("datasets", "diff", "usage_events", "--env", "local", "--files", env={**platform.cli_env,
                                                                                     "COLUMNS": "200"})
    assert shown.returncode == 0, shown.stdout + shown.stderr
    text = " ".join(shown.stdout.split())
    assert "0 of 4 get the table's columns" in text, text
    assert "6 file(s) (v1: 3, v2: 3)" in text, text


def test_a_breaking_change_is_refused_and_changes_nothing(platform: Platform, lake: dict) -> None:
    glue, db = platform.client("glue"), platform.out("glueDatabase")
    before = glue.get_table(DatabaseName=db, Name="usage_events")["Table"]["StorageDescriptor"]["Columns"]
    with pytest.raises(evolution.EvolutionError) as info:
        catalog_sync.apply(glue, db, V1)  # back to v1: narrowing three columns, dropping `plan`
    text = str(info.value)
    assert "retype quantity: int64 -> int32" in text and "drop plan" in text and "new dataset" in text
    assert glue.get_table(DatabaseName=db, Name="usage_events")["Table"]["StorageDescriptor"]["Columns"] == before


def compact_cli(p: Platform, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "etl.compact_cli", *args, "--env", "local"], env=p.cli_env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_compacting_one_tenants_mixed_partition_writes_the_new_schema(platform: Platform, lake: dict) -> None:
    p = platform
    others = {k: v for k, v in locations(p).items() if k[0] != "acme"}
    compact_cli(p, "compact", "usage_events", "-p", "tenant=acme", "-p", "event_year=2024")
    # the signal: the partition's PartitionCompacted (from this command, or from the sweep if the partition
    # was quiet long enough before it); a bin that cannot be read fails and retries instead, so a
    # timeout here names a compaction that never succeeded (its traceback is in the compact log)
    p.wait_for(lambda _: p.events_for("PartitionCompacted", dataset="usage_events",
                                      partition={"tenant": "acme", "event_year": "2024"}), timeout=240)
    files = partition_files(p, ("acme", "2024"))
    assert len(files) == 1, files
    (path,) = files
    with s3fs(p.state.endpoint).open_input_file(path) as f:
        footer = pq.read_metadata(f)
        schema = pq.read_schema(f)
    assert evolution.file_contract(footer.metadata).version == 2
    assert (schema.field("quantity").type, schema.field("unit_price").type) == (pa.int64(), pa.float64())
    assert schema.field("amount").type == pa.decimal128(14, 2) and "plan" in schema.names
    assert rows_of(query(p, "SELECT event_id, quantity, unit_price, amount, plan, tenant FROM usage_events "
                            "WHERE tenant = 'acme'")) == {k: v for k, v in EXPECTED.items() if v[4] == "acme"}
    compacted = {tuple(e["detail"]["partition"][n] for n in V2.partition_names)
                 for e in p.events_for("PartitionCompacted", dataset="usage_events")}
    moved = {k for k, v in locations(p).items() if k in others and others[k] != v}
    assert not moved, f"no other tenant's partition was rewritten (compacted: {compacted})"


def test_erasure_rewriting_a_v1_file_keeps_it_v1_and_readable(platform: Platform, lake: dict) -> None:
    p = platform
    before = locations(p)
    status, resp = api(p, "POST", "/erasure-requests", {"subject_ids": [str(U3)], "reason": "schema evolution test",
                                                        "datasets": ["usage_events"]})
    assert status == 202, resp
    assert api(p, "POST", "/erasure-runs")[0] == 202
    final = wait_state(p, resp["id"], {"COMPLETED", "FAILED"})
    assert final["state"] == "COMPLETED", final
    after = locations(p)
    assert after[("globex", "2024")] != before[("globex", "2024")], "the subject's partition was rewritten"
    assert {k for k in before if after[k] != before[k]} == {("globex", "2024")}, "no other partition was touched"
    (path,) = partition_files(p, ("globex", "2024"))
    with s3fs(p.state.endpoint).open_input_file(path) as f:
        schema = pq.read_schema(f)
    assert schema.field("quantity").type == pa.int32() and "plan" not in schema.names, "the file keeps its own schema"
    expected = {k: v for k, v in EXPECTED.items() if k != 10}
    sql = "SELECT event_id, quantity, unit_price, amount, plan, tenant FROM usage_events"
    assert rows_of(query(p, sql)) == expected
