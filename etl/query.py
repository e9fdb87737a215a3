"""Analyst queries: DuckDB over the Glue catalog (local platform, or any env) and Athena (deployed envs).

Locally, each table the query names becomes a DuckDB view over Arrow data read from the files directly
under each partition's *current* Glue location (a generation prefix; older generations are never
read, the table prefix is never globbed), with the partition columns added as strings. Partitions the
WHERE clause rules out are not read at all (etl/query_prune.py). Against AWS, Athena runs the query in
the env's workgroup; results come back typed from the result metadata, so both engines answer with
Arrow tables that compare equal for the same SQL.

Files of older contract versions sit next to new ones (docs/design/schema-evolution.md): each file
is conformed to the table's columns by name, as Athena does — a column the file lacks reads NULL, a
narrower type (int32, float32, decimal of lower precision) is widened to the table's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from contracts import aws, naming
from etl.query_prune import TableColumns, pruning_conditions, select_partitions

ENGINES = ("duckdb", "athena")


class QueryError(RuntimeError):
    """The query failed or cannot run; the message says why (Athena's reason, the missing table…)."""


def database_name(env: str) -> str:
    """The Glue database of an env (as infra/core.py names it)."""
    return f"{naming.PROJECT}_{env}".replace("-", "_")


def workgroup_name(env: str) -> str:
    return naming.prefix(env)


# -- the catalog ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Partition:
    values: tuple[str, ...]
    location: str


@dataclass
class CatalogTable:
    name: str
    columns: list[tuple[str, str]]  # (name, glue type)
    partition_keys: list[str]
    location: str
    partitions: list[Partition] = field(default_factory=list)

    @property
    def shape(self) -> TableColumns:
        return TableColumns(tuple(n for n, _ in self.columns), tuple(self.partition_keys))


def catalog_tables(glue: Any, database: str) -> dict[str, CatalogTable]:
    """Tables of the database with their columns and partition keys (partitions are read on demand)."""
    tables: dict[str, CatalogTable] = {}
    try:
        for page in glue.get_paginator("get_tables").paginate(DatabaseName=database):
            for t in page["TableList"]:
                sd = t.get("StorageDescriptor") or {}
                tables[t["Name"].lower()] = CatalogTable(
                    name=t["Name"].lower(),
                    columns=[(c["Name"].lower(), c["Type"].lower()) for c in sd.get("Columns", [])],
                    partition_keys=[k["Name"].lower() for k in t.get("PartitionKeys", [])],
                    location=sd.get("Location", ""),
                )
    except glue.exceptions.EntityNotFoundException:
        raise QueryError(f"Glue database {database!r} does not exist: is the env's core stack up?") from None
    return tables


def load_partitions(glue: Any, database: str, table: CatalogTable) -> None:
    """Every partition of the table with its current location (the generation readers must see)."""
    table.partitions = []
    for page in glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=table.name):
        for p in page["Partitions"]:
            table.partitions.append(Partition(tuple(p["Values"]), p["StorageDescriptor"]["Location"]))
    table.partitions.sort(key=lambda p: p.values)


# -- reading -----------------------------------------------------------------------------------------------------
def arrow_type(glue_type: str) -> pa.DataType | None:
    """The Arrow type a Glue column reads as; None for nested types (kept as the file has them)."""
    t = glue_type.strip().lower()
    simple = {"string": pa.string(), "bigint": pa.int64(), "int": pa.int32(), "integer": pa.int32(),
              "smallint": pa.int16(), "tinyint": pa.int8(), "double": pa.float64(), "float": pa.float32(),
              "real": pa.float32(), "boolean": pa.bool_(), "date": pa.date32(), "timestamp": pa.timestamp("us"),
              "binary": pa.binary(), "varbinary": pa.binary()}
    if t in simple:
        return simple[t]
    if t.startswith(("varchar", "char")):
        return pa.string()
    if t.startswith("decimal"):
        precision, _, scale = t[t.index("(") + 1 : t.index(")")].partition(",")
        return pa.decimal128(int(precision), int(scale or 0))
    return None


def _s3_path(location: str) -> str:
    for scheme in ("s3://", "s3a://", "s3n://"):
        if location.startswith(scheme):
            return location[len(scheme):].rstrip("/")
    raise QueryError(f"location {location!r} is not on S3")


@dataclass
class ScanStats:
    """What a local query read: the numbers that prove pruning and generation isolation."""

    files: int = 0
    bytes: int = 0
    partitions_read: int = 0
    partitions_total: int = 0
    files_by_table: dict[str, list[str]] = field(default_factory=dict)


def files_under(fs: pafs.FileSystem, location: str) -> list[pafs.FileInfo]:
    """Data files directly under a location (not below it: another generation is not this one's);
    names starting with '_' or '.' are hidden, as in Hive and Athena."""
    selector = pafs.FileSelector(_s3_path(location), recursive=False, allow_not_found=True)
    infos = [i for i in fs.get_file_info(selector) if i.type == pafs.FileType.File]
    return sorted((i for i in infos if not i.base_name.startswith(("_", "."))), key=lambda i: i.path)


