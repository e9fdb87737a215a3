"""`etl query` locally: DuckDB over the Glue catalog through moto server (HTTP), and the Athena path with a stub.

The lake here is laid out as the platform lays it out: each partition's files under a generation prefix,
the Glue partition pointing at the newest one; an older generation with *different* rows sits beside it
and must never be read.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from botocore.stub import Stubber
from rich.console import Console
from typer.testing import CliRunner

from contracts.datasets import load_datasets
from etl import query as q
from etl import query_cli
from etl.query_prune import TableColumns, pruning_conditions, select_partitions
from infra.catalog import PARQUET_INPUT, PARQUET_OUTPUT, PARQUET_SERDE, table_columns
from tests.fakes.catalog import create_dataset_table

ENV = "qt"
DB = q.database_name(ENV)
LAKE = "qt-lake"
ORDER_STATUSES = ("placed", "paid", "shipped")


def order_rows() -> list[dict[str, Any]]:
    """Orders over four months (2023-12 … 2024-03), two files per month, customers 1-6."""
    rows = []
    oid = 0
    for year, month in ((2023, 12), (2024, 1), (2024, 2), (2024, 3)):
        for day in range(1, 13):
            oid += 1
            rows.append({"order_id": oid, "customer_id": 1 + oid % 6, "amount": Decimal(f"{oid * 3}.25"),
                         "status": ORDER_STATUSES[oid % 3], "order_date": dt.date(year, month, day * 2),
                         "_source_object_id": f"obj{month:02d}", "_source_line": day})
    return rows


def customer_rows() -> list[dict[str, Any]]:
    return [{"customer_id": i, "name": f"n{i}", "email": f"c{i}@example.com", "phone": None,
             "country": "DE" if i % 2 else "FR", "signup_date": dt.date(2023, 11 + i % 2, i),
             "_source_object_id": "crm", "_source_line": i} for i in range(1, 7)]


def schema_of(dataset: str) -> pa.Schema:
    return pa.schema([(n, q.arrow_type(t)) for n, t in table_columns(load_datasets()[dataset])])


class Lake:
    def __init__(self) -> None:
        self.s3, self.glue = boto3.client("s3"), boto3.client("glue")
        self.files: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)  # current gen's files

    def table(self, dataset: str) -> None:
        create_dataset_table(self.glue, DB, load_datasets()[dataset], LAKE)

    def put(self, key: str, rows: list[dict[str, Any]], dataset: str) -> None:
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=schema_of(dataset)), buf, compression="zstd")
        self.s3.put_object(Bucket=LAKE, Key=key, Body=buf.getvalue())

    def partition(self, dataset: str, values: tuple[str, ...], gen: int, chunks: list[list[dict[str, Any]]]) -> None:
        names = [p.name for p in load_datasets()[dataset].partitioning]
        prefix = f"{dataset}/" + "/".join(f"{n}={v}" for n, v in zip(names, values, strict=True)) + f"/gen={gen}/"
        for i, rows in enumerate(chunks):
            self.put(f"{prefix}part-{i:04d}.parquet", rows, dataset)
            self.files[(dataset, values)].append(f"s3://{LAKE}/{prefix}part-{i:04d}.parquet")
        sd = {"Columns": [], "Location": f"s3://{LAKE}/{prefix}", "InputFormat": PARQUET_INPUT,
              "OutputFormat": PARQUET_OUTPUT, "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE}}
        self.glue.create_partition(DatabaseName=DB, TableName=dataset,
                                   PartitionInput={"Values": list(values), "StorageDescriptor": sd})


@pytest.fixture(scope="module")
def lake(moto_endpoint: str) -> Lake:
    lk = Lake()
    lk.s3.create_bucket(Bucket=LAKE)
    lk.glue.create_database(DatabaseInput={"Name": DB})
    lk.table("orders")
    lk.table("customers")
    by_month: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in order_rows():
        by_month[(str(r["order_date"].year), f"{r['order_date'].month:02d}")].append(r)
    for values, rows in sorted(by_month.items()):
        if values == ("2024", "01"):
            # the old generation: the same orders before compaction plus one later erased, in 3 files
            stale = [*rows, {**rows[0], "order_id": 999, "amount": Decimal("1000000.00")}]
            for i in range(3):
                lk.put(f"orders/order_year=2024/order_month=01/gen=1/part-{i:04d}.parquet", stale[i::3], "orders")
            lk.partition("orders", values, 2, [rows[:6], rows[6:]])
        else:
            lk.partition("orders", values, 1, [rows[:6], rows[6:]])
    lk.put("orders/order_year=2024/order_month=02/gen=1/_staging-leftover.parquet", order_rows()[:3], "orders")
    by_signup: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in customer_rows():
        by_signup[(str(r["signup_date"].year), f"{r['signup_date'].month:02d}")].append(r)
    for values, rows in sorted(by_signup.items()):
        lk.partition("customers", values, 1, [rows])
    return lk


def local(sql: str) -> q.QueryResult:
    return q.LocalEngine(DB).query(sql)


def expected_orders(pred: Any) -> list[dict[str, Any]]:
    return [r for r in order_rows() if pred(r)]


# -- answers --------------------------------------------------------------------------------------------------
def test_date_range_filter_and_group_by(lake: Lake) -> None:
    result = local("SELECT status, count(*) AS n, sum(amount) AS total FROM orders "
                   "WHERE order_date BETWEEN DATE '2024-01-01' AND DATE '2024-02-29' GROUP BY status ORDER BY status")
    want: dict[str, list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    for r in expected_orders(lambda r: dt.date(2024, 1, 1) <= r["order_date"] <= dt.date(2024, 2, 29)):
        want[r["status"]][0] += 1
        want[r["status"]][1] += r["amount"]
    assert result.table.to_pylist() == [{"status": s, "n": n, "total": t} for s, (n, t) in sorted(want.items())]
    assert result.stats.files == 8  # no pruning on a data column: every current file of every partition, once
    assert not any("gen=1/" in f and "order_month=01" in f for f in result.stats.files_by_table["orders"])


def test_join_of_two_tables(lake: Lake) -> None:
    result = local("SELECT c.country, count(*) AS orders, sum(o.amount) AS total FROM orders o "
                   "JOIN customers c ON c.customer_id = o.customer_id WHERE o.order_year = '2024' "
                   "GROUP BY c.country ORDER BY c.country")
    country = {c["customer_id"]: c["country"] for c in customer_rows()}
    want: dict[str, list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    for r in expected_orders(lambda r: r["order_date"].year == 2024):
        want[country[r["customer_id"]]][0] += 1
        want[country[r["customer_id"]]][1] += r["amount"]
    assert result.table.to_pylist() == [{"country": k, "orders": n, "total": t} for k, (n, t) in sorted(want.items())]
    assert result.stats.partitions_read == 3 + 2  # orders 2024-01..03, every customers partition


def test_old_generation_and_hidden_files_are_never_read(lake: Lake) -> None:
    result = local("SELECT count(*) AS n, max(order_id) AS top FROM orders WHERE order_month = '01'")
    assert result.table.to_pylist() == [{"n": 12, "top": 24}]  # order 999 lives only in gen=1
    assert sorted(result.stats.files_by_table["orders"]) == sorted(lake.files[("orders", ("2024", "01"))])
    everything = local("SELECT count(*) AS n FROM orders")
    assert everything.table.to_pylist() == [{"n": 48}]
    assert not any("_staging" in f for f in everything.stats.files_by_table["orders"])


# -- pruning ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("where", "partitions"), [
    ("order_year = '2024' AND order_month IN ('01', '02')", [("2024", "01"), ("2024", "02")]),
    ("o.order_month >= '02' AND o.order_year = '2024'", [("2024", "02"), ("2024", "03")]),
    ("order_year BETWEEN '2023' AND '2023'", [("2023", "12")]),
    ("CAST(order_month AS INTEGER) = 3 AND amount > 0", [("2024", "03")]),
    ("order_year = '2024' OR amount > 0", None),  # a disjunction with a data column prunes nothing
    ("order_year = '1999'", []),
])
def test_pruning_reads_only_the_selected_partitions_files(lake: Lake, where: str, partitions: Any) -> None:
    result = local(f"SELECT count(*) AS n FROM orders o WHERE {where}")
    all_parts = [("2023", "12"), ("2024", "01"), ("2024", "02"), ("2024", "03")]
    chosen = all_parts if partitions is None else partitions
    files = [f for p in chosen for f in lake.files[("orders", p)]]
    assert sorted(result.stats.files_by_table["orders"]) == sorted(files)
    assert result.stats.files == len(files) and result.stats.partitions_read == len(chosen)
    assert result.stats.partitions_total == 4
    unpruned = local(f"SELECT count(*) AS n FROM (SELECT * FROM orders) o WHERE {where}")
    assert unpruned.stats.files == 8 and unpruned.table == result.table  # same answer, fewer files


def test_outer_joins_do_not_prune_the_nullable_side(lake: Lake) -> None:
    sql = ("SELECT count(*) AS n FROM customers c LEFT JOIN orders o ON o.customer_id = c.customer_id "
           "AND o.order_month = '01' WHERE o.order_year IS NULL OR o.order_year = '2024'")
    result = local(sql)
    assert result.stats.partitions_read == result.stats.partitions_total
    con = duckdb.connect()
    con.register("orders", pa.Table.from_pylist(
        [{**r, "order_year": str(r["order_date"].year), "order_month": f"{r['order_date'].month:02d}"}
         for r in order_rows()]))
    con.register("customers", pa.Table.from_pylist(customer_rows()))
    assert result.table.to_pylist() == [dict(zip(["n"], row, strict=True)) for row in con.execute(sql).fetchall()]


def test_database_qualified_names_work_as_in_athena(lake: Lake) -> None:
    result = local(f'SELECT count(*) AS n FROM "{DB}".orders WHERE order_year = \'2023\'')
    assert result.table.to_pylist() == [{"n": 12}] and result.stats.partitions_read == 1


def test_unknown_tables_and_bad_sql_say_what_is_wrong(lake: Lake) -> None:
    with pytest.raises(q.QueryError, match=r"(?s)payments.*tables in etl_qt: customers, orders"):
        local("SELECT * FROM payments")
    with pytest.raises(q.QueryError, match="cannot parse"):
        local("SELEC 1")
    with pytest.raises(q.QueryError, match="does not exist"):
        q.LocalEngine("etl_nope").query("SELECT 1")


def _replace_partition_after_listing(lake: Lake, monkeypatch: pytest.MonkeyPatch, values: tuple[str, str],
                                     times: int) -> list[str]:
    """The first `times` listings of the partition are followed at once by what a compaction past its grace
    does: the same rows under a new generation, the catalog flipped to it, the listed files deleted."""
    listed = q.files_under
    replaced: list[str] = []

    def files_under(fs: Any, location: str) -> list[Any]:
        infos = listed(fs, location)
        if f"order_year={values[0]}/order_month={values[1]}/" in location and len(replaced) < times:
            gen = int(location.rstrip("/").rsplit("=", 1)[1]) + 1
            rows = [r for r in order_rows() if (str(r["order_date"].year), f"{r['order_date'].month:02d}") == values]
            lake.glue.delete_partition(DatabaseName=DB, TableName="orders", PartitionValues=list(values))
            lake.files[("orders", values)].clear()
            lake.partition("orders", values, gen, [rows[:6], rows[6:]])
            for info in infos:
                bucket, key = info.path.split("/", 1)
                lake.s3.delete_object(Bucket=bucket, Key=key)
            replaced.append(location)
        return infos

    monkeypatch.setattr(q, "files_under", files_under)
    return replaced


def test_a_partition_replaced_under_a_query_is_read_again_from_a_fresh_snapshot(
        lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    replaced = _replace_partition_after_listing(lake, monkeypatch, ("2024", "03"), times=1)
    result = local("SELECT count(*) AS n, sum(order_id) AS s FROM orders")
    rows = order_rows()
    assert result.table.to_pylist() == [{"n": len(rows), "s": sum(r["order_id"] for r in rows)}]
    assert len(replaced) == 1  # listed, gone when read: the second attempt read the new generation whole
    assert sorted(f for f in result.stats.files_by_table["orders"] if "order_month=03" in f) == \
        sorted(lake.files[("orders", ("2024", "03"))])


def test_a_query_that_keeps_losing_its_files_says_so(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    _replace_partition_after_listing(lake, monkeypatch, ("2024", "03"), times=q.LocalEngine.SNAPSHOT_ATTEMPTS)
    with pytest.raises(q.QueryError, match=r"replaced while the query read them 3 times.*compactGraceSeconds"):
        local("SELECT count(*) AS n FROM orders")
    assert local("SELECT count(*) AS n FROM orders").table.to_pylist() == [{"n": len(order_rows())}]


SHAPES = {"orders": TableColumns(("order_id", "amount"), ("order_year", "order_month")),
          "customers": TableColumns(("customer_id", "country"), ("signup_year",))}


@pytest.mark.parametrize(("sql", "pruned"), [
    ("SELECT * FROM orders WHERE order_year = '2024'", {"orders": True}),
    ("SELECT * FROM orders WHERE order_id IN (SELECT order_id FROM orders WHERE order_year = '2024')",
     {"orders": False}),  # the outer reference reads everything
    ("SELECT * FROM orders, (SELECT 1 AS order_year) s WHERE order_year = '2024'", {"orders": False}),  # ambiguous
    ("SELECT * FROM orders o JOIN customers c ON c.signup_year = '2020' WHERE o.order_year = '2024'",
     {"orders": True, "customers": True}),
    ("SELECT * FROM orders o FULL JOIN customers c ON c.signup_year = o.order_year WHERE o.order_year = '1'",
     {"orders": False, "customers": False}),
    ("WITH x AS (SELECT * FROM orders WHERE order_month = '01') SELECT * FROM x", {"orders": True}),
    ("SELECT * FROM orders WHERE order_year = '2024' UNION ALL SELECT * FROM orders", {"orders": False}),
])
def test_which_references_can_be_pruned(sql: str, pruned: dict[str, bool]) -> None:
    conds = pruning_conditions(duckdb.connect(), sql, SHAPES)
    assert {t: c is not None for t, c in conds.items()} == pruned


def test_partition_selection_is_evaluated_by_duckdb() -> None:
    con = duckdb.connect()
    values = pa.table({"order_year": ["2023", "2024", "2024"], "order_month": ["12", "01", "02"]})
    conds = pruning_conditions(con, "SELECT * FROM orders WHERE order_year = '2024' AND order_month < '02' "
                                    "OR order_year = '2023'", SHAPES)
    assert select_partitions(con, values, conds["orders"]) == [0, 1]
    two = pruning_conditions(con, "SELECT * FROM orders WHERE order_month = '02' UNION ALL "
                                  "SELECT * FROM orders WHERE order_year = '2023'", SHAPES)
    assert select_partitions(con, values, two["orders"]) == [0, 2]  # union over references


# -- the files themselves -----------------------------------------------------------------------------------------
def test_lake_parquet_reads_identically_with_duckdb_pyarrow_and_pandas(lake: Lake, tmp_path: Path) -> None:
    key = lake.files[("orders", ("2024", "02"))][0].removeprefix(f"s3://{LAKE}/")
    path = tmp_path / "part.parquet"
    path.write_bytes(lake.s3.get_object(Bucket=LAKE, Key=key)["Body"].read())
    by_arrow = pq.read_table(path).to_pylist()
    by_pandas = pd.read_parquet(path, engine="pyarrow").to_dict("records")
    con = duckdb.connect()
    cur = con.execute(f"SELECT * FROM read_parquet('{path}')")
    by_duckdb = [dict(zip([d[0] for d in cur.description], row, strict=True)) for row in cur.fetchall()]
    assert len(by_arrow) == 6 and by_arrow == by_duckdb
    for a, p in zip(by_arrow, by_pandas, strict=True):
        assert {k: (v.date() if isinstance(v, pd.Timestamp) else v) for k, v in p.items()} == a


def test_physical_schema_matches_the_glue_table_types(lake: Lake, tmp_path: Path) -> None:
    glue = boto3.client("glue")
    for dataset in ("orders", "customers"):
        table = glue.get_table(DatabaseName=DB, Name=dataset)["Table"]
        glue_cols = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
        key = next(f for (d, _), files in lake.files.items() if d == dataset for f in files)
        path = tmp_path / f"{dataset}.parquet"
        path.write_bytes(lake.s3.get_object(Bucket=LAKE, Key=key.removeprefix(f"s3://{LAKE}/"))["Body"].read())
        physical = pq.read_schema(path)
        assert physical.names == [n for n, _ in glue_cols]
        for name, glue_type in glue_cols:
            assert physical.field(name).type == q.arrow_type(glue_type), (dataset, name, glue_type)


# -- the command ---------------------------------------------------------------------------------------------------
def cli(*args: str) -> Any:
    """`etl query …` as wired into the main app (a group: the sub-app's command keeps its name)."""
    root = typer.Typer()
    root.add_typer(query_cli.app)
    root.callback()(lambda: None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(query_cli, "console", Console(width=200))
        mp.setattr(query_cli, "err", Console(width=200, stderr=True))
        return CliRunner().invoke(root, ["query", *args, "--env", ENV, "--engine", "duckdb"])


def test_cli_formats_and_verbose(lake: Lake, tmp_path: Path) -> None:
    sql = "SELECT status, count(*) AS n FROM orders WHERE order_year = '2023' GROUP BY 1 ORDER BY 1"
    shown = cli(sql, "--verbose")
    assert shown.exit_code == 0, shown.output
    assert "paid" in shown.stdout and "read 2 file(s)" in shown.stderr and "from 1 of 4 partition(s)" in shown.stderr
    csv = cli(sql, "--format", "csv")
    assert csv.stdout.splitlines()[0] == '"status","n"' and len(csv.stdout.splitlines()) == 4
    out = tmp_path / "r.json"
    assert cli(sql, "--format", "json", "--out", str(out)).exit_code == 0
    assert [r["status"] for r in json.loads(out.read_text())] == sorted(ORDER_STATUSES)
    pq_out = tmp_path / "r.parquet"
    assert cli(sql, "--format", "parquet", "--out", str(pq_out)).exit_code == 0
    assert pq.read_table(pq_out).column("n").to_pylist() == [4, 4, 4]
    bad = cli(sql, "--format", "parquet")
    assert bad.exit_code == 1 and "needs --out" in bad.stderr


# -- Athena (stubbed: moto's Athena does not execute SQL) -------------------------------------------------------------
def athena_stub(rows: list[list[str | None]], columns: list[dict[str, Any]], states: list[str],
                reason: str = "") -> tuple[Any, Stubber]:
    client = boto3.client("athena", region_name="us-east-1", endpoint_url="https://athena.us-east-1.amazonaws.com")
    stub = Stubber(client)
    stub.add_response("get_work_group", {"WorkGroup": {"Name": "etl-qt", "Configuration": {
        "ResultConfiguration": {"OutputLocation": "s3://etl-qt-athena-results/"}}}}, {"WorkGroup": "etl-qt"})
    stub.add_response("start_query_execution", {"QueryExecutionId": "q-1"}, {
        "QueryString": "SELECT 1", "WorkGroup": "etl-qt", "QueryExecutionContext": {"Database": "etl_qt"},
        "ResultConfiguration": {"OutputLocation": "s3://etl-qt-athena-results/"}})
    for i, state in enumerate(states):
        status: dict[str, Any] = {"State": state}
        if reason:
            status["StateChangeReason"] = reason
        stub.add_response("get_query_execution", {"QueryExecution": {
            "QueryExecutionId": "q-1", "StatementType": "DML", "Status": status,
            "Statistics": {"DataScannedInBytes": 1000 * (i + 1)}}}, {"QueryExecutionId": "q-1"})
    header = [[c["Name"] for c in columns]]
    pages = [header + rows[:2], rows[2:]] if states[-1] == "SUCCEEDED" else []
    for i, page in enumerate(pages):
        resp: dict[str, Any] = {"ResultSet": {"Rows": [{"Data": [{} if v is None else {"VarCharValue": v} for v in r]}
                                                       for r in page],
                                              "ResultSetMetadata": {"ColumnInfo": columns}}}
        params: dict[str, Any] = {"QueryExecutionId": "q-1"}
        if i:
            params["NextToken"] = "t1"
        if i < len(pages) - 1:
            resp["NextToken"] = "t1"
        stub.add_response("get_query_results", resp, params)
    stub.activate()
    return client, stub


COLUMNS = [{"Name": "country", "Type": "varchar"}, {"Name": "orders", "Type": "bigint"},
           {"Name": "total", "Type": "decimal", "Precision": 38, "Scale": 2},
           {"Name": "first", "Type": "date"}, {"Name": "vip", "Type": "boolean"}]


def test_athena_polls_with_progress_and_pages_typed_results() -> None:
    rows = [["DE", "3", "10.50", "2024-01-02", "true"], ["FR", "1", "2.25", None, "false"],
            ["IT", None, None, None, None]]
    client, stub = athena_stub(rows, COLUMNS, ["QUEUED", "RUNNING", "SUCCEEDED"])
    seen: list[tuple[str, int]] = []
    sleeps: list[float] = []
    engine = q.AthenaEngine(ENV, client=client, poll_s=0.5, sleep=sleeps.append)
    result = engine.query("SELECT 1", lambda state, scanned, _: seen.append((state, scanned)))
    stub.assert_no_pending_responses()
    assert seen == [("QUEUED", 1000), ("RUNNING", 2000), ("SUCCEEDED", 3000)] and sleeps == [0.5, 0.5]
    assert result.bytes_scanned == 3000 and result.query_id == "q-1" and result.engine == "athena"
    assert result.table.to_pylist() == [
        {"country": "DE", "orders": 3, "total": Decimal("10.50"), "first": dt.date(2024, 1, 2), "vip": True},
        {"country": "FR", "orders": 1, "total": Decimal("2.25"), "first": None, "vip": False},
        {"country": "IT", "orders": None, "total": None, "first": None, "vip": None},
    ]


def test_athena_failure_carries_athenas_reason() -> None:
    client, _ = athena_stub([], COLUMNS, ["RUNNING", "FAILED"], reason="COLUMN_NOT_FOUND: line 1:8: Column 'x'")
    with pytest.raises(q.QueryError, match="Athena query q-1 failed: COLUMN_NOT_FOUND"):
        q.AthenaEngine(ENV, client=client, sleep=lambda _: None).query("SELECT 1")


def test_same_sql_same_answer_from_athenas_rendering(lake: Lake) -> None:
    """Athena returns every value as text; typed back through the result metadata it equals DuckDB's answer."""
    sql = ("SELECT c.country, count(*) AS orders, sum(o.amount) AS total, min(o.order_date) AS first FROM orders o "
           "JOIN customers c ON c.customer_id = o.customer_id WHERE o.order_date >= DATE '2024-01-01' "
           "GROUP BY 1 ORDER BY 1")
    mine = local(sql).table
    cols = [{"Name": "country", "Type": "varchar"}, {"Name": "orders", "Type": "bigint"},
            {"Name": "total", "Type": "decimal", "Precision": 38, "Scale": 2}, {"Name": "first", "Type": "date"}]
    rendered = [[r["country"], str(r["orders"]), f"{r['total']:.2f}", r["first"].isoformat()] for r in mine.to_pylist()]
    client, _ = athena_stub(rendered, cols, ["SUCCEEDED"])
    client.meta.events  # noqa: B018 - the stub answers "SELECT 1"; the SQL itself is checked by DuckDB above
    theirs = q.AthenaEngine(ENV, client=client, sleep=lambda _: None).query("SELECT 1").table
    assert theirs.to_pylist() == mine.to_pylist()
