"""The streaming merge: sorted output, the same multiset of rows, bounded buffers, loud on unsorted input."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.compact import merge as merge_module
from services.compact.merge import MIN_BATCH_ROWS, MergeStats, UnsortedInput, key_of, merge_runs


@dataclass
class MemRun:
    """A run held in memory; records the largest batch it was asked for."""

    name: str
    table: pa.Table
    asked: int = 0

    def batches(self, batch_rows: int) -> Iterator[pa.RecordBatch]:
        self.asked = max(self.asked, batch_rows)
        yield from self.table.to_batches(max_chunksize=batch_rows)


def run_of(name: str, keys: list[tuple[int | None, int]]) -> MemRun:
    """A run sorted like Arrow sorts (nulls last), with a payload naming each row's origin."""
    keys = sorted(keys, key=lambda k: ((k[0] is None, k[0] or 0), k[1]))
    return MemRun(name, pa.table({
        "day": pa.array([k[0] for k in keys], pa.int32()),
        "id": pa.array([k[1] for k in keys], pa.int64()),
        "origin": pa.array([f"{name}:{i}" for i in range(len(keys))], pa.string()),
    }))


def merged(runs: list[MemRun], budget: int, stats: MergeStats | None = None, threads: int = 1) -> list[pa.Table]:
    if threads == 1:
        return list(merge_runs(runs, ["day", "id"], budget_rows=budget, stats=stats))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(merge_runs(runs, ["day", "id"], budget_rows=budget, stats=stats, pool=pool))


def is_sorted(rows: list[dict]) -> bool:
    keys = [((r["day"] is None, r["day"] or 0), r["id"]) for r in rows]
    return all(a <= b for a, b in itertools.pairwise(keys))


keys_strategy = st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 40)), st.integers(0, 5)), max_size=3000)