def _conform(data: pa.Table, columns: list[tuple[str, str]], path: str) -> pa.Table:
    """The file's columns in the catalog's order and types (missing columns are null, as in Athena)."""
    by_name = {n.lower(): data.column(i) for i, n in enumerate(data.column_names)}
    arrays, fields = [], []
    for name, glue_type in columns:
        typ = arrow_type(glue_type)
        col = by_name.get(name)
        if col is None:
            col = pa.nulls(data.num_rows, typ or pa.null())
        elif typ is not None and col.type != typ:
            try:
                col = col.cast(typ)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise QueryError(f"{path}: column {name} is {col.type}, not readable as {glue_type}: {exc}") from exc
        arrays.append(col)
        fields.append(pa.field(name, col.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _empty(table: CatalogTable) -> pa.Table:
    cols = [(n, arrow_type(t) or pa.null()) for n, t in table.columns]
    return pa.schema(cols + [(k, pa.string()) for k in table.partition_keys]).empty_table()


def read_table(fs: pafs.FileSystem, table: CatalogTable, partitions: Iterable[Partition] | None,
               stats: ScanStats) -> pa.Table:
    """The rows of the given partitions (or of the table location when it is not partitioned)."""
    sources = [(table.location, ())] if not table.partition_keys else [(p.location, p.values) for p in partitions or ()]
    pieces = []
    read = stats.files_by_table.setdefault(table.name, [])
    for location, values in sources:
        for info in files_under(fs, location):
            data = _conform(pq.read_table(info.path, filesystem=fs), table.columns, info.path)
            for key, value in zip(table.partition_keys, values, strict=True):
                data = data.append_column(key, pa.array([value] * data.num_rows, pa.string()))
            pieces.append(data)
            read.append(f"s3://{info.path}")
            stats.files += 1
            stats.bytes += info.size or 0
    if not pieces:
        return _empty(table)
    return pa.concat_tables(pieces, promote_options="permissive")


# -- results ------------------------------------------------------------------------------------------------------
@dataclass
class QueryResult:
    table: pa.Table
    engine: str
    stats: ScanStats = field(default_factory=ScanStats)
    bytes_scanned: int = 0  # Athena's DataScannedInBytes (local: bytes of the files read)
    query_id: str | None = None


def _run(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """The statement's result as Arrow (a statement without rows gives an empty table)."""
    rel = con.sql(sql)
    if rel is None:
        return pa.table({})
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow  # duckdb ≥ 1.4 / older
    return fetch()


# -- the local engine --------------------------------------------------------------------------------------------
class LocalEngine:
    """DuckDB over the Glue catalog through pyarrow's S3 filesystem (AWS_ENDPOINT_URL locally)."""

    def __init__(self, database: str, glue: Any = None, filesystem: pafs.FileSystem | None = None) -> None:
        self.database = database
        self.glue = glue or aws.client("glue")
        self.fs = filesystem or aws.s3_filesystem()

    #: how often a query starts over when a file it listed was gone when read (see `query`)
    SNAPSHOT_ATTEMPTS = 3

    def query(self, sql: str) -> QueryResult:
        """Run `sql` over one snapshot of the catalog.

        A partition's files are listed and read one by one, so a compaction or erasure can replace the
        partition in between and, once its grace is over (40 s on the local platform, hours on AWS), delete
        the files this query listed. The query then starts over from the catalog (a fresh snapshot, never a
        mix of generations); after SNAPSHOT_ATTEMPTS it says so instead of returning a partial answer.
        """
        for attempt in range(1, self.SNAPSHOT_ATTEMPTS + 1):
            try:
                return self._query_once(sql)
            except FileNotFoundError as exc:
                if attempt == self.SNAPSHOT_ATTEMPTS:
                    raise QueryError(
                        f"files were replaced while the query read them {attempt} times in a row (compaction or "
                        f"erasure committing under it; last: {exc}); run it again, or raise the local platform's "
                        "grace (compactGraceSeconds) if queries outlast it") from exc
        raise AssertionError("unreachable")

    def _query_once(self, sql: str) -> QueryResult:
        con = duckdb.connect()
        try:
            catalog = catalog_tables(self.glue, self.database)
            try:
                conditions = pruning_conditions(con, sql, {n: t.shape for n, t in catalog.items()}, self.database)
            except ValueError as exc:
                raise QueryError(str(exc)) from exc
            stats = ScanStats()
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.database}"')
            for name, conds in sorted(conditions.items()):
                table = catalog[name]
                chosen = None
                if table.partition_keys:
                    load_partitions(self.glue, self.database, table)
                    values = pa.table({k: pa.array([p.values[i] for p in table.partitions], pa.string())
                                       for i, k in enumerate(table.partition_keys)})
                    chosen = [table.partitions[i] for i in select_partitions(con, values, conds)]
                    stats.partitions_total += len(table.partitions)
                    stats.partitions_read += len(chosen)
                data = read_table(self.fs, table, chosen, stats)
                con.register(f"__data_{name}", data)
                con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "__data_{name}"')
                con.execute(f'CREATE VIEW "{self.database}"."{name}" AS SELECT * FROM "__data_{name}"')
            try:
                table = _run(con, sql)
            except duckdb.Error as exc:
                known = ", ".join(sorted(catalog)) or "none"
                raise QueryError(f"{exc} (tables in {self.database}: {known})") from exc
            return QueryResult(table, "duckdb", stats, stats.bytes)
        finally:
            con.close()


# -- Athena -----------------------------------------------------------------------------------------------------------
Progress = Callable[[str, int, float], Any]  # (state, bytes scanned, seconds elapsed)
_ATHENA_TYPES: dict[str, pa.DataType] = {
    "varchar": pa.string(), "char": pa.string(), "string": pa.string(), "bigint": pa.int64(),
    "integer": pa.int32(), "int": pa.int32(), "smallint": pa.int16(), "tinyint": pa.int8(),
    "double": pa.float64(), "float": pa.float32(), "real": pa.float32(), "boolean": pa.bool_(),
    "date": pa.date32(), "timestamp": pa.timestamp("us"),
}


def _athena_column(values: list[str | None], info: dict[str, Any]) -> pa.Array:
    kind = info.get("Type", "varchar").lower()
    if kind == "decimal":
        scale = int(info.get("Scale", 0))
        return pa.array([None if v is None else Decimal(v) for v in values],
                        pa.decimal128(max(int(info.get("Precision", 38)), scale, 1), scale))
    typ = _ATHENA_TYPES.get(kind)
    strings = pa.array(values, pa.string())
    if typ is None or typ == pa.string():
        return strings
    if kind == "boolean":
        return pa.array([None if v is None else v.lower() == "true" for v in values], pa.bool_())
    return strings.cast(typ)


class AthenaEngine:
    """Athena in the env's workgroup; results are written where the workgroup says."""

    def __init__(self, env: str, client: Any = None, poll_s: float = 1.0,
                 sleep: Callable[[float], Any] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.env, self.database, self.workgroup = env, database_name(env), workgroup_name(env)
        self.client = client or aws.client("athena")
        self.poll_s, self.sleep, self.clock = poll_s, sleep, clock

    def _output_location(self) -> str:
        try:
            wg = self.client.get_work_group(WorkGroup=self.workgroup)["WorkGroup"]
        except self.client.exceptions.InvalidRequestException as exc:
            raise QueryError(f"Athena workgroup {self.workgroup} not found: deploy core-{self.env} first") from exc
        location = (wg.get("Configuration", {}).get("ResultConfiguration") or {}).get("OutputLocation")
        if not location:
            raise QueryError(f"Athena workgroup {self.workgroup} has no result location (core sets one)")
        return location

    def query(self, sql: str, on_progress: Progress | None = None) -> QueryResult:
        started = self.clock()
        qid = self.client.start_query_execution(
            QueryString=sql,
            WorkGroup=self.workgroup,
            QueryExecutionContext={"Database": self.database},
            ResultConfiguration={"OutputLocation": self._output_location()},
        )["QueryExecutionId"]
        try:
            execution = self._wait(qid, started, on_progress)
        except KeyboardInterrupt:
            self.client.stop_query_execution(QueryExecutionId=qid)
            raise
        scanned = int(execution.get("Statistics", {}).get("DataScannedInBytes", 0))
        table = self._results(qid, skip_header=execution.get("StatementType") == "DML")
        return QueryResult(table, "athena", bytes_scanned=scanned, query_id=qid)

    def _wait(self, qid: str, started: float, on_progress: Progress | None) -> dict[str, Any]:
        while True:
            execution = self.client.get_query_execution(QueryExecutionId=qid)["QueryExecution"]
            state = execution["Status"]["State"]
            scanned = int(execution.get("Statistics", {}).get("DataScannedInBytes", 0))
            if on_progress:
                on_progress(state, scanned, self.clock() - started)
            if state == "SUCCEEDED":
                return execution
            if state in ("FAILED", "CANCELLED"):
                reason = execution["Status"].get("StateChangeReason", "no reason given")
                raise QueryError(f"Athena query {qid} {state.lower()}: {reason}")
            self.sleep(self.poll_s)

    def _results(self, qid: str, skip_header: bool) -> pa.Table:
        columns: list[dict[str, Any]] = []
        rows: list[list[str | None]] = []
        for page in self.client.get_paginator("get_query_results").paginate(QueryExecutionId=qid):
            result_set = page["ResultSet"]
            if not columns:
                columns = result_set["ResultSetMetadata"]["ColumnInfo"]
            page_rows = [[d.get("VarCharValue") for d in r["Data"]] for r in result_set["Rows"]]
            if skip_header and not rows and page_rows:
                page_rows = page_rows[1:]  # the first row of a SELECT's first page repeats the column names
                skip_header = False
            rows += page_rows
        arrays = [_athena_column([r[i] for r in rows], info) for i, info in enumerate(columns)]
        return pa.Table.from_arrays(arrays, names=[c["Name"] for c in columns])
