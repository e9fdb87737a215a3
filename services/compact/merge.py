"""Streaming k-way merge of sorted runs, with memory bounded by a row budget.

Why: compaction must keep the dataset's sort order across the files it merges, and its memory must
not grow with the partition. The merge never holds much more than `budget_rows` rows of input.

How: each run contributes batches of about `budget_rows / k` rows. The *frontier* is the smallest
last-read key over the runs that still have rows: no unread row can sort before it, because each
run is sorted. A round sorts what is buffered (Arrow's sort is stable: ties keep buffer order, so
the output is a deterministic function of the inputs) and emits every row whose key is at most
the frontier; rows with the same key that are read later sort equal, so the output stays ordered.
The run that defines the frontier is emptied by the round and refilled, so every round makes
progress. Each emitted table must start at or after the previous one's last key: a run that is not
actually sorted raises UnsortedInput instead of producing an unsorted file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

SRC = "__src"
#: fewest rows read from a run at a time (tiny reads cost more in call overhead than they save)
MIN_BATCH_ROWS = 1024


class UnsortedInput(ValueError):
    """A run is not sorted by the dataset's sort key; merging it would break the order."""


class Run(Protocol):
    """A sorted sequence of rows, read in batches of about `batch_rows` (columns of the merge schema)."""

    @property
    def name(self) -> str: ...

    def batches(self, batch_rows: int) -> Iterator[pa.RecordBatch]: ...


@dataclass
class MergeStats:
    rounds: int = 0
    max_buffered_rows: int = 0


class _Cursor:
    """How far one run has been read, and the key of its last-read row."""

    def __init__(self, index: int, run: Run, batch_rows: int, sort_key: Sequence[str]) -> None:
        self.index, self.run, self.sort_key = index, run, sort_key
        self.batches = run.batches(batch_rows)
        self.last_key: tuple | None = None
        self.active = True

    def read(self) -> pa.RecordBatch | None:
        for batch in self.batches:
            if batch.num_rows:
                self.last_key = key_of(batch, batch.num_rows - 1, self.sort_key)
                src = pa.repeat(pa.scalar(self.index, pa.int32()), batch.num_rows)
                return batch.append_column(SRC, src)
        self.active = False
        return None


def merge_runs(
    runs: Sequence[Run], sort_key: Sequence[str], *, budget_rows: int, stats: MergeStats | None = None
) -> Iterator[pa.Table]:
    """Yield tables whose concatenation is every row of `runs`, sorted by `sort_key`."""
    stats = stats if stats is not None else MergeStats()
    if not runs:
        return
    if not sort_key or len(runs) == 1:
        for run in runs:  # nothing to interleave: stream in order (the order of runs is the tie-break)
            for batch in run.batches(max(MIN_BATCH_ROWS, budget_rows)):
                stats.rounds += 1
                yield pa.Table.from_batches([batch])
        return
    batch_rows = max(MIN_BATCH_ROWS, budget_rows // len(runs))
    cursors = [_Cursor(i, r, batch_rows, sort_key) for i, r in enumerate(runs)]
    remaining = [0] * len(runs)
    order = [(c, "ascending") for c in sort_key]
    carry: pa.Table | None = None
    previous_last: tuple | None = None
    while True:
        fresh = []
        for c in cursors:
            if c.active and remaining[c.index] < batch_rows // 2 and (batch := c.read()) is not None:
                fresh.append(batch)
                remaining[c.index] += batch.num_rows
        parts = ([carry] if carry is not None else []) + ([pa.Table.from_batches(fresh)] if fresh else [])
        if not parts:
            return
        buffered = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        stats.rounds += 1
        stats.max_buffered_rows = max(stats.max_buffered_rows, buffered.num_rows)
        indices = pc.sort_indices(buffered.select(list(sort_key)), sort_keys=order)
        active = [c.last_key for c in cursors if c.active and c.last_key is not None]
        if active:
            frontier = min(active)
            keys = buffered.select(list(sort_key)).take(indices)
            cut = pc.sum(_at_most(keys, sort_key, frontier)).as_py() or 0
        else:
            cut = len(indices)
        # two takes, not one take and two slices: emitted rows go to the writer's row group buffer
        # and must not keep the carried rows' memory alive with them
        emitted = buffered.take(indices.slice(0, cut))
        carry = buffered.take(indices.slice(cut)) if cut < len(indices) else None
        for entry in pc.value_counts(emitted.column(SRC)).to_pylist():
            remaining[entry["values"]] -= entry["counts"]
        emit = emitted.drop_columns([SRC])
        if emit.num_rows == 0:
            continue
        first = key_of(emit, 0, sort_key)
        if previous_last is not None and first < previous_last:
            raise UnsortedInput(f"a run among {[r.name for r in runs][:5]} is not sorted by {list(sort_key)}")
        previous_last = key_of(emit, emit.num_rows - 1, sort_key)
        yield emit


def _at_most(keys: pa.Table, columns: Sequence[str], frontier: tuple) -> pa.ChunkedArray:
    """Rows whose key is lexicographically <= `frontier` (as key_of encodes it: NaN, then nulls, last)."""
    result: Any = None
    for name, (rank, value) in reversed(list(zip(columns, frontier, strict=True))):
        col = keys.column(name)
        if rank == 2:  # null: everything sorts before or equal to it
            less, equal = pc.is_valid(col), pc.is_null(col)
        elif rank == 1:  # NaN: numbers sort before it, nulls after
            nan = pc.fill_null(pc.is_nan(col), False)
            less, equal = pc.and_(pc.is_valid(col), pc.invert(nan)), nan
        else:
            scalar = pa.scalar(value, col.type)
            less = pc.fill_null(pc.less(col, scalar), False)
            equal = pc.fill_null(pc.equal(col, scalar), False)
        result = pc.or_(less, equal) if result is None else pc.or_(less, pc.and_(equal, result))
    return result


def key_of(table: pa.Table | pa.RecordBatch, i: int, columns: Sequence[str]) -> tuple:
    """A row's sort key as a tuple that compares like Arrow sorts: NaN after numbers, nulls last."""
    out = []
    for c in columns:
        v = table.column(c)[i].as_py()
        if v is None:
            out.append((2, 0))
        elif isinstance(v, float) and v != v:
            out.append((1, 0))
        else:
            out.append((0, v))
    return tuple(out)
