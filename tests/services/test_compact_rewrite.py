"""Rewriting a bin of local files: sorted target-sized files that keep every row and the writer's choices."""

from __future__ import annotations

import datetime as dt
import random
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts.arrow import lake_schema
from contracts.datasets import get_dataset
from services.compact.merge import UnsortedInput
from services.compact.rewrite import compact_files
from services.compact.runs import InputFile
from services.compact.schema import SchemaMismatch
from services.transform.parquet import write_partition

ORDERS = get_dataset("orders")
SORT = [("order_date", "ascending"), ("order_id", "ascending")]


def small_file(path: Path, object_id: str, rows: int, seed: int) -> InputFile:
    """One transform-style file: one object, rows sorted by the contract's sort key, lineage columns."""
    rnd = random.Random(seed)
    days = [dt.date(2024, 5, 1) + dt.timedelta(days=rnd.randrange(31)) for _ in range(rows)]
    table = pa.table({
        "order_id": pa.array([seed * 10_000 + i for i in range(rows)], pa.int64()),
        "customer_id": pa.array([rnd.randrange(500) for _ in range(rows)], pa.int64()),
        "amount": pa.array([f"{rnd.randrange(100, 99_999) / 100:.2f}" for _ in range(rows)]).cast(pa.decimal128(12, 2)),
        "status": pa.array([rnd.choice(["placed", "paid", "shipped"]) for _ in range(rows)]),
        "order_date": pa.array(days, pa.date32()),
        "_source_object_id": pa.array([object_id] * rows),
        "_source_line": pa.array(range(1, rows + 1), pa.int64()),
    }).cast(lake_schema(ORDERS)).sort_by([*SORT, ("_source_line", "ascending")])
    write_partition(table, path, ORDERS)
    return InputFile(path, rows)


def inputs(tmp_path: Path, count: int, rows: int = 300) -> list[InputFile]:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    return [small_file(folder / f"obj{i:03d}.parquet", f"obj{i:03d}", rows + i, seed=i) for i in range(count)]


def read_all(paths: list[Path]) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in paths])


def canonical(table: pa.Table) -> list[tuple]:
    return sorted(tuple(r.values()) for r in table.to_pylist())


def is_sorted(table: pa.Table) -> bool:
    keys = list(zip(table.column("order_date").to_pylist(), table.column("order_id").to_pylist(), strict=True))
    return keys == sorted(keys)


def test_small_files_become_one_sorted_file_with_every_row_and_its_lineage(tmp_path: Path) -> None:
    ins = inputs(tmp_path, 40)
    out = tmp_path / "out"
    out.mkdir()
    result = compact_files(ins, ORDERS, out)
    assert len(result.outputs) == 1 and result.rows == sum(f.rows for f in ins)
    merged = pq.read_table(result.outputs[0].path)
    assert is_sorted(merged)
    assert canonical(merged) == canonical(read_all([f.path for f in ins])), "same multiset, lineage included"
    assert merged.schema.equals(lake_schema(ORDERS)), "plain Glue types, no dictionary or schema leaks"


def test_the_transform_writers_choices_are_kept(tmp_path: Path) -> None:
    ins = inputs(tmp_path, 12)
    out = tmp_path / "out"
    out.mkdir()
    path = compact_files(ins, ORDERS, out).outputs[0].path
    meta = pq.ParquetFile(path).metadata
    group = meta.row_group(0)
    names = [group.column(i).path_in_schema for i in range(meta.num_columns)]
    assert all(group.column(i).compression == "ZSTD" for i in range(meta.num_columns))
    assert all(group.column(i).statistics.has_min_max for i in range(meta.num_columns))
    assert [names[c.column_index] for c in group.sorting_columns] == ["order_date", "order_id"]
    assert "DELTA_BINARY_PACKED" in group.column(names.index("_source_line")).encodings
    assert "RLE_DICTIONARY" in group.column(names.index("status")).encodings
    customer = read_all([f.path for f in ins]).column("customer_id")[0].as_py()
    con = duckdb.connect()
    probe = "SELECT bool_and(bloom_filter_excludes) FROM parquet_bloom_probe(?, 'customer_id', ?)"
    assert con.execute(probe, [str(path), customer]).fetchone()[0] is False
    assert con.execute(probe, [str(path), -987654321]).fetchone()[0] is True, "subject bloom filter present"


def test_spilled_runs_and_one_in_memory_sort_write_the_same_rows_in_the_same_order(tmp_path: Path) -> None:
    ins = [*inputs(tmp_path, 30), small_file(tmp_path / "in" / "big.parquet", "big", 5000, seed=99)]
    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir()
    many.mkdir()
    whole = compact_files(ins, ORDERS, one)
    spilled = compact_files(ins, ORDERS, many, budget_rows=2000, merge_rows=1500, threads=2)  # big.parquet: own run
    assert whole.runs == 1 and spilled.runs > 5
    assert spilled.merge.max_buffered_rows <= 1.5 * max(1500, spilled.runs * 1024)
    a, b = read_all([o.path for o in whole.outputs]), read_all([o.path for o in spilled.outputs])
    assert a.to_pylist() == b.to_pylist()


