"""Parquet output of a compaction: the transform service's writer choices, rolled into target-sized files.

Same options as services/transform/parquet.py (copied, services never import each other):
contract compression (zstd level 1; free text as DELTA_LENGTH_BYTE_ARRAY), statistics and page index,
decimals as integers, no Arrow schema in the footer, DELTA_BINARY_PACKED for `_source_line` and
integer sort-key columns, bloom filters on the subject columns, `sorting_columns` from the
contract, dictionary pages for columns that repeat in a sample of the first row group.

Memory: pyarrow cannot append to an open row group, so rows are buffered until a full row group
(`row_group_rows`) is written; that buffer plus the merge's is the service's whole footprint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts.arrow import write_batch_rows
from contracts.datasets import Dataset
from contracts.lineage import LINE_COLUMN
from contracts.schema_evolution import footer_metadata
from services.compact.split_writer import SplitFileWriter, column_shares, splittable

BLOOM_FPP = 0.05
#: rows sampled for the dictionary decision (a row group, not a small file: 8,192 rows recognise a
#: thousand clerks as repeating), and the distinct share under which a column "repeats"
WRITER_SAMPLE_ROWS, MAX_DISTINCT_SHARE = 8192, 0.5
ZSTD_TEXT_LEVEL, ZSTD_LEVEL = 1, 1
#: free text (strings without a dictionary): smaller than PLAIN at zstd 3, for less CPU (as transform)
TEXT_ENCODING = "DELTA_LENGTH_BYTE_ARRAY"
_CODECS = {"zstd": "zstd", "snappy": "snappy", "gzip": "gzip", "none": "none"}
#: roll over to a new file only if at least this share of a target is still to come (no runt files)
MIN_TAIL_SHARE = 0.25


def repeating_columns(table: pa.Table, candidates: Sequence[str]) -> list[str]:
    """Columns whose values repeat in an evenly spaced sample: dictionary pages pay off only for those.

    Judged on the output's first row group, not on the inputs' choices: a column with a thousand
    clerks is unique in a 1,500-row input file but repeats heavily in a million-row row group.
    The sample is taken chunk by chunk: `take` on a chunked column first concatenates every chunk,
    which for a row group of merge output is a transient copy of the whole row group (62 MiB for
    TPC-H orders, the largest allocation of the writer).
    """
    n = table.num_rows
    step = max(1.0, n / WRITER_SAMPLE_ROWS)
    limit = MAX_DISTINCT_SHARE * max(1, min(n, WRITER_SAMPLE_ROWS))
    layouts: dict[tuple[int, ...], list[pa.Array | None]] = {}  # columns of a row group share chunk lengths
    out = []
    for name in candidates:
        column = table.column(name)
        lengths = tuple(len(c) for c in column.chunks)
        if lengths not in layouts:
            layouts[lengths] = _picks(lengths, step)
        col = _sample(column, layouts[lengths])
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pc.count_distinct(col).as_py() <= limit:
            out.append(name)
    return out


def _picks(lengths: Sequence[int], step: float) -> list[pa.Array | None]:
    """For each chunk, the in-chunk positions of every `step`-th row of the whole column (None: none)."""
    picks: list[pa.Array | None] = []
    offset, position = 0, 0.0
    for length in lengths:
        end = offset + length
        chunk = []
        while position < end:
            chunk.append(int(position) - offset)
            position += step
        picks.append(pa.array(chunk, pa.int64()) if chunk else None)
        offset = end
    return picks


def _sample(column: pa.ChunkedArray, picks: Sequence[pa.Array | None]) -> pa.ChunkedArray:
    """The picked values of `column`, taken within each chunk (never a take on the whole chunked column)."""
    parts = [chunk.take(p) for chunk, p in zip(column.chunks, picks, strict=True) if p is not None]
    return pa.chunked_array(parts, type=column.type)


def writer_options(first: pa.Table, dataset: Dataset, ndv: int) -> dict[str, Any]:
    """ParquetWriter keyword arguments (the transform's choices), decided from the first row group."""
    schema = first.schema
    names = schema.names
    delta = [
        n for n in names if n == LINE_COLUMN or (n in dataset.sort_key and pa.types.is_integer(schema.field(n).type))
    ]
    candidates = [n for n in names if n not in delta and not pa.types.is_boolean(schema.field(n).type)]
    dictionary = repeating_columns(first, candidates)
    codec = _CODECS[dataset.storage.compression]
    text = [f.name for f in schema if _is_text(f.type) and f.name not in dictionary]
    levels = {f.name: ZSTD_TEXT_LEVEL if f.name in text else ZSTD_LEVEL for f in schema}
    sorting = pq.SortingColumn.from_ordering(schema, [(c, "ascending") for c in dataset.sort_key if c in names])
    return {
        "compression": codec,
        "compression_level": levels if codec == "zstd" else None,
        "use_dictionary": dictionary,
        "column_encoding": {**dict.fromkeys(delta, "DELTA_BINARY_PACKED"), **dict.fromkeys(text, TEXT_ENCODING)},
        "write_statistics": True,
        "write_batch_size": write_batch_rows(first),
        "write_page_index": True,
        "store_decimal_as_integer": True,
        "store_schema": False,
        "bloom_filter_options": {
            c: {"ndv": max(1, ndv), "fpp": BLOOM_FPP} for c in dataset.subject_columns if c in names
        },
        "sorting_columns": sorting or None,
    }


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or (pa.types.is_dictionary(t) and pa.types.is_string(t.value_type))


@dataclass(frozen=True)
class OutputFile:
    path: Path
    rows: int
    bytes: int


class _SingleFileWriter:
    """One output file, one ParquetWriter: every column encoded on the calling thread."""

    def __init__(self, path: Path, schema: pa.Schema, options: dict[str, Any], metadata: dict[str, str]) -> None:
        self.path = path
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pq.ParquetWriter(self._sink, schema, **options)
        self._writer.add_key_value_metadata(metadata)  # the contract it merged into

    def write(self, group: pa.Table) -> None:
        self._writer.write_table(group, row_group_size=group.num_rows)

    def size(self) -> int:
        return int(self._sink.tell())

    def close(self) -> int:
        self._writer.close()
        self._sink.close()
        return self.path.stat().st_size

    def abort(self) -> None:
        self._writer.close()
        self._sink.close()


@dataclass
class RollingWriter:
    """Writes sorted tables as full row groups into files of about `target_bytes` each.

    `expected_rows` (the bin's row count) lets the writer avoid a runt last file: it rolls over
    only when the rows still to come would fill at least MIN_TAIL_SHARE of a target. With
    `threads` > 1 each row group's columns are encoded on that many threads
    (services/compact/split_writer.py); the files are the same. Those threads are `pool`'s when
    one is given (it is the caller's to shut down), else the writer's own.
    """

    path_for: Callable[[int], Path]
    dataset: Dataset
    target_bytes: int
    row_group_rows: int
    expected_rows: int
    threads: int = 1
    pool: ThreadPoolExecutor | None = None
    done: list[OutputFile] = field(default_factory=list)
    _pending: list[pa.Table] = field(default_factory=list)
    _pending_rows: int = 0
    _file: _SingleFileWriter | SplitFileWriter | None = None
    _file_rows: int = 0
    _written_rows: int = 0
    _options: dict[str, Any] | None = None
    _shares: list[list[int]] | None = None
    _own_pool: ThreadPoolExecutor | None = None

    def write(self, table: pa.Table) -> None:
        """Buffer rows; write every full row group."""
        if table.num_rows == 0:
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= self.row_group_rows:
            buffered = pa.concat_tables(self._pending)
            self._flush(buffered.slice(0, self.row_group_rows))
            rest = buffered.slice(self.row_group_rows)
            self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> list[OutputFile]:
        """Write the last (partial) row group and close the open file; returns every file written."""
        try:
            if self._pending_rows:
                self._flush(pa.concat_tables(self._pending))
                self._pending, self._pending_rows = [], 0
            self._finish()
        finally:
            self._stop_pool()
        return self.done

    def abort(self) -> None:
        """Close without completing (the files are garbage: the caller deletes its work directory)."""
        if self._file is not None:
            self._file.abort()
            self._file = None
        self._stop_pool()

    def _flush(self, group: pa.Table) -> None:
        if self._options is None:  # one decision for every file of the bin: the first row group is the sample
            self._options = writer_options(group, self.dataset, ndv=min(self.expected_rows, self.row_group_rows))
            if self.threads > 1 and group.num_columns > 1 and splittable(group.schema):
                self._shares = column_shares(group, self.threads)
                if self.pool is None:
                    self._own_pool = ThreadPoolExecutor(max_workers=len(self._shares), thread_name_prefix="encode")
        if self._file is None:
            self._file = self._open(self.path_for(len(self.done)), group.schema)
        self._file.write(group)
        self._file_rows += group.num_rows
        self._written_rows += group.num_rows
        written = self._file.size()
        still = self.expected_rows - self._written_rows
        per_row = written / max(1, self._file_rows)
        if written >= self.target_bytes and still * per_row >= MIN_TAIL_SHARE * self.target_bytes:
            self._finish()

    def _open(self, path: Path, schema: pa.Schema) -> _SingleFileWriter | SplitFileWriter:
        assert self._options is not None
        metadata = footer_metadata(self.dataset)
        pool = self.pool or self._own_pool
        if self._shares is not None and pool is not None:
            return SplitFileWriter(path, schema, self._options, metadata, self._shares, pool)
        return _SingleFileWriter(path, schema, self._options, metadata)

    def _finish(self) -> None:
        if self._file is None:
            return
        size = self._file.close()
        self.done.append(OutputFile(self._file.path, self._file_rows, size))
        self._file, self._file_rows = None, 0

    def _stop_pool(self) -> None:
        if self._own_pool is not None:
            self._own_pool.shutdown()
            self._own_pool = None