@settings(max_examples=60, deadline=None)
@given(st.lists(keys_strategy, min_size=1, max_size=12), st.sampled_from([1, 500, 2048, 10_000]))
def test_merge_is_sorted_complete_and_bounded(runs_keys: list[list[tuple[int | None, int]]], budget: int) -> None:
    runs = [run_of(f"r{i}", keys) for i, keys in enumerate(runs_keys)]
    stats = MergeStats()
    out = merged(runs, budget, stats)
    rows = [r for t in out for r in t.to_pylist()]
    assert is_sorted(rows)
    assert sorted(r["origin"] for r in rows) == sorted(o for r in runs for o in r.table.column("origin").to_pylist())
    bound = 1.5 * max(budget, len(runs) * MIN_BATCH_ROWS)
    assert stats.max_buffered_rows <= bound and all(t.num_rows <= bound for t in out)
    if len(runs) > 1:
        assert all(r.asked == max(MIN_BATCH_ROWS, budget // len(runs)) for r in runs)


@settings(max_examples=30, deadline=None)
@given(st.lists(keys_strategy, min_size=2, max_size=8), st.sampled_from([1, 2048, 10_000]), st.sampled_from([2, 3]))
def test_threaded_rounds_emit_the_same_tables(runs_keys: list[list[tuple[int | None, int]]], budget: int,
                                              threads: int) -> None:
    """Rounds sorted on workers come out in order: the same tables, row for row, as on one thread."""
    one, many = MergeStats(), MergeStats()
    serial = merged([run_of(f"r{i}", k) for i, k in enumerate(runs_keys)], budget, one)
    threaded = merged([run_of(f"r{i}", k) for i, k in enumerate(runs_keys)], budget, many, threads=threads)
    assert [t.num_rows for t in threaded] == [t.num_rows for t in serial]
    assert all(a.equals(b) for a, b in zip(threaded, serial, strict=True))
    assert (many.rounds, many.max_buffered_rows) == (one.rounds, one.max_buffered_rows)


def test_a_threaded_merge_stopped_early_leaves_no_round_running(monkeypatch: pytest.MonkeyPatch) -> None:
    started, finished = [], []
    real = merge_module._sorted

    def slow(heads: list[pa.Table], sort_key: list[str]) -> pa.Table:
        started.append(1)
        time.sleep(0.05)
        out = real(heads, sort_key)
        finished.append(1)
        return out

    monkeypatch.setattr(merge_module, "_sorted", slow)
    runs = [run_of(f"r{i}", [(d % 97, d) for d in range(i, 40_000, 4)]) for i in range(4)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        stream = merge_runs(runs, ["day", "id"], budget_rows=2048, pool=pool)
        assert next(stream).num_rows > 0
        stream.close()  # a failed writer abandons the merge: its rounds are cancelled or finished by then
        assert len(started) == len(finished) >= 2  # the next round had been submitted before the yield


def test_memory_does_not_grow_with_the_input() -> None:
    """100,000 rows through a 4,096-row budget: the buffers stay at the budget, not the data."""
    runs = [run_of(f"r{i}", [(d % 97, d) for d in range(i, 100_000, 4)]) for i in range(4)]
    stats = MergeStats()
    total = sum(t.num_rows for t in merged(runs, 4096, stats))
    assert total == 100_000
    assert stats.max_buffered_rows <= 1.5 * 4096
    assert stats.rounds >= 100_000 / (1.5 * 4096)


def test_ties_keep_run_order_so_output_is_deterministic() -> None:
    a, b = run_of("a", [(1, 1)] * 3000), run_of("b", [(1, 1)] * 3000)
    first = [r["origin"] for t in merged([a, b], 2048) for r in t.to_pylist()]
    again = [r["origin"] for t in merged([run_of("a", [(1, 1)] * 3000), run_of("b", [(1, 1)] * 3000)], 2048)
             for r in t.to_pylist()]
    assert first == again
    assert sorted(first) == sorted([f"a:{i}" for i in range(3000)] + [f"b:{i}" for i in range(3000)])


def test_nulls_sort_last_like_arrow() -> None:
    out = merged([run_of("a", [(None, 1), (2, 1)]), run_of("b", [(1, 1), (None, 0)])], 1)
    assert [(r["day"], r["id"]) for t in out for r in t.to_pylist()] == [(1, 1), (2, 1), (None, 0), (None, 1)]


def test_nan_sorts_after_numbers_and_before_nulls() -> None:
    table = pa.table({"x": pa.array([1.5, math.nan, None], pa.float64())})
    assert [key_of(table, i, ["x"]) for i in range(3)] == [(((0, 1.5)),), ((1, 0),), ((2, 0),)]


@pytest.mark.parametrize("threads", [1, 2])
def test_an_unsorted_run_raises_instead_of_writing_an_unsorted_file(threads: int) -> None:
    good = run_of("good", [(d, 0) for d in range(5000)])
    bad = MemRun("bad", pa.table({
        "day": pa.array(list(range(2500, 5000)) + list(range(0, 2500)), pa.int32()),
        "id": pa.array([0] * 5000, pa.int64()),
        "origin": pa.array(["bad"] * 5000),
    }))
    with pytest.raises(UnsortedInput):
        merged([good, bad], 2048, threads=threads)


def test_without_a_sort_key_runs_are_concatenated_in_order() -> None:
    runs = [run_of("a", [(5, 0), (6, 0)]), run_of("b", [(1, 0)])]
    out = list(merge_runs(runs, [], budget_rows=10))
    assert [r["origin"] for t in out for r in t.to_pylist()] == ["a:0", "a:1", "b:0"]


def test_no_runs_no_output() -> None:
    assert merged([], 100) == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), st.just(math.nan), st.integers(0, 30).map(float)), max_size=2500),
                min_size=2, max_size=5))
def test_one_key_column_with_nulls_and_nan_merges_like_arrow_sorts(runs_values: list[list[float | None]]) -> None:
    """The frontier's last (here only) key column is compared in one step: nulls and NaN must stay after."""
    runs = []
    for i, values in enumerate(runs_values):
        origin = pa.array([f"r{i}:{j}" for j in range(len(values))], pa.string())
        runs.append(MemRun(f"r{i}", pa.table({"x": pa.array(values, pa.float64()), "origin": origin}).sort_by("x")))
    out = list(merge_runs(runs, ["x"], budget_rows=2048))
    expected = pa.concat_tables([r.table for r in runs]).sort_by("x")
    got = [key_of(t, i, ["x"]) for t in out for i in range(t.num_rows)]
    assert got == [key_of(expected, i, ["x"]) for i in range(expected.num_rows)]  # NaN, then nulls, last
    assert sorted(o for t in out for o in t.column("origin").to_pylist()) == sorted(expected["origin"].to_pylist())
