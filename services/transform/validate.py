"""Row-level checks of one segment: cast every column, enforce nullability and partition values.

A row is good only when every column casts, every non-nullable column has a value and the row
maps to a valid partition; otherwise it is quarantined with all of its problems in one reason,
column by column, in contract order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contracts import limits
from contracts.datasets import Column, Dataset
from services.transform.casts import arrow_type, cast_text, cast_typed
from services.transform.partition import partition_problems
from services.transform.rows import BAD_PARTITION, BAD_VALUE, MISSING_VALUE, Segment

#: rows below which columns are cast one after the other (threads cost more than they save)
PARALLEL_ROWS = 65_536


@dataclass(frozen=True)
class BadRows:
    """Refused rows of one segment: original text of the contract's columns, lines, reasons, codes."""

    values: pa.Table
    lines: np.ndarray
    reasons: list[str]
    codes: list[str]


def null_positions(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Row positions holding null."""
    return np.flatnonzero(np.asarray(pc.is_null(values)))


def as_text(table: pa.Table) -> pa.Table:
    """Every column as strings: the quarantine keeps what was read, not what it was cast to."""
    return pa.table({n: pc.cast(table[n], pa.string()) for n in table.column_names})


def long_partition_values(table: pa.Table, dataset: Dataset, skip: Collection[int] = ()) -> dict[int, str]:
    """{row: reason} for identity partition values too long for a lake key (S3 keys stop at 1,024 bytes)."""
    found: dict[int, str] = {}
    for key in dataset.partitioning:
        source = table[key.source]
        if key.transform != "identity" or not pa.types.is_string(source.type):
            continue
        lengths = np.asarray(pc.binary_length(source).fill_null(0))
        for row in np.flatnonzero(lengths > limits.PARTITION_VALUE_BYTES).tolist():
            if row not in skip and row not in found:
                found[row] = (f"{key.name}: a {int(lengths[row]):,}-byte value cannot be a partition value "
                              f"(at most {limits.PARTITION_VALUE_BYTES} bytes: it becomes part of the lake key)")
    return found


def _cast(values: pa.ChunkedArray, column: Column) -> tuple[pa.ChunkedArray | pa.Array, dict[int, str]]:
    """One column to its contract type: (typed values, null where bad; {row: why})."""
    if values.type == arrow_type(column.type) and column.type != "string":
        return values, {}
    if pa.types.is_string(values.type):
        return cast_text(values, column.type)
    return cast_typed(values, column.type)


def _cast_all(table: pa.Table, dataset: Dataset) -> list[tuple[pa.ChunkedArray | pa.Array, dict[int, str]]]:
    """Every column cast, columns side by side on the CPUs pyarrow may use (its kernels release the GIL)."""
    threads = min(pa.cpu_count(), len(dataset.columns))
    if threads < 2 or table.num_rows < PARALLEL_ROWS:
        return [_cast(table[c.name], c) for c in dataset.columns]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda c: _cast(table[c.name], c), dataset.columns))


def check(segment: Segment, dataset: Dataset) -> tuple[Segment, BadRows]:
    """Cast and check every row of a segment: (good rows typed per contract, refused rows)."""
    problems: dict[int, list[str]] = defaultdict(list)
    codes: dict[int, str] = {}
    typed: dict[str, pa.Array] = {}
    for column, (out, bad) in zip(dataset.columns, _cast_all(segment.table, dataset), strict=True):
        for row, why in bad.items():
            problems[row].append(f"{column.name}: {why}")
            codes.setdefault(row, BAD_VALUE)
        if not column.nullable and out.null_count:
            for row in null_positions(out).tolist():
                if row not in bad:
                    problems[row].append(f"{column.name}: empty, but the column is not nullable")
                    codes.setdefault(row, MISSING_VALUE)
        typed[column.name] = out
    table = pa.table(typed)
    for row, why in partition_problems(table, dataset, skip=problems.keys()).items():
        problems[row].append(why)
        codes.setdefault(row, BAD_PARTITION)
    for row, why in long_partition_values(table, dataset, skip=problems.keys()).items():
        problems[row].append(why)
        codes.setdefault(row, BAD_PARTITION)
    bad_rows = np.array(sorted(problems), dtype=np.int64)
    refused = BadRows(
        # no bad rows (the usual case): no `take`, which would first join the chunks of every column, and
        # an empty table of its own (a slice would keep the segment's text alive as long as the result)
        values=as_text(segment.table.take(pa.array(bad_rows)) if len(bad_rows) else segment.table.schema.empty_table()),
        lines=segment.lines[bad_rows],
        reasons=["; ".join(problems[r]) for r in bad_rows.tolist()],
        codes=[codes[r] for r in bad_rows.tolist()],
    )
    if not len(bad_rows):
        return Segment(table, segment.lines), refused
    keep = np.ones(table.num_rows, dtype=bool)
    keep[bad_rows] = False
    return Segment(table.filter(pa.array(keep)), segment.lines[keep]), refused
