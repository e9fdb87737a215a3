"""How contract types are stored in Arrow/Parquet: one type mapping and one lake schema for every lake writer.

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
