"""How contract types are stored in Arrow/Parquet: one type mapping, one lake schema and one write batch size
for every lake writer.

Kept apart from `contracts.datasets` so that services without pyarrow (ingest) never import it.
"""

from __future__ import annotations

import pyarrow as pa

from contracts.datasets import DECIMAL_RE, Dataset
from contracts.lineage import LINE_COLUMN, OBJECT_COLUMN

_SIMPLE = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
}


def arrow_type(contract_type: str) -> pa.DataType:
    """The Arrow type a contract type is stored as (the Parquet physical type follows from it)."""
    if contract_type in _SIMPLE:
        return _SIMPLE[contract_type]
    m = DECIMAL_RE.match(contract_type)
    if not m:
        raise ValueError(f"unknown contract type {contract_type!r}")
    return pa.decimal128(int(m.group(1)), int(m.group(2)))


def lake_schema(dataset: Dataset) -> pa.Schema:
    """Schema of the lake's Parquet files: contract columns typed, then lineage; no partition columns.

    Every column is written OPTIONAL (nullability is enforced by validation, not by the file), so a
    contract that later relaxes a column does not conflict with the files already in the lake, and
    files written before a contract gained a nullable column still read (the column as nulls).
    """
    fields = [pa.field(c.name, arrow_type(c.type)) for c in dataset.columns]
    return pa.schema([*fields, pa.field(OBJECT_COLUMN, pa.string()), pa.field(LINE_COLUMN, pa.int64())])


#: parquet-cpp's defaults: a data page closes once it holds 1 MiB, or 20,000 rows
DATA_PAGE_BYTES, PAGE_ROWS = 1 << 20, 20_000
#: values handed to each column writer per call (parquet-cpp's default); a page can only close between
#: calls, so a call may overshoot the page size by one batch
DEFAULT_BATCH_ROWS = 1024


def write_batch_rows(table: pa.Table) -> int:
    """ParquetWriter's `write_batch_size` for `table`: as many rows as fill a quarter of a data page in the
    widest column (at most a page's rows). Pages then close where they close with 1,024 (TPC-H SF1 orders:
    byte-identical files, docs/design/transform-performance.md), or overshoot by at most a quarter page,
    for ~8% less writer CPU: the per-call overhead (statistics, levels, encoder bookkeeping) is paid per
    batch. The transform's and the compaction's writers both use it."""
    if not table.num_rows:
        return DEFAULT_BATCH_ROWS
    widest = max(max(c.nbytes for c in table.columns) / table.num_rows, 1.0)
    return int(min(PAGE_ROWS, max(DEFAULT_BATCH_ROWS, DATA_PAGE_BYTES // 4 / widest)))
