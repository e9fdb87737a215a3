"""Streaming k-way merge of sorted runs, with memory bounded by a row budget.

Why: compaction must keep the dataset's sort order across the files it merges, and its memory must
not grow with the partition. The merge never holds much more than `budget_rows` rows of input.

How: each run contributes batches of about `budget_rows / k` rows. The *frontier* is the smallest
last-read key over the runs that still have rows: no unread row can sort before it, because each
run is sorted. A round cuts from every run's buffer the prefix of rows whose key is at most the
frontier (a zero-copy slice: the run is sorted), sorts those prefixes together (Arrow's sort is
stable and prefixes are concatenated in run order, so ties keep input order and the output is a
deterministic function of the inputs) and moves each emitted row exactly once. Rows left behind
are not copied again (an earlier version re-sorted and re-copied them every round: a third of the
merge's CPU). Rows with the same key that are read later sort equal, so the output stays ordered.
The run that defines the frontier is emptied by the round and refilled, so every round makes
progress. Each emitted table must start at or after the previous one's last key: a run that is not
actually sorted raises UnsortedInput instead of producing an unsorted file.

With a pool of worker threads, a round's sort and move run on a worker while the calling thread
reads the next batches and cuts the next round's prefixes (rounds are independent once cut; pyarrow
releases the GIL): the rounds are emitted in order, so the output is the same tables as without.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

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
    """One run's unconsumed rows (a sorted prefix-consumed buffer) and the key of its last-read row."""

    def __init__(self, run: Run, batch_rows: int, sort_key: Sequence[str]) -> None:
        self.run, self.sort_key = run, sort_key
        self.batches = run.batches(batch_rows)
        self.buffer: pa.Table | None = None
        self.last_key: tuple | None = None
        self.active = True  # more batches may follow

    @property
    def buffered(self) -> int:
        return self.buffer.num_rows if self.buffer is not None else 0

    def refill(self) -> None:
        for batch in self.batches:
            if batch.num_rows:
                self.last_key = key_of(batch, batch.num_rows - 1, self.sort_key)
                fresh = pa.Table.from_batches([batch])
                self.buffer = fresh if self.buffer is None else pa.concat_tables([self.buffer, fresh])
                return
        self.active = False

    def take_prefix(self, frontier: tuple | None) -> pa.Table | None:
        """Split off the buffered rows whose key is at most `frontier` (all rows without one): a prefix,
        because the run is sorted; zero-copy slices, nothing is moved until the round's one take."""
        if self.buffer is None:
            return None
        if frontier is None or (self.last_key is not None and self.last_key <= frontier):
            cut = self.buffered  # the buffer ends with the last row read: all of it (the frontier's run)
        else:
            mask = _at_most(self.buffer.select(list(self.sort_key)), self.sort_key, frontier)
            cut = pc.sum(mask).as_py() or 0
            if cut and not pc.all(mask.slice(0, cut)).as_py():
                raise UnsortedInput(f"run {self.run.name} is not sorted by {list(self.sort_key)}")
        head = self.buffer.slice(0, cut) if cut else None
        self.buffer = self.buffer.slice(cut) if cut < self.buffered else None
        return head


