"""plan_chunks() and chunked processing: line-aligned ranges, exact first lines, chunked == whole."""

from __future__ import annotations

import gzip
from collections import defaultdict
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from contracts import records
from contracts.datasets import Dataset, get_dataset
from etl import samples
from services.transform import chunks as chunks_mod
from services.transform.chunks import ByteRange, can_split, count_line_breaks, file_reader, plan_chunks
from services.transform.core import TransformResult
from tests.services.transform_helpers import run, typed_dataset

CUSTOMERS = get_dataset("customers")
ORDERS = get_dataset("orders")


def reader(data: bytes) -> Callable[[int, int], bytes]:
    return lambda start, end: data[start:end]


def lines_before(data: bytes, offset: int) -> int:
    return count_line_breaks(data[:offset])[0]


def assert_plan_is_exact(data: bytes, plan: list[ByteRange]) -> None:
    assert plan[0].start == 0 and plan[-1].end == len(data)
    for i, (a, b) in enumerate(pairwise(plan)):
        assert a.end == b.start and a.index == i and b.index == i + 1
    for r in plan:
        assert r.first_line == lines_before(data, r.start) + 1
        if r.start:
            assert data[r.start - 1 : r.start] == b"\n"  # every cut is just after a newline


def merged(results: list[TransformResult]) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]], int]:
    """Rows per partition (ordered like one whole-object sort would), quarantine rows, rows in."""
    parts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        for p in r.partitions:
            parts[p.path].extend(p.table.to_pylist())
    quarantine = sorted((row for r in results for row in r.quarantine.to_pylist()), key=lambda q: q["_source_line"])
    return dict(parts), quarantine, sum(r.rows_in for r in results)


def whole_vs_chunked(dataset: Dataset, data: bytes, chunk_size: int) -> int:
    plan = plan_chunks(len(data), chunk_size, reader(data), chunks_mod.dialect_of(dataset))
    assert_plan_is_exact(data, plan)
    whole = run(dataset, data)
    parts, quarantine, rows_in = merged([run(dataset, data, chunk=r) for r in plan])
    sort = [*dataset.sort_key, "_source_line"]
    for rows in parts.values():
        rows.sort(key=lambda row: tuple(row[k] for k in sort))
    assert parts == {p.path: p.table.to_pylist() for p in whole.partitions}
    assert quarantine == whole.quarantine.to_pylist()
    assert rows_in == whole.rows_in
    return len(plan)


def test_plan_cuts_after_newlines_and_counts_lines() -> None:
    data = b"".join(f"line {i}\n".encode() for i in range(1, 1001))
    plan = plan_chunks(len(data), 1000, reader(data))
    assert len(plan) > 5
    assert_plan_is_exact(data, plan)


def test_plan_with_crlf_and_lone_cr_line_breaks() -> None:
    data = b"".join(f"row {i}".encode() + (b"\r\n", b"\n", b"\r")[i % 3] + b"\n" * (i % 2) for i in range(600))
    plan = plan_chunks(len(data), 500, reader(data))
    assert_plan_is_exact(data, plan)


def test_counting_pieces_split_inside_crlf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "PIECE", 7)  # reads end between \r and \n; pieces still end after a \n
    data = b"a\r\nbb\r\nccc\r\n" * 50 + b"tail\n" * 50
    assert_plan_is_exact(data, plan_chunks(len(data), 97, reader(data)))
    assert count_line_breaks(b"\n", after_cr=True) == (0, False)
    assert count_line_breaks(b"x\r") == (1, True)


def test_small_and_gzip_objects_are_one_chunk() -> None:
    data = b"x\n" * 100
    assert plan_chunks(len(data), 1000, reader(data)) == [ByteRange(0, 200)]
    packed = gzip.compress(data * 100)
    assert plan_chunks(len(packed), 50, reader(packed)) == [ByteRange(0, len(packed))]
    assert plan_chunks(0, 10, reader(b"")) == [ByteRange(0, 0)]


def test_a_line_longer_than_the_window_moves_the_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "PIECE", 16)
    data = b"short\n" + b"y" * 500 + b"\nend\n"
    plan = plan_chunks(len(data), 10, reader(data))
    assert [(r.start, r.end) for r in plan] == [(0, 507), (507, 511)]
    assert_plan_is_exact(data, plan)


def test_no_newline_after_the_cut_ends_the_plan() -> None:
    data = b"first line\n" + b"z" * 100
    assert [(r.start, r.end) for r in plan_chunks(len(data), 20, reader(data))] == [(0, len(data))]


