"""One output file encoded on several threads: each encodes a share of the columns, then they are stitched.

pyarrow encodes a row group one column after the other on the calling thread, and cannot append to
an open row group, so with one writer the encode (a third of a compaction's CPU) stays serial
however many threads the merge has. Here each thread owns a ParquetWriter for a share of the
columns (shares balanced by the columns' Arrow bytes) writing its own part file; every row group is
encoded by all of them at once, from the same in-memory table (no copy, no second row group held).
On close, services/compact/stitch.py joins the parts into the file a single writer would have
written: same column chunks, statistics, page indexes, bloom filters and footer metadata.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from contracts.thrift import BOOL, I32, Struct
from services.compact.stitch import Part, footer_of, stitch

#: options that name columns: a part writer gets only its own columns' entries
_PER_COLUMN = ("compression_level", "column_encoding", "bloom_filter_options")


def column_shares(table: pa.Table, shares: int) -> list[list[int]]:
    """Column indices split into at most `shares` groups of about equal Arrow bytes (largest first),
    each in schema order. Bytes stand in for encoding cost: free text dominates both."""
    sizes = sorted(((table.column(i).nbytes, i) for i in range(table.num_columns)), reverse=True)
    heap = [(0, k) for k in range(min(shares, table.num_columns))]
    groups: list[list[int]] = [[] for _ in heap]
    for size, i in sizes:
        load, k = heapq.heappop(heap)
        groups[k].append(i)
        heapq.heappush(heap, (load + size, k))
    return [sorted(g) for g in groups if g]


def splittable(schema: pa.Schema) -> bool:
    """Flat schemas only: the stitcher maps one schema field to one column chunk."""
    return all(not pa.types.is_nested(f.type) for f in schema)


def _part_options(options: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    keep = set(names)
    out = dict(options, sorting_columns=None)  # the stitched footer carries the whole file's sort
    for key in _PER_COLUMN:
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k in keep}
    if isinstance(out.get("use_dictionary"), list):
        out["use_dictionary"] = [n for n in out["use_dictionary"] if n in keep]
    return out


def _template(schema: pa.Schema, options: dict[str, Any], metadata: dict[str, str]) -> Struct:
    """The footer a single writer gives this schema and these options: schema, metadata, column orders."""
    sink = pa.BufferOutputStream()
    writer = pq.ParquetWriter(sink, schema, **options)
    writer.add_key_value_metadata(metadata)
    writer.close()
    return footer_of(sink.getvalue().to_pybytes())


def _sorting(options: dict[str, Any]) -> list[Struct] | None:
    columns = options.get("sorting_columns") or []
    return [{1: (I32, c.column_index), 2: (BOOL, c.descending), 3: (BOOL, c.nulls_first)} for c in columns] or None


class SplitFileWriter:
    """Writes row groups of one output file with `pool`'s threads, one share of the columns each."""

    def __init__(self, path: Path, schema: pa.Schema, options: dict[str, Any], metadata: dict[str, str],
                 shares: Sequence[Sequence[int]], pool: ThreadPoolExecutor) -> None:
        self.path, self.pool = path, pool
        self._template, self._sorting = _template(schema, options, metadata), _sorting(options)
        self._parts = [Part(path.with_name(f"{path.name}.part{k}"), list(cols)) for k, cols in enumerate(shares)]
        self._names = [[schema.field(i).name for i in cols] for cols in shares]
        self._sinks: list[Any] = []
        self._writers: list[pq.ParquetWriter] = []
        for part, names in zip(self._parts, self._names, strict=True):
            sink = pa.OSFile(str(part.path), "wb")
            self._sinks.append(sink)
            self._writers.append(pq.ParquetWriter(sink, pa.schema([schema.field(n) for n in names]),
                                                  **_part_options(options, names)))

    def write(self, group: pa.Table) -> None:
        """Encode one row group: every share at once, each on its own thread."""
        jobs = [self.pool.submit(w.write_table, group.select(names), row_group_size=group.num_rows)
                for w, names in zip(self._writers, self._names, strict=True)]
        wait(jobs)  # all of them, even when one failed: an abort must not close a writer still encoding
        for job in jobs:
            job.result()

    def size(self) -> int:
        return sum(s.tell() for s in self._sinks)

    def close(self) -> int:
        """Finish the parts and stitch them into `path`; returns the file's size."""
        self._close_parts()
        try:
            return stitch(self._parts, self._template, self._sorting, self.path)
        finally:
            self._remove_parts()

    def abort(self) -> None:
        self._close_parts()
        self._remove_parts()

    def _close_parts(self) -> None:
        for w in self._writers:
            w.close()
        for s in self._sinks:
            s.close()
        self._writers, self._sinks = [], []

    def _remove_parts(self) -> None:
        for part in self._parts:
            part.path.unlink(missing_ok=True)
