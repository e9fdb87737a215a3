"""How contract types are stored in Arrow/Parquet: one mapping for every service that writes the lake.

Kept apart from `contracts.datasets` so that services without pyarrow (ingest) never import it.
"""

from __future__ import annotations

import pyarrow as pa

from contracts.datasets import DECIMAL_RE

_SIMPLE = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
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
