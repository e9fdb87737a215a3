"""Lineage columns carried by every lake row: which raw object and which line it came from.

Erasure and audits follow rows back to raw objects through them; they are stored as ordinary
columns (`string`, `bigint` in Glue) after the contract's columns. Their names are shared by every
reader, so they live in `contracts.lineage`; this module builds their Arrow arrays.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from contracts.lineage import LINE_COLUMN, OBJECT_COLUMN


def object_id_column(n: int, object_id: str) -> pa.DictionaryArray:
    """`_source_object_id` for n rows: one dictionary entry, n zero codes (no n-fold string)."""
    codes = pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(np.zeros(n, dtype=np.int32))])
    return pa.DictionaryArray.from_arrays(codes, pa.array([object_id], pa.string()))


def line_column(lines: np.ndarray) -> pa.Array:
    """`_source_line` from 1-based line numbers."""
    lines = np.ascontiguousarray(lines, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(lines), [None, pa.py_buffer(lines)])


def with_lineage(table: pa.Table, object_id: str) -> pa.Table:
    """Add `_source_object_id` just before the `_source_line` column the table already has."""
    return table.add_column(
        table.schema.get_field_index(LINE_COLUMN), OBJECT_COLUMN, object_id_column(table.num_rows, object_id)
    )
