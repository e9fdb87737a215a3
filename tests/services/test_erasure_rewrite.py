"""REWRITE: the new file is the old one minus the subjects' rows, with the same physical layout."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.lake_format import ZSTD_LEVEL
from contracts.schema_evolution import FOOTER_DATASET, FOOTER_VERSION, file_contract
from services.erasure.blobs import LocalBlob
from services.erasure.find import probe
from services.erasure.rewrite import (
    SLICE_FROM_FEW,
    compact_dictionaries,
    rewrite,
    without_rows,
    writer_options,
)
from services.erasure.structure import check_file
from services.erasure.subjects import Subjects
from tests.services.orders_parquet import ORDERS, SALT, write


def layout(path: Path) -> dict:
    md = pq.ParquetFile(path).metadata
    rg = md.row_group(0)
    return {
        "schema": pq.ParquetFile(path).schema_arrow,
        "codecs": [rg.column(i).compression for i in range(rg.num_columns)],
        "dictionary": [("RLE_DICTIONARY" in rg.column(i).encodings) for i in range(rg.num_columns)],
        "delta": [("DELTA_BINARY_PACKED" in rg.column(i).encodings) for i in range(rg.num_columns)],
        "bloom": [bool(rg.column(i).bloom_filter_offset) for i in range(rg.num_columns)],
        "page_index": [rg.column(i).has_column_index for i in range(rg.num_columns)],
        "sorting": rg.sorting_columns,
    }


def test_rewrite_removes_exactly_the_subject_rows_and_keeps_layout(tmp_path: Path) -> None:
    rnd = random.Random(5)
    customers = [rnd.randrange(500) for _ in range(30_000)]
    src = write(tmp_path, "src.parquet", customers, row_group_rows=10_000)
    subjects = Subjects.of(["7", "42", "abc"], SALT)
    out = tmp_path / "out.parquet"
    result = rewrite(str(src), lambda: str(out), subjects.columns(ORDERS))
    before, after = pq.read_table(src), pq.read_table(out)
    gone = Counter(c for c in customers if c in (7, 42))
    assert result.rows_removed == sum(gone.values()) and after.num_rows == len(customers) - result.rows_removed
    assert result.by_subject == {0: gone[7], 1: gone[42]}
    kept = before.filter([c not in (7, 42) for c in customers])
    assert after.equals(kept), "same rows, same order: nothing but the subject rows differs"
    assert layout(out) == layout(src)
    assert [pq.ParquetFile(out).metadata.row_group(i).num_rows for i in range(3)] == [
        10_000 - sum(1 for c in customers[i * 10_000 : (i + 1) * 10_000] if c in (7, 42)) for i in range(3)]
    lines = sorted(line for ls in result.lineage.values() for line in ls)
    assert lines == [i + 1 for i, c in enumerate(customers) if c in (7, 42)]


def test_rewritten_file_reads_back_in_duckdb_with_bloom_filters_still_used(tmp_path: Path) -> None:
    src = write(tmp_path, "src.parquet", list(range(5000)))
    out = tmp_path / "out.parquet"
    rewrite(str(src), lambda: str(out), Subjects.of(["10"], SALT).columns(ORDERS))
    con = duckdb.connect()
    assert con.execute(f"SELECT count(*) FROM '{out}' WHERE customer_id = 10").fetchone() == (0,)
    assert con.execute(f"SELECT count(*) FROM '{out}'").fetchone() == (4999,)
    probe = con.execute(f"SELECT * FROM parquet_bloom_probe('{out}', 'customer_id', 10)").fetchall()
    assert probe and all(row[-1] is True for row in probe), "the filter proves 10 absent"


def test_a_file_left_without_rows_produces_no_file(tmp_path: Path) -> None:
    src = write(tmp_path, "src.parquet", [3] * 50)
    opened = []
    result = rewrite(str(src), lambda: opened.append(1) or str(tmp_path / "never.parquet"),
                     Subjects.of(["3"], SALT).columns(ORDERS))
    assert result.rows_out == 0 and result.rows_removed == 50 and opened == []
    assert not (tmp_path / "never.parquet").exists()


def test_row_groups_outside_the_hint_are_copied_without_testing(tmp_path: Path) -> None:
    src = write(tmp_path, "src.parquet", [1] * 100 + [2] * 100, row_group_rows=1000)
    out = tmp_path / "out.parquet"
    result = rewrite(str(src), lambda: str(out), Subjects.of(["1"], SALT).columns(ORDERS), row_groups=[])
    assert result.rows_removed == 0 and pq.read_table(out).num_rows == 200


def test_writer_options_reflect_the_footer(tmp_path: Path) -> None:
    src = write(tmp_path, "src.parquet", list(range(100)))
    opts = writer_options(pq.ParquetFile(src))
    assert set(opts["bloom_filter_options"]) == {"customer_id"}
    assert opts["store_schema"] is False and opts["store_decimal_as_integer"] is True
    assert opts["column_encoding"]["_source_line"] == "DELTA_BINARY_PACKED"
    assert [c.column_index for c in opts["sorting_columns"]] == [4, 0]


def test_rewritten_file_keeps_the_contract_it_was_written_with(tmp_path: Path) -> None:
    src = write(tmp_path, "src.parquet", list(range(200)))
    kv = pq.ParquetFile(src).metadata.metadata
    assert kv[FOOTER_VERSION.encode()] and kv[FOOTER_DATASET.encode()] == b"orders", "transform records it"
    out = tmp_path / "out.parquet"
    rewrite(str(src), lambda: str(out), Subjects.of(["1"], SALT).columns(ORDERS))
    after = pq.ParquetFile(out).metadata.metadata or {}
    assert {k: v for k, v in after.items() if k.startswith(b"etl.contract.")} == {
        k: v for k, v in kv.items() if k.startswith(b"etl.contract.")}
    assert file_contract(after).version == file_contract(kv).version is not None
    assert ZSTD_LEVEL == 1 and set(writer_options(pq.ParquetFile(src))["compression_level"].values()) == {1}
    same = tmp_path / "same.parquet"
    rewrite(str(src), lambda: str(same), Subjects.of(["999999"], SALT).columns(ORDERS))  # no row removed

    def sizes(path: Path) -> list[int]:
        rg = pq.ParquetFile(path).metadata.row_group(0)
        return [rg.column(i).total_compressed_size for i in range(rg.num_columns)]

    assert sizes(same) == sizes(src), "same rows, same encodings, same zstd level: the same chunk sizes"
    report = check_file(LocalBlob(str(out)), subject_ids=["1"])  # "1" is also the contract version
    assert not report.problems, "the structure check still skips etl.contract.* and finds nothing else"


def test_a_small_file_is_fetched_once_and_rewritten_from_the_bytes_find_read(tmp_path: Path) -> None:
    rnd = random.Random(9)
    src = write(tmp_path, "src.parquet", [rnd.randrange(300) for _ in range(5000)])
    columns = Subjects.of(["7", "42"], SALT).columns(ORDERS)
    blob = LocalBlob(str(src))
    found = probe(blob, columns)
    assert found.matched and blob.stats.requests == 1 and blob.stats.bytes == src.stat().st_size
    assert found.data == src.read_bytes() and found.metadata is not None
    held, again = tmp_path / "held.parquet", tmp_path / "again.parquet"
    a = rewrite(found.source(), lambda: str(held), columns, row_groups=found.matched_row_groups,
                metadata=found.metadata)
    b = rewrite(str(src), lambda: str(again), columns)
    assert (a.rows_removed, a.by_subject, a.lineage) == (b.rows_removed, b.by_subject, b.lineage)
    assert a.rows_removed == found.matched_rows > 0
    assert pq.read_table(held).equals(pq.read_table(again)) and layout(held) == layout(src)
    assert not check_file(LocalBlob(str(held)), subject_ids=["7", "42"]).problems


def test_only_matched_probes_keep_the_bytes(tmp_path: Path) -> None:
    src = write(tmp_path, "src.parquet", list(range(1000)))
    found = probe(LocalBlob(str(src)), Subjects.of(["5000"], SALT).columns(ORDERS))
    assert not found.matched and found.data is None and found.metadata is None and found.source() is None


def test_a_dictionary_keeps_its_entries_only_while_a_row_left_uses_each() -> None:
    status = pa.array(["paid", "placed", "paid", "refunded"]).dictionary_encode()
    t = pa.table({"status": status, "n": [1, 2, 3, 4]})
    kept = compact_dictionaries(t.filter(pa.array([True, True, False, False])))
    assert kept.column("status").chunk(0).dictionary.to_pylist() == ["paid", "placed"]
    whole = t.filter(pa.array([True, True, False, True]))
    same = compact_dictionaries(whole)
    assert same.column("status").chunk(0).dictionary.to_pylist() == ["paid", "placed", "refunded"]
    assert same.column("status").to_pylist() == ["paid", "placed", "refunded"]


def test_rows_are_cut_out_as_a_filter_would_whether_few_or_many() -> None:
    rnd = random.Random(11)
    n = 1000
    names = pa.array([rnd.choice(["ann", "bob", None, "eve"]) for _ in range(n)]).dictionary_encode()
    t = pa.table({"id": list(range(n)), "name": names,
                  "text": [None if i % 7 == 0 else f"comment {i}" for i in range(n)]})
    chunked = pa.concat_tables([t.slice(0, 300), t.slice(300, 250), t.slice(550)])  # as a reader may hand it
    cases = [[], [0], [n - 1], [0, 1, 2, 998, 999], list(range(400, 420)), list(range(n)),
             sorted(rnd.sample(range(n), SLICE_FROM_FEW)), sorted(rnd.sample(range(n), SLICE_FROM_FEW + 1)),
             sorted(rnd.sample(range(n), 600))]
    for table in (t, chunked):
        for positions in cases:
            gone = set(positions)
            mask = pa.array([i in gone for i in range(n)])
            left = without_rows(table, pa.array(positions, pa.uint64()), mask)
            assert left.equals(table.filter(pa.array([i not in gone for i in range(n)])))
            if table is t or len(positions) <= SLICE_FROM_FEW:  # a filter keeps its input's chunks
                assert all(c.num_chunks <= 1 for c in left.columns), "contiguous columns, as the writer is fed"
            assert left.schema == table.schema
