"""Encoding a file's columns on several threads and stitching them gives the single writer's file, byte for byte
in every column chunk, bloom filter and column index, with every offset pointing where it should."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import thrift
from contracts.arrow import lake_schema
from contracts.datasets import get_dataset
from services.compact.split_writer import column_shares
from services.compact.stitch import Part, StitchError, footer_of, stitch
from services.compact.writer import OutputFile, RollingWriter

ORDERS = get_dataset("orders")


def lake_rows(rows: int, seed: int = 7) -> pa.Table:
    rnd = random.Random(seed)
    start = dt.date(2024, 5, 1)
    table = pa.table({
        "order_id": pa.array(range(rows), pa.int64()),
        "customer_id": pa.array([rnd.randrange(5_000) for _ in range(rows)], pa.int64()),
        "amount": pa.array([f"{rnd.randrange(100, 99_999) / 100:.2f}" for _ in range(rows)]).cast(pa.decimal128(12, 2)),
        "status": pa.array([rnd.choice(["placed", "paid", "shipped"]) for _ in range(rows)]),
        "order_date": pa.array([start + dt.timedelta(days=i * 31 // rows) for i in range(rows)], pa.date32()),
        "_source_object_id": pa.array([f"obj{i // 1000:03d}" for i in range(rows)]),
        "_source_line": pa.array(range(1, rows + 1), pa.int64()),
    })
    return table.cast(lake_schema(ORDERS))


def write(folder: Path, table: pa.Table, threads: int, *, target_bytes: int = 1 << 30,
          row_group_rows: int = 3_000) -> list[OutputFile]:
    folder.mkdir()
    writer = RollingWriter(path_for=lambda i: folder / f"out-{i:04d}.parquet", dataset=ORDERS,
                           target_bytes=target_bytes, row_group_rows=row_group_rows,
                           expected_rows=table.num_rows, threads=threads)
    for batch in table.to_batches(max_chunksize=1_100):  # the merge hands over batches, not row groups
        writer.write(pa.Table.from_batches([batch]))
    return writer.close()


def footer(path: Path) -> thrift.Struct:
    return footer_of(path.read_bytes())


def chunk_bytes(path: Path) -> list[dict[str, bytes]]:
    """Per row group and column: the pages, the bloom filter and the column index, as stored."""
    data = path.read_bytes()
    out = []
    for rg in thrift.field(footer(path), 4):
        for cc in thrift.field(rg, 1):
            md = thrift.field(cc, 3)
            begin = min(thrift.field(md, f) for f in (9, 11) if f in md)
            entry = {"pages": data[begin:begin + thrift.field(md, 7)]}
            if 14 in md:
                entry["bloom"] = data[thrift.field(md, 14):thrift.field(md, 14) + thrift.field(md, 15)]
            if 6 in cc:
                entry["column_index"] = data[thrift.field(cc, 6):thrift.field(cc, 6) + thrift.field(cc, 7)]
            out.append(entry)
    return out


def test_thrift_round_trip_keeps_every_field_of_a_pyarrow_footer(tmp_path: Path) -> None:
    [out] = write(tmp_path / "one", lake_rows(5_000), threads=1)
    data = out.path.read_bytes()
    n = int.from_bytes(data[-8:-4], "little")
    raw = data[-8 - n:-8]
    decoded, end = thrift.decode(raw)
    assert end == len(raw)
    assert thrift.encode(decoded) == raw


def test_split_encoding_writes_the_single_writers_column_chunks_bloom_filters_and_indexes(tmp_path: Path) -> None:
    table = lake_rows(10_000)
    [single] = write(tmp_path / "single", table, threads=1)
    [split] = write(tmp_path / "split", table, threads=2)

    assert pq.read_table(split.path).equals(pq.read_table(single.path))
    assert (split.rows, split.bytes) == (single.rows, split.path.stat().st_size)
    assert chunk_bytes(split.path) == chunk_bytes(single.path)
    a, b = pq.read_metadata(single.path).to_dict(), pq.read_metadata(split.path).to_dict()
    for meta in (a, b):
        meta.pop("serialized_size")
        for rg in meta["row_groups"]:
            for c in rg["columns"]:
                for k in ("data_page_offset", "dictionary_page_offset"):
                    c.pop(k)
    assert a == b  # statistics, encodings, sizes, sort order, bloom filters' sizes, metadata
    assert pq.read_metadata(split.path).metadata == pq.read_metadata(single.path).metadata
    assert not list((tmp_path / "split").glob("*.part*"))  # part files are gone


def test_every_offset_index_entry_points_at_a_page_header_of_that_size(tmp_path: Path) -> None:
    [split] = write(tmp_path / "split", lake_rows(10_000), threads=2)
    data = split.path.read_bytes()
    pages = 0
    for rg in thrift.field(footer(split.path), 4):
        for cc in thrift.field(rg, 1):
            index = thrift.decode(data[thrift.field(cc, 4):thrift.field(cc, 4) + thrift.field(cc, 5)])[0]
            for location in thrift.field(index, 1):
                offset, size = thrift.field(location, 1), thrift.field(location, 2)
                header, end = thrift.decode(data, offset)
                assert thrift.field(header, 1) in (0, 3)  # a data page, v1 or v2
                assert end - offset + thrift.field(header, 3) == size
                pages += 1
    assert pages >= 4 * 7


def test_duckdb_reads_the_stitched_file_and_its_bloom_filters_answer_as_the_single_writers(tmp_path: Path) -> None:
    table = lake_rows(10_000)
    [single] = write(tmp_path / "single", table, threads=1)
    [split] = write(tmp_path / "split", table, threads=2)
    con = duckdb.connect()
    query = "SELECT count(*), sum(amount), count(DISTINCT customer_id) FROM read_parquet('{}')"
    assert con.execute(query.format(split.path)).fetchall() == con.execute(query.format(single.path)).fetchall()
    probes = "SELECT row_group_id, bloom_filter_excludes FROM parquet_bloom_probe('{}', 'customer_id', {})"
    present = table.column("customer_id")[0].as_py()
    for value in (present, 4_999_999, 123_456):
        answers = con.execute(probes.format(split.path, value)).fetchall()
        assert answers == con.execute(probes.format(single.path, value)).fetchall()
    assert not any(excluded for _, excluded in con.execute(probes.format(split.path, present)).fetchall()
                   if excluded is not None)


def test_files_roll_over_at_the_same_rows_with_threads(tmp_path: Path) -> None:
    table = lake_rows(12_000)
    single = write(tmp_path / "single", table, threads=1, target_bytes=40_000, row_group_rows=2_000)
    split = write(tmp_path / "split", table, threads=2, target_bytes=40_000, row_group_rows=2_000)
    assert len(single) > 1
    assert [(o.rows, o.bytes) for o in split] == [(o.rows, o.bytes) for o in single]


def test_column_shares_balance_bytes_and_cover_every_column_once() -> None:
    table = pa.table({"text": ["x" * 100] * 10, "a": list(range(10)), "b": list(range(10)), "c": list(range(10))})
    shares = column_shares(table, 2)
    assert sorted(i for s in shares for i in s) == [0, 1, 2, 3]
    assert [0] in shares  # the big text column alone, the small ones together
    assert sorted(column_shares(table, 8)) == [[0], [1], [2], [3]]


def test_part_files_that_disagree_are_refused(tmp_path: Path) -> None:
    table = lake_rows(3_000)
    names = table.schema.names
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(table.select(names[:3]), a, row_group_size=1_000)
    pq.write_table(table.select(names[3:]), b, row_group_size=1_500)
    template = tmp_path / "t.parquet"
    pq.write_table(table.slice(0, 0), template)
    parts = [Part(a, [0, 1, 2]), Part(b, list(range(3, len(names))))]
    with pytest.raises(StitchError, match="row group"):
        stitch(parts, footer(template), None, tmp_path / "out.parquet")
    with pytest.raises(StitchError, match="columns"):
        stitch(parts[:1], footer(template), None, tmp_path / "out.parquet")


def test_erasures_byte_level_check_reads_every_structure_of_a_stitched_file(tmp_path: Path) -> None:
    """The erasure service verifies compacted files by their bytes (pages, dictionaries, statistics,
    column indexes, bloom filters): a stitched file must read there exactly as a single writer's."""
    from services.erasure.blobs import LocalBlob
    from services.erasure.structure import check_file

    [split] = write(tmp_path / "split", lake_rows(10_000), threads=2)
    report = check_file(LocalBlob(str(split.path)), label="stitched")
    assert report.problems == []
    assert report.column_chunks == 4 * 7
