"""The quarantine table: every refused row with its original text, the reason and its lineage.

Values stay strings, exactly as read (a value that failed its cast has no typed form), so one
schema fits every failure; `_raw` holds the line itself when it could not be split into fields.
Reasons quote row values: they are data, erased with the row, and must never be logged.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa

from contracts.datasets import Dataset
from contracts.lineage import LINE_COLUMN, OBJECT_COLUMN, RAW_COLUMN, REASON_COLUMN, SOURCE_COLUMN
from services.transform.rows import Reject
from services.transform.validate import BadRows


def quarantine_schema(dataset: Dataset) -> pa.Schema:
    """Contract columns as strings, then the reason and lineage columns."""
    return pa.schema(
        [pa.field(c.name, pa.string()) for c in dataset.columns]
        + [
            pa.field(REASON_COLUMN, pa.string(), nullable=False),
            pa.field(RAW_COLUMN, pa.string()),
            pa.field(OBJECT_COLUMN, pa.string(), nullable=False),
            pa.field(LINE_COLUMN, pa.int64(), nullable=False),
            pa.field(SOURCE_COLUMN, pa.string(), nullable=False),
        ]
    )


def build_quarantine(
    dataset: Dataset, bad: list[BadRows], rejects: list[Reject], *, object_id: str, source: str
) -> tuple[pa.Table, Counter[str]]:
    """One table of all refused rows ordered by line, and how many per reason code."""
    schema = quarantine_schema(dataset)
    names = [c.name for c in dataset.columns]
    parts: list[pa.Table] = []
    for c in bad:
        if c.values.num_rows:
            n = c.values.num_rows
            parts.append(
                pa.table(
                    {
                        **{name: c.values[name] for name in names},
                        REASON_COLUMN: pa.array(c.reasons, pa.string()),
                        RAW_COLUMN: pa.nulls(n, pa.string()),
                        OBJECT_COLUMN: pa.array([object_id] * n, pa.string()),
                        LINE_COLUMN: pa.array(c.lines, pa.int64()),
                        SOURCE_COLUMN: pa.array([source] * n, pa.string()),
                    },
                    schema=schema,
                )
            )
    if rejects:
        rows = {name: [(r.values or {}).get(name) for r in rejects] for name in names}
        parts.append(
            pa.table(
                {
                    **{name: pa.array(v, pa.string()) for name, v in rows.items()},
                    REASON_COLUMN: pa.array([r.reason for r in rejects], pa.string()),
                    RAW_COLUMN: pa.array([r.raw for r in rejects], pa.string()),
                    OBJECT_COLUMN: pa.array([object_id] * len(rejects), pa.string()),
                    LINE_COLUMN: pa.array([r.line for r in rejects], pa.int64()),
                    SOURCE_COLUMN: pa.array([source] * len(rejects), pa.string()),
                },
                schema=schema,
            )
        )
    codes = Counter(code for c in bad for code in c.codes) + Counter(r.code for r in rejects)
    if not parts:
        return schema.empty_table(), codes
    table = pa.concat_tables(parts)
    order = np.argsort(table[LINE_COLUMN].to_numpy(), kind="stable")
    return table.take(pa.array(order)), codes
