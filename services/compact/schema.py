"""Reading inputs through the lake's Parquet schema (`contracts.arrow.lake_schema`, shared with transform).

Compaction reads every input through that schema, so files written before a contract gained a
nullable column still merge (the column reads as nulls), files of a narrower version widen (int32 ->
int64, float32 -> float64, decimal precision up: docs/design/schema-evolution.md), and the output is
written in the current contract version; strings that repeat travel as dictionaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DICTIONARY = pa.dictionary(pa.int32(), pa.string())
#: rows sampled to decide which strings repeat, and the distinct share under which one does
SAMPLE_ROWS, MAX_DISTINCT_SHARE = 8192, 0.5


class SchemaMismatch(ValueError):
    """An input file has a column whose type cannot be read as the contract's type."""


def dictionary_columns(paths: Sequence[Path], schema: pa.Schema, exclude: Iterable[str] = ()) -> list[str]:
    """String columns to move through the merge as dictionaries (int32 codes are cheaper than strings).

    Judged on the first inputs' values (at least SAMPLE_ROWS rows): a thousand clerks are unique in a
    small file, so the writers' own per-file choices would miss columns that repeat at row-group scale.
    """
    skip = set(exclude)
    strings = [f.name for f in schema if pa.types.is_string(f.type) and f.name not in skip]
    if not strings:
        return []
    tables, rows = [], 0
    for path in paths:
        # one ParquetFile per sample file, not read_schema + read_table: read_table goes through the
        # dataset layer, whose first use (its import) cost a fresh process 0.02 s of a 1 s rewrite
        with pa.OSFile(str(path)) as source:
            f = pq.ParquetFile(source, pre_buffer=False)
            available = [n for n in strings if n in f.schema_arrow.names]
            table = f.read(columns=available, use_threads=False)
        tables.append(table.cast(pa.schema([schema.field(n) for n in available]), safe=False))
        rows += tables[-1].num_rows
        if rows >= SAMPLE_ROWS:
            break
    sample = pa.concat_tables(tables, promote_options="default")
    limit = MAX_DISTINCT_SHARE * max(1, sample.num_rows)
    return [n for n in strings if n in sample.column_names and pc.count_distinct(sample[n]).as_py() <= limit]


def read_schema(schema: pa.Schema, dictionary: Iterable[str]) -> pa.Schema:
    """The lake schema with the chosen string columns as dictionaries (what the merge moves)."""
    chosen = set(dictionary)
    return pa.schema([pa.field(f.name, DICTIONARY) if f.name in chosen else f for f in schema])


def conform(batch: pa.RecordBatch, schema: pa.Schema, source: str) -> pa.RecordBatch:
    """`batch` with exactly `schema`'s columns: missing ones as nulls, others cast (safely) to type.

    A column the contract does not know is an error, not dropped: compaction never loses data.
    """
    if batch.schema.equals(schema):  # the common case: written by this platform under this contract
        return batch
    extra = [n for n in batch.schema.names if schema.get_field_index(n) < 0]
    if extra:
        raise SchemaMismatch(f"{source}: columns {extra} are not in the contract; refusing to drop them")
    columns = []
    for f in schema:
        i = batch.schema.get_field_index(f.name)
        if i < 0:
            columns.append(pa.nulls(batch.num_rows, f.type))
            continue
        col = batch.column(i)
        if not col.type.equals(f.type):
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaMismatch(f"{source}: column {f.name!r} is {col.type}, expected {f.type}") from exc
        columns.append(col)
    return pa.RecordBatch.from_arrays(columns, schema=schema)