def test_files_roll_over_near_the_target_and_cover_disjoint_key_ranges(tmp_path: Path) -> None:
    ins = inputs(tmp_path, 40, rows=400)
    out = tmp_path / "out"
    out.mkdir()
    target = 48 * 1024
    result = compact_files(ins, ORDERS, out, target_bytes=target, row_group_rows=1000, budget_rows=3000)
    sizes = [o.bytes for o in result.outputs]
    assert len(sizes) >= 3
    assert all(s >= target for s in sizes[:-1]), sizes
    assert sizes[-1] >= 0.25 * target, "no runt file at the end"
    tables = [pq.read_table(o.path) for o in result.outputs]
    assert is_sorted(pa.concat_tables(tables)), "files follow each other in key order (pruning by min/max)"
    for o in result.outputs:
        meta = pq.ParquetFile(o.path).metadata
        groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        assert all(g == 1000 for g in groups[:-1]) and groups[-1] <= 1000


def test_a_file_missing_a_nullable_column_merges_with_nulls(tmp_path: Path) -> None:
    ins = inputs(tmp_path, 3)
    old = tmp_path / "in" / "old.parquet"
    table = pq.read_table(ins[0].path).drop_columns(["status"])
    pq.write_table(table, old)
    out = tmp_path / "out"
    out.mkdir()
    result = compact_files([*ins[1:], InputFile(old, table.num_rows)], ORDERS, out)
    merged = pq.read_table(result.outputs[0].path)
    assert merged.column("status").null_count == table.num_rows


def test_a_one_row_file_whose_writer_chose_free_text_merges_with_files_that_repeat(tmp_path: Path) -> None:
    # One row never "repeats", so its writer stores status and lineage as DELTA_LENGTH_BYTE_ARRAY; the
    # bin's sample says both repeat, and pyarrow cannot decode that encoding into a dictionary. Such a
    # bin failed on every retry and was dead-lettered (a single-line object, or the race test's append).
    ins = inputs(tmp_path, 3, rows=40)
    one = small_file(tmp_path / "in" / "one.parquet", "one", 1, seed=7)
    chunk = pq.ParquetFile(one.path).metadata.row_group(0)
    names = [chunk.column(i).path_in_schema for i in range(chunk.num_columns)]
    assert "DELTA_LENGTH_BYTE_ARRAY" in chunk.column(names.index("status")).encodings, "precondition"
    for budget in (10_000, 50):  # read whole and sorted in memory; spilled runs and streamed inputs
        out = tmp_path / f"out{budget}"
        out.mkdir()
        result = compact_files([ins[0], one, *ins[1:]], ORDERS, out, budget_rows=budget, merge_rows=50)
        merged = read_all([o.path for o in result.outputs])
        assert canonical(merged) == canonical(read_all([f.path for f in [*ins, one]]))
        assert merged.schema.equals(lake_schema(ORDERS))


def test_a_column_the_contract_does_not_know_is_refused_not_dropped(tmp_path: Path) -> None:
    ins = inputs(tmp_path, 2)
    odd = tmp_path / "in" / "odd.parquet"
    table = pq.read_table(ins[0].path)
    pq.write_table(table.append_column("surprise", pa.array([1] * table.num_rows)), odd)
    with pytest.raises(SchemaMismatch, match="surprise"):
        compact_files([ins[1], InputFile(odd, table.num_rows)], ORDERS, tmp_path)


def test_rows_that_disagree_with_the_manifest_never_reach_a_commit(tmp_path: Path) -> None:
    ins = inputs(tmp_path, 2)
    with pytest.raises(RuntimeError, match="rows"):
        compact_files([ins[0], InputFile(ins[1].path, ins[1].rows + 1)], ORDERS, tmp_path)


def test_a_failed_threaded_rewrite_raises_and_leaves_no_worker_behind(tmp_path: Path) -> None:
    """An unsorted input fails the merge at two threads: the error surfaces, every worker is stopped."""
    ins = inputs(tmp_path, 6)
    big = small_file(tmp_path / "in" / "big.parquet", "big", 1200, seed=99)  # its own run: streamed, not sorted
    bad = tmp_path / "in" / "unsorted.parquet"
    table = pq.read_table(big.path)
    pq.write_table(table.take(list(range(table.num_rows - 1, -1, -1))), bad)  # descending: not a run
    before = {t.ident for t in threading.enumerate()}
    (tmp_path / "out").mkdir()
    with pytest.raises(UnsortedInput):
        compact_files([*ins, InputFile(bad, table.num_rows)], ORDERS, tmp_path / "out", budget_rows=2000,
                      merge_rows=1500, threads=2)
    assert {t.ident for t in threading.enumerate() if t.is_alive()} <= before
