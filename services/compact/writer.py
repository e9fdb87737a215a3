"""Parquet output of a compaction: the lake's file format (contracts/lake_format.py), rolled into target-sized files.

The writer's choices are the transform's (one definition, contracts/lake_format.py), with the
dictionaries decided on the output's first row group rather than on each small input.

Memory: pyarrow cannot append to an open row group, so rows are buffered until a full row group
(`row_group_rows`) is written; that buffer plus the merge's is the service's whole footprint.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from contracts.datasets import Dataset
from contracts.lake_format import ROW_GROUP_SAMPLING, writer_options
from contracts.schema_evolution import footer_metadata
from services.compact.split_writer import SplitFileWriter, column_shares, splittable

#: roll over to a new file only if at least this share of a target is still to come (no runt files)
MIN_TAIL_SHARE = 0.25


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
            ndv = min(self.expected_rows, self.row_group_rows)
            self._options = writer_options(group, self.dataset, ndv=ndv, sampling=ROW_GROUP_SAMPLING)
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
