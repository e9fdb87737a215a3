"""Rewrite one bin of small local Parquet files into target-sized files: runs, merge, writer; no AWS.

This is what the benchmark measures (bench/compact_bench.py) and what the service runs on the files
it downloaded to its work directory. Memory holds about `budget_rows` rows for sorting and merging
plus one output row group (pyarrow writes a row group from memory); the work directory holds the
inputs, the spilled runs and the outputs.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from contracts.arrow import lake_schema
from contracts.datasets import Dataset
from contracts.nogc import paused_gc
from services.compact.memory import Workers, release_memory, tune_allocator
from services.compact.merge import MergeStats, merge_runs
from services.compact.runs import InputFile, groups, make_runs, read_many, sort_table
from services.compact.schema import dictionary_columns, read_schema
from services.compact.writer import OutputFile, RollingWriter

#: rows sorted or merged in memory at once (about 15-40 MB for typical lake rows)
DEFAULT_BUDGET_ROWS = 262_144
#: rows the merge buffers across all runs while the writer fills a row group
DEFAULT_MERGE_ROWS = 65_536


@dataclass(frozen=True)
class Rewrite:
    outputs: list[OutputFile]
    rows: int
    runs: int
    merge: MergeStats = field(default_factory=MergeStats)


def compact_files(
    inputs: Sequence[InputFile],
    dataset: Dataset,
    workdir: Path,
    *,
    target_bytes: int | None = None,
    row_group_rows: int | None = None,
    budget_rows: int = DEFAULT_BUDGET_ROWS,
    merge_rows: int = DEFAULT_MERGE_ROWS,
    threads: int = 1,
) -> Rewrite:
    """Merge `inputs` into `workdir`/out-NNNN.parquet, sorted by the contract's sort key.

    Ties keep input order, so the same inputs always give the same files (a retried bin commits
    the same rows under the same op id).
    """
    if not inputs:
        raise ValueError("nothing to compact")
    tune_allocator()  # services/compact/memory.py: why, and how worker threads give their heaps back
    workers = Workers(threads) if threads > 1 else None  # every phase's threads: pass 1, merge, encode
    try:
        with paused_gc():  # contracts/nogc.py: why
            return _compact(inputs, dataset, workdir, target_bytes=target_bytes, row_group_rows=row_group_rows,
                            budget_rows=budget_rows, merge_rows=merge_rows, workers=workers)
    finally:
        _release(workers)  # the heap is trimmed only when asked
        if workers is not None:
            workers.shutdown()


def _release(workers: Workers | None) -> None:
    """Freed buffers handed back at a phase end: the workers' arenas and the heap, or the heap alone."""
    if workers is not None:
        workers.release()  # trims the process heap too
    else:
        release_memory()


def _compact(
    inputs: Sequence[InputFile],
    dataset: Dataset,
    workdir: Path,
    *,
    target_bytes: int | None,
    row_group_rows: int | None,
    budget_rows: int,
    merge_rows: int,
    workers: Workers | None,
) -> Rewrite:
    schema = lake_schema(dataset)
    dictionary = dictionary_columns([f.path for f in inputs], schema, exclude=dataset.sort_key)
    merge_schema = read_schema(schema, dictionary)
    rows = sum(f.rows for f in inputs)
    group_rows = row_group_rows or dataset.storage.row_group_rows
    writer = RollingWriter(
        path_for=lambda i: workdir / f"out-{i:04d}.parquet",
        dataset=dataset,
        target_bytes=target_bytes or dataset.target_file_bytes,
        row_group_rows=group_rows,
        expected_rows=rows,
        threads=workers.threads if workers else 1,
        pool=workers,
    )
    stats = MergeStats()
    planned = groups(inputs, budget_rows)
    try:
        merged: Generator[pa.Table, None, None]
        if len(planned) == 1:  # the whole bin fits the budget: one sort, no spill
            whole = read_many([f.path for f in inputs], merge_schema, dictionary, pool=workers)
            merged = (t for t in [sort_table(whole, dataset.sort_key)])
            del whole
            run_count = 1
        else:
            run_rows = max(1, budget_rows // (workers.threads if workers else 1))
            count = len(groups(inputs, run_rows))
            # with workers, a round is sorted while the next is cut: the two share the merge's budget
            round_rows = max(1, merge_rows // 2) if workers else merge_rows
            runs = make_runs(inputs, merge_schema, dataset.sort_key, dictionary, workdir, run_rows=run_rows,
                             batch_rows=max(1024, round_rows // count), pool=workers)
            _release(workers)  # pass 1's freed buffers would otherwise count again during the merge
            merged = merge_runs(runs, dataset.sort_key, budget_rows=round_rows, stats=stats, pool=workers)
            run_count = len(runs)
        try:
            for table in merged:
                writer.write(table)
        finally:
            merged.close()  # a failed write stops the merge (and waits for its round) before the abort
        outputs = writer.close()
    except BaseException:
        writer.abort()
        raise
    written = sum(o.rows for o in outputs)
    if written != rows:  # a broken invariant must never reach a commit
        raise RuntimeError(f"compaction wrote {written} rows, the inputs hold {rows}")
    return Rewrite(outputs, rows, run_count, stats)