def test_byte_range_validation() -> None:
    with pytest.raises(ValueError):
        ByteRange(5, 4)
    with pytest.raises(ValueError):
        ByteRange(0, 4, first_line=0)
    with pytest.raises(ValueError):
        plan_chunks(10, 0, reader(b"x" * 10))
    assert ByteRange(3, 10).length == 7


def test_every_format_splits_on_record_boundaries() -> None:
    assert can_split(ORDERS) and can_split(CUSTOMERS) and can_split(typed_dataset(embedded=True))


@pytest.mark.parametrize("embedded", [False, True])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_cuts_never_fall_inside_a_quoted_value(embedded: bool, newline: bytes) -> None:
    """Records with quoted newlines everywhere: every cut is at a record start, chunked == whole.

    59 records (20 rounds of the three-record pattern) give a window of 7 bytes 60 chunks: each chunk is
    transformed, so more rounds repeat the same cuts at a cost (119 records took twice the time)."""
    ds = typed_dataset(embedded=embedded)
    head = ",".join(c.name for c in ds.columns).encode() + newline
    rows = [f'{i},1,1.00,0.5,true,2024-01-01,2024-01-01T00:00:00,"n{i}{newline.decode()}x,""y""{newline.decode()}",eu'
            .encode() if i % 3 else f"{i},,,,,,,plain,eu".encode() for i in range(1, 60)]
    data = head + newline.join(rows) + newline
    for size in (7, 40, 133):
        plan = plan_chunks(len(data), size, reader(data), chunks_mod.dialect_of(ds))
        assert len(plan) > 3
        for r in plan[1:]:
            assert data[r.start:].split(newline, 1)[0].split(b",")[0].isdigit(), "a cut inside a record"
        assert whole_vs_chunked(ds, data, size) == len(plan)
    whole = run(ds, data)
    assert whole.rows_good == (59 if embedded else 19) and whole.rows_in == 59


def test_pyarrow_buffers_and_files_as_range_readers(tmp_path: Path) -> None:
    data = samples.orders_jsonl(300).data
    expected = plan_chunks(len(data), 4000, reader(data))
    source = pa.BufferReader(data)
    assert plan_chunks(len(data), 4000, lambda a, b: source.read_at(b - a, a)) == expected
    path = tmp_path / "orders.jsonl"
    path.write_bytes(data)
    assert plan_chunks(len(data), 4000, file_reader(path)) == expected


@pytest.mark.parametrize("chunk_size", [700, 4096, 50_000])
def test_customers_whole_equals_chunked(chunk_size: int) -> None:
    data = samples.customers_csv(1500, hostile=40, seed=3).data
    assert whole_vs_chunked(CUSTOMERS, data, chunk_size) >= (2 if chunk_size < len(data) else 1)


@pytest.mark.parametrize("chunk_size", [900, 10_000])
def test_orders_whole_equals_chunked(chunk_size: int) -> None:
    data = samples.orders_jsonl(1500, hostile=60, seed=5).data
    assert whole_vs_chunked(ORDERS, data, chunk_size) > 1


def test_crlf_bom_and_blank_lines_whole_equals_chunked() -> None:
    text = samples.customers_csv(600, hostile=12, seed=9, crlf=True).text
    lines = text.split("\r\n")
    text = "\r\n".join(line + ("\r\n" if i % 50 == 7 else "") for i, line in enumerate(lines))
    assert whole_vs_chunked(CUSTOMERS, b"\xef\xbb\xbf" + text.encode(), 2000) > 2


def test_quoted_newlines_whole_equals_chunked() -> None:
    # a quoted newline in a dataset that forbids it: lines are records in both modes
    rows = samples.customers_csv(400, seed=2).text.splitlines()
    rows[120] = rows[120].replace(",", ',"broken\nvalue",', 1)
    rows[300] = rows[300] + ',"unterminated'
    assert whole_vs_chunked(CUSTOMERS, ("\n".join(rows) + "\n").encode(), 1500) > 2


def test_chunk_line_numbers_match_the_whole_object(tmp_path: Path) -> None:
    sample = samples.orders_jsonl(800, hostile=30, seed=11)
    path = tmp_path / "orders.jsonl"
    path.write_bytes(sample.data)
    plan = plan_chunks(len(sample.data), 3000, file_reader(path))
    quarantined = {row["_source_line"] for r in plan for row in run(ORDERS, path, chunk=r).quarantine.to_pylist()}
    assert quarantined == set(sample.hostile)