def merge_runs(
    runs: Sequence[Run], sort_key: Sequence[str], *, budget_rows: int, stats: MergeStats | None = None,
    pool: Executor | None = None,
) -> Generator[pa.Table, None, None]:
    """Yield tables whose concatenation is every row of `runs`, sorted by `sort_key`.

    Each round takes, from every run, the prefix of its buffered rows up to the frontier (slices,
    no copy), sorts those prefixes together and moves each row once (`take`): rows left behind are
    never copied again, and what is emitted owns its memory (the writer's row group buffer does not
    pin the runs' batches). With a pool, each round is sorted on a worker while the next one is cut
    (so one round more is in memory); the same tables come out in the same order.
    """
    stats = stats if stats is not None else MergeStats()
    if not runs:
        return
    if not sort_key or len(runs) == 1:
        for run in runs:  # nothing to interleave: stream in order (the order of runs is the tie-break)
            for batch in run.batches(max(MIN_BATCH_ROWS, budget_rows)):
                stats.rounds += 1
                yield pa.Table.from_batches([batch])
        return
    rounds = _rounds(runs, sort_key, budget_rows, stats)
    check = _OrderCheck(runs, sort_key)
    if pool is None:
        for heads in rounds:
            yield check(_sorted(heads, sort_key))
        return
    pending: deque[Future[pa.Table]] = deque()
    try:
        for heads in rounds:
            pending.append(pool.submit(_sorted, heads, sort_key))
            del heads  # the worker's reference is the only one: its prefixes go once sorted
            if len(pending) > 1:  # the round before was sorted while this one was cut
                yield check(pending.popleft().result())
        while pending:
            yield check(pending.popleft().result())
    finally:  # stopped early (an error, a closed generator): no round may outlive the merge
        for job in pending:
            job.cancel()
        wait(pending)


def _rounds(
    runs: Sequence[Run], sort_key: Sequence[str], budget_rows: int, stats: MergeStats
) -> Iterator[list[pa.Table]]:
    """Each round's prefixes, in run order: every row whose key is at most the round's frontier."""
    batch_rows = max(MIN_BATCH_ROWS, budget_rows // len(runs))
    cursors = [_Cursor(r, batch_rows, sort_key) for r in runs]
    while True:
        for c in cursors:
            if c.active and c.buffered < batch_rows // 2:
                c.refill()
        buffered = sum(c.buffered for c in cursors)
        if not buffered:
            return
        stats.rounds += 1
        stats.max_buffered_rows = max(stats.max_buffered_rows, buffered)
        # no unread row sorts before the smallest last-read key of the runs that may still have rows
        pending = [c.last_key for c in cursors if c.active and c.last_key is not None]
        frontier = min(pending) if pending else None
        heads = [h for c in cursors if (h := c.take_prefix(frontier)) is not None]
        if heads:
            yield heads


def _sorted(heads: list[pa.Table], sort_key: Sequence[str]) -> pa.Table:
    """One round's prefixes sorted together, each row moved once into new buffers.

    Run order is input order and the sort is stable: ties keep input order (same inputs, same bytes).
    """
    part = pa.concat_tables(heads) if len(heads) > 1 else heads[0]
    heads.clear()
    order = [(c, "ascending") for c in sort_key]
    # the key columns combined first: sorting one chunk per column is about twice as fast as merging
    # the prefixes' chunks (the same stable order; only the keys are copied, the rest moves once in `take`)
    keys = part.select(list(sort_key)).combine_chunks()
    return part.take(pc.sort_indices(keys, sort_keys=order))


class _OrderCheck:
    """Each emitted table must start at or after the previous one's last key (else a run was unsorted)."""

    def __init__(self, runs: Sequence[Run], sort_key: Sequence[str]) -> None:
        self.runs, self.sort_key = runs, sort_key
        self.previous_last: tuple | None = None

    def __call__(self, emit: pa.Table) -> pa.Table:
        first = key_of(emit, 0, self.sort_key)
        if self.previous_last is not None and first < self.previous_last:
            raise UnsortedInput(f"a run among {[r.name for r in self.runs][:5]} is not sorted by {list(self.sort_key)}")
        self.previous_last = key_of(emit, emit.num_rows - 1, self.sort_key)
        return emit


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
            if result is None:  # the last key column: one comparison (nulls, after every value, are not)
                at_most = pc.less_equal(col, scalar)
                result = pc.fill_null(at_most, False) if col.null_count else at_most
                continue
            less, equal = pc.less(col, scalar), pc.equal(col, scalar)
            if col.null_count:
                less, equal = pc.fill_null(less, False), pc.fill_null(equal, False)
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
