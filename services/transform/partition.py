"""Hive partitions: values from the contract's partition spec, one sorted table per partition.

Values are strings as they appear in the path (`year=2024/month=03/day=07`, zero-padded so paths
sort like dates). Partition columns are not stored in the Parquet files; they live in the path and
in the Glue partition. One sort (partition values, then the contract's sort key, then the source
line for determinism) makes every partition a contiguous, already sorted slice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contracts.datasets import Dataset, PartitionKey
from contracts.lineage import LINE_COLUMN
from services.transform import encoding
from services.transform.rows import shorten

_TEMPORAL = {"year": pc.year, "month": pc.month, "day": pc.day}
_WIDTH = {"year": 4, "month": 2, "day": 2}
#: characters that would change the meaning of a key or are invisible
_UNSAFE = r"[/\\\x00-\x1f\x7f]|^\.\.?$"
_UNSAFE_WHY = "it is '.', '..' or holds '/', a backslash or a control character"
#: runs of whole partitions gathered into sort order one after the other (see `split_partitions`)
SLABS = 8


@dataclass(frozen=True)
class PartitionOutput:
    """Rows of one partition, sorted by the contract's sort key, without partition columns.

    String columns whose values repeat are dictionary-encoded (same values, cheaper to move and
    to write); `pa.Table.cast(contracts.arrow.lake_schema(dataset))` gives plain types if needed.
    """

    values: dict[str, str]
    table: pa.Table

    @property
    def path(self) -> str:
        return partition_path(self.values)


def partition_path(values: dict[str, str]) -> str:
    """Hive-style relative path, e.g. 'order_year=2024/order_month=03' ('' when unpartitioned)."""
    return "/".join(f"{k}={v}" for k, v in values.items())


def _key_array(table: pa.Table, key: PartitionKey) -> pa.Array:
    """One partition key per row (year/month/day as integers; identity as the source values)."""
    source = _joined(table[key.source])
    return source if key.transform == "identity" else _TEMPORAL[key.transform](source)


def partition_problems(table: pa.Table, dataset: Dataset, skip: Collection[int] = ()) -> dict[int, str]:
    """{row: reason} for rows without a usable partition value (rows in `skip` are already bad)."""
    found: dict[int, str] = {}
    for key in dataset.partitioning:
        source = table[key.source]
        missing: Any = np.flatnonzero(np.asarray(pc.is_null(source))) if source.null_count else []
        for row in list(missing):
            if row not in skip and row not in found:
                found[row] = f"{key.name}: partition source {key.source} is empty, so the row has no partition"
        if key.transform == "identity" and pa.types.is_floating(source.type):
            for row in np.flatnonzero(np.asarray(pc.is_nan(source).fill_null(False))).tolist():
                if row not in skip and row not in found:
                    found[row] = f"{key.name}: NaN cannot be a partition value"
        if key.transform == "identity" and pa.types.is_string(source.type):
            unsafe = np.asarray(pc.match_substring_regex(source, _UNSAFE).fill_null(False))
            for row in np.flatnonzero(unsafe).tolist():
                if row not in skip and row not in found:
                    value = shorten(str(table[key.source][row].as_py()))
                    found[row] = f"{key.name}: {value!r} cannot be a partition value ({_UNSAFE_WHY})"
    return found


def format_value(key: PartitionKey, value: object) -> str:
    """The path text of one partition value."""
    if key.transform in _WIDTH:
        return f"{int(value):0{_WIDTH[key.transform]}d}"  # type: ignore[call-overload]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return repr(value + 0.0)  # -0.0 and 0.0 are one partition
    return str(value)


def _sort_implies_partitions(dataset: Dataset) -> bool:
    """True when sorting by the first sort column already groups partitions (year[/month[/day]] of it)."""
    transforms = [p.transform for p in dataset.partitioning]
    return (
        bool(dataset.sort_key)
        and all(p.source == dataset.sort_key[0] for p in dataset.partitioning)
        and transforms == ["year", "month", "day"][: len(transforms)]
    )


def _changes(array: pa.Array) -> np.ndarray:
    """Positions i where array[i] != array[i - 1]."""
    if len(array) < 2:
        return np.zeros(0, dtype=np.int64)
    differs = pc.not_equal(array.slice(1), array.slice(0, len(array) - 1)).to_numpy(zero_copy_only=False)
    return np.flatnonzero(differs) + 1


def _sorted_suffix(keys: list[pa.Array]) -> int:
    """Index of the first key of the longest key suffix the rows already follow (len(keys) if none).

    Rows arrive in line order, so `_source_line` (the last key) is always sorted. Files are often
    already in id order; then a stable sort by the remaining prefix gives the full order at a
    fraction of the cost of a multi-key sort.
    """
    n = len(keys[0])
    ok: pa.Array | None = None  # per adjacent pair: ordered by the suffix checked so far
    first = len(keys) - 1
    for i in range(len(keys) - 2, -1, -1):
        key = keys[i]
        if key.null_count:
            break
        before, after = key.slice(0, n - 1), key.slice(1)
        pair_ok = (
            pc.greater_equal(after, before)
            if ok is None
            else pc.or_(pc.greater(after, before), pc.and_(pc.equal(after, before), ok))
        )
        if not pc.all(pair_ok).as_py():
            break
        ok, first = pair_ok, i
    return first


def _order(keys: list[pa.Array]) -> pa.Array | None:
    """Indices of a stable sort by `keys`, or None when the rows are already in that order."""
    if len(keys[0]) < 2:
        return None
    first = _sorted_suffix(keys)
    if first == 0:
        return None
    if first == 1:
        return pc.sort_indices(keys[0])
    prefix = pa.table({f"k{i}": k for i, k in enumerate(keys[:first])})
    return pc.sort_indices(prefix, sort_keys=[(f"k{i}", "ascending") for i in range(first)])


def _take(table: pa.Table, order: pa.Array) -> pa.Table:
    """`table.take(order)` column by column, on every CPU pyarrow may use (`take` releases the GIL);
    the largest columns go first so that the threads finish together."""
    columns = sorted(range(table.num_columns), key=lambda i: -table.column(i).nbytes)
    threads = min(pa.cpu_count(), len(columns))
    if threads > 1 and len(order) >= encoding.PARALLEL_ROWS:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            taken = dict(zip(columns, pool.map(lambda i: table.column(i).take(order), columns), strict=True))
    else:
        taken = {i: table.column(i).take(order) for i in columns}
    return pa.Table.from_arrays([taken[i] for i in range(table.num_columns)], schema=table.schema)


def _slabs(cuts: list[int], pieces: int) -> list[tuple[int, int]]:
    """`cuts` (partition bounds, first 0, last the row count) grouped into about `pieces` runs of
    whole partitions of about equal rows: [(first cut index, last cut index)]."""
    total, bounds, first = cuts[-1], [], 0
    for k in range(1, pieces + 1):
        target = total * k // pieces
        last = max(first + 1, int(np.searchsorted(cuts, target, side="left")))
        if last > first and first < len(cuts) - 1:
            last = min(last, len(cuts) - 1)
            bounds.append((first, last))
            first = last
    return bounds


def _sort_columns(table: pa.Table, dataset: Dataset) -> list[str]:
    """The columns the sort reads: the sort key, the source line and the partitions' sources."""
    names = [*dataset.sort_key, LINE_COLUMN, *(k.source for k in dataset.partitioning)]
    return [n for n in table.column_names if n in names]


