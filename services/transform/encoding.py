"""Which columns are worth dictionary encoding: decided from a small, evenly spaced sample.

Used twice: repeated string columns are dictionary-encoded before the partition sort (moving
int32 codes is far cheaper than moving strings, and the Parquet writer then needs no hashing),
and the writer enables dictionary pages only for columns that repeat; on high-cardinality
columns pyarrow would build a dictionary, give up at 1 MiB and fall back, costing time and bytes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: rows sampled per decision: enough that a column with a few thousand distinct values (clerks,
#: cities) in millions of rows is recognised as repeating (a 1,000-value column fills 63% of a
#: 1,024-row sample but 12% of an 8,192-row one); the writer decides per file with a smaller sample
SAMPLE_ROWS = 8192
WRITER_SAMPLE_ROWS = 1024
#: a column repeats when at most this share of the sampled values is distinct
MAX_DISTINCT_SHARE = 0.5
#: rows below which columns are encoded one after the other (threads cost more than they save)
PARALLEL_ROWS = 65_536


def _sample(table: pa.Table, rows: int) -> pa.Table:
    """`rows` evenly spaced rows of `table`, taken chunk by chunk.

    `Table.take` on a chunked table first concatenates every chunk of every column (for a parsed
    object of many segments: a transient copy of all its text) just to pick a few thousand rows.
    """
    n = table.num_rows
    if n <= rows:
        return table
    positions = np.linspace(0, n - 1, rows).astype(np.int64)
    return pa.table({name: _take_chunked(table.column(name), positions) for name in table.column_names})


def _take_chunked(column: pa.ChunkedArray, positions: np.ndarray) -> pa.ChunkedArray:
    """`column[positions]` (positions ascending) without concatenating its chunks."""
    if column.num_chunks == 1:
        return column.take(pa.array(positions))
    starts = np.cumsum([0] + [len(c) for c in column.chunks])
    owner = np.searchsorted(starts, positions, side="right") - 1
    parts = []
    for i in np.unique(owner).tolist():
        local = positions[owner == i] - starts[i]
        parts.append(column.chunk(i).take(pa.array(local)))
    return pa.chunked_array(parts, type=column.type)


def repeating_columns(table: pa.Table, candidates: list[str] | None = None, sample_rows: int = SAMPLE_ROWS) -> set[str]:
    """Columns (of `candidates`, default all) whose values repeat enough for a dictionary to pay off.

    Dictionary-typed columns repeat by construction; the others are judged on one shared sample.
    """
    names = table.column_names if candidates is None else candidates
    found = {n for n in names if pa.types.is_dictionary(table.schema.field(n).type)}
    plain = [n for n in names if n not in found]
    if plain:
        sample = _sample(table.select(plain), sample_rows)
        limit = MAX_DISTINCT_SHARE * max(1, sample.num_rows)
        found |= {n for n in plain if pc.count_distinct(sample[n]).as_py() <= limit}
    return found


def repeated_strings(table: pa.Table) -> list[str]:
    """The string columns whose values repeat enough to dictionary-encode them, in table order."""
    strings = [f.name for f in table.schema if pa.types.is_string(f.type)]
    return sorted(repeating_columns(table, strings), key=table.schema.get_field_index)


def encode_repeated_strings(table: pa.Table) -> pa.Table:
    """Dictionary-encode the string columns that repeat (values unchanged, only the layout).

    Columns are encoded side by side on the CPUs pyarrow may use (its hashing releases the GIL);
    a chunked column gets one dictionary for all its chunks.
    """
    names = repeated_strings(table)
    threads = min(pa.cpu_count(), len(names))
    if threads > 1 and table.num_rows >= PARALLEL_ROWS:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            encoded = list(pool.map(lambda n: pc.dictionary_encode(table.column(n)), names))
    else:
        encoded = [pc.dictionary_encode(table.column(n)) for n in names]
    for name, column in zip(names, encoded, strict=True):
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return table