def _joined(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The column as one array: itself or its only chunk (no copy), else its chunks joined."""
    if isinstance(column, pa.Array):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _join_and_sort(keyed: pa.Table, dataset: Dataset
                   ) -> tuple[dict[str, pa.Array], pa.Array | None, list[int], list[dict[str, str]]]:
    """(the sort's columns joined, `_sorted` of them): the joined columns are the ones the slabs are
    gathered from too, so that no column is joined twice."""
    joined = {n: _joined(keyed.column(n)) for n in keyed.column_names}
    del keyed
    return joined, *_sorted(pa.table(joined), dataset)


def _sorted(table: pa.Table, dataset: Dataset) -> tuple[pa.Array | None, list[int], list[dict[str, str]]]:
    """(row order, partition bounds: first 0, last the row count, each partition's values)."""
    n = table.num_rows
    sort_keys = [_joined(table[c]) for c in (*dataset.sort_key, LINE_COLUMN)]
    if _sort_implies_partitions(dataset):
        # the partition keys are the year (month, day) of the first sort column: they can change only where
        # its value does, so they are computed at those rows alone (not for every row, then gathered)
        order = _order(sort_keys)
        first = sort_keys[0] if order is None else sort_keys[0].take(order)
        del sort_keys
        rows = np.concatenate([[0], _changes(first)])  # where the first sort column's value changes
        keys = [_TEMPORAL[k.transform](first.take(pa.array(rows))) for k in dataset.partitioning]
        at = np.unique(np.concatenate([[0], *[_changes(k) for k in keys]]))  # ... and a partition key with it
        cuts = [*rows[at].tolist(), n]
        keys = [k.take(pa.array(at)) for k in keys]
        starts = range(len(at))
    else:
        keys = [_key_array(table, k) for k in dataset.partitioning]
        order = _order(keys + sort_keys)
        del sort_keys
        if order is not None:
            keys = [k.take(order) for k in keys]
        cuts = np.unique(np.concatenate([[0], *[_changes(k) for k in keys], [n]])).tolist()
        starts = cuts[:-1]
    named = list(zip(dataset.partitioning, keys, strict=True))
    values = [{key.name: format_value(key, array[i].as_py()) for key, array in named} for i in starts]
    return order, cuts, values


class _Inline:
    """An executor that runs each task at once on the caller's thread (one CPU, or a small table)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        done: Future[Any] = Future()
        try:
            done.set_result(fn(*args))
        except BaseException as exc:
            done.set_exception(exc)
        return done


def _prepared(held: list[pa.Table], dataset: Dataset
              ) -> tuple[pa.Table, pa.Array | None, list[int], list[dict[str, str]]]:
    """(the table to gather from, row order, keys, bounds: `_sorted`), its repeated strings dictionary-encoded
    and, when rows move, every column joined into one contiguous copy (`take` on a chunked column joins
    its chunks on every call). The table is taken out of `held`: each column's chunks are let go as soon as
    the column is joined (or encoded), so the next columns' copies reuse their memory instead of fresh pages.

    With a second CPU the steps run side by side (pyarrow's kernels release the GIL): the sort (which joins
    its own columns, used for the gather as well) beside the encoding, then each column's join as soon as the
    sort says rows move and the column is encoded, the largest first. One CPU: one after the other.
    """
    table = held.pop()
    threads = min(pa.cpu_count(), table.num_columns)
    parallel = threads > 1 and table.num_rows >= encoding.PARALLEL_ROWS
    with ThreadPoolExecutor(max_workers=threads) if parallel else contextlib.nullcontext(_Inline()) as pool:
        schema, keyed = table.schema, _sort_columns(table, dataset)
        sorting = pool.submit(_join_and_sort, table.select(keyed), dataset)
        columns = {f.name: table.column(f.name) for f in schema}
        repeated = encoding.repeated_strings(table)
        encoded = {name: pool.submit(pc.dictionary_encode, columns.pop(name)) for name in repeated if name not in keyed}
        del table
        joined, order, cuts, values = sorting.result()
        for name in keyed:
            del columns[name]
            if name in repeated:  # a repeated string the sort reads: encoded from its joined copy
                encoded[name] = pool.submit(pc.dictionary_encode, joined.pop(name))
        if order is None:  # rows stay where they are: slices of the chunked columns will do
            done = {**columns, **joined, **{name: future.result() for name, future in encoded.items()}}
        else:
            parts = {**{name: pool.submit(_joined, columns.pop(name))
                        for name in sorted(columns, key=lambda n: -columns[n].nbytes)},
                     **{name: pool.submit(lambda f: _joined(f.result()), future) for name, future in encoded.items()}}
            done = {**joined, **{name: part.result() for name, part in parts.items()}}
    return pa.Table.from_arrays([done[f.name] for f in schema], schema=_encoded_schema(schema, encoded)), \
        order, cuts, values


def _encoded_schema(schema: pa.Schema, encoded: Collection[str]) -> pa.Schema:
    return pa.schema([f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in encoded else f for f in schema],
                     metadata=schema.metadata)


def split_partitions(
    table: pa.Table, dataset: Dataset, ready: Callable[[PartitionOutput], None] | None = None
) -> list[PartitionOutput]:
    """Sort once and slice into partitions; `table` holds typed good rows and `_source_line`.

    Rows are gathered into sort order a slab of whole partitions at a time (`SLABS` of about equal
    rows); `ready` is called with each partition as soon as its slab is gathered, so its file can be
    written while the next slab is gathered. With a second CPU the sort runs beside the dictionary
    encoding of repeated strings (neither needs the other).
    """
    if table.num_rows == 0:
        return []
    held = [table]
    del table  # _prepared lets each column's chunks go once joined, so the next copies reuse their memory
    source, order, cuts, values = _prepared(held, dataset)
    outputs: list[PartitionOutput] = []
    for first, last in _slabs(cuts, SLABS if order is not None else 1):
        start, end = cuts[first], cuts[last]
        slab = source.slice(start, end - start) if order is None else _take(source, order.slice(start, end - start))
        for k in range(first, last):
            outputs.append(PartitionOutput(values[k], slab.slice(cuts[k] - start, cuts[k + 1] - cuts[k])))
            if ready is not None:
                ready(outputs[-1])
    return outputs
