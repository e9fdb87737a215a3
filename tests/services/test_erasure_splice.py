"""SPLICE: a file without the subjects' rows, only the pages holding them written again, is the file the whole
rewrite makes (row for row), laid out as Parquet requires (every index entry on its page), and holds nothing of
a removed row in its bytes; whatever it cannot rebuild exactly falls back to the whole rewrite.

Inputs are written as compaction writes them (zstd level 1, dictionaries on repeating columns, delta encodings,
statistics, page index, a bloom filter on the subject column, sorting columns, lineage columns, a decimal stored
as INT64, a date, nullable columns with nulls), with pages of 200 rows so a few thousand rows make many pages;
`splice.MIN_ROWS` is lowered so such small row groups are spliced at all.
"""

from __future__ import annotations

import datetime as dt
import random
import struct
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import aws
from contracts.commits import PartitionRef
from contracts.lineage import LINE_COLUMN, OBJECT_COLUMN
from contracts.schema_evolution import footer_metadata as contract_metadata
from services.compact.split_writer import SplitFileWriter, column_shares
from services.erasure import find, lake, splice
from services.erasure import rewrite as rewrite_module
from services.erasure.blobs import LocalBlob, S3Blob
from services.erasure.find import read_bloom
from services.erasure.lake import Checkpoint
from services.erasure.pages import DATA_PAGE, DICTIONARY_PAGE, decompress, plain_value, read_struct, walk_pages
from services.erasure.rewrite import RewriteResult, rewrite
from services.erasure.structure import check_file, physical
from services.erasure.subjects import ColumnValues
from services.transform.parquet import writer_options as transform_options
from tests.services.erasure_world import World
from tests.services.orders_parquet import ORDERS, orders_table

SALT = b"splice-test-salt-0123456789"
PAGE_ROWS = 200
GROUP_ROWS = 2000
PERSONAL = ["comment"]
DICTIONARY = ["status", "order_date", OBJECT_COLUMN]
SCHEMA = pa.schema([
    pa.field("order_id", pa.int64(), nullable=False),
    pa.field("customer_id", pa.int64(), nullable=False),
    pa.field("amount", pa.decimal128(12, 2), nullable=False),
    pa.field("status", pa.string(), nullable=False),
    pa.field("order_date", pa.date32(), nullable=False),
    pa.field("comment", pa.string()),
    pa.field("quantity", pa.int32()),
    pa.field("score", pa.float64()),
    pa.field(OBJECT_COLUMN, pa.string()),
    pa.field(LINE_COLUMN, pa.int64()),
])
#: subject ids: far above the other customers' (1..999), each placed on chosen rows by the tests
S1, S2 = 5001, 5002


@pytest.fixture(autouse=True)
def small_row_groups_are_spliced(monkeypatch: pytest.MonkeyPatch) -> None:
    """MIN_ROWS lowered; and a failure the rewrite would hide behind the whole rewrite fails the test instead."""
    monkeypatch.setattr(splice, "MIN_ROWS", 100)
    monkeypatch.setattr(rewrite_module._log, "warning",
                        lambda message, *args: pytest.fail("splice failed: " + message % args))


# -- inputs ---------------------------------------------------------------------------------------------------


def orders(n: int = 6000, seed: int = 1) -> dict[str, list[Any]]:
    """Columns of `n` orders sorted by (order_date, order_id); a page of comments (rows 1000-1199) all null."""
    rnd = random.Random(seed)
    days = sorted(rnd.randrange(28) for _ in range(n))
    comments = [None if rnd.random() < 0.1 else f"note {i:05d} {rnd.randrange(16**6):06x}" for i in range(n)]
    comments[1000:1200] = [None] * 200
    return {
        "order_id": list(range(n)),
        "customer_id": [rnd.randrange(1, 1000) for _ in range(n)],
        "amount": [Decimal(rnd.randrange(100, 99_999)) / 100 for _ in range(n)],
        "status": [rnd.choice(["placed", "paid", "shipped", "refunded"]) for _ in range(n)],
        "order_date": [dt.date(2024, 5, 1 + d) for d in days],
        "comment": comments,
        "quantity": [None if rnd.random() < 0.15 else rnd.randrange(10, 500) for _ in range(n)],
        "score": [None if rnd.random() < 0.05 else rnd.random() for _ in range(n)],
        OBJECT_COLUMN: [f"obj-{i // 1500}" for i in range(n)],
        LINE_COLUMN: [i % 1500 + 1 for i in range(n)],
    }


def place(cols: dict[str, list[Any]], subject: int, rows: Sequence[int]) -> None:
    for r in rows:
        cols["customer_id"][r] = subject


def write(path: Path, cols: dict[str, list[Any]] | pa.Table, group_rows: int = GROUP_ROWS, *,
          dictionary: Sequence[str] = DICTIONARY, stitched: bool = False, **extra: Any) -> Path:
    """As compaction writes (services/compact/writer.py), with PAGE_ROWS-row pages (`stitched`: by its
    SplitFileWriter, two threads' part files stitched into one)."""
    t = cols if isinstance(cols, pa.Table) else pa.table(cols, schema=SCHEMA)
    delta = {"order_id": "DELTA_BINARY_PACKED", LINE_COLUMN: "DELTA_BINARY_PACKED",
             "comment": "DELTA_LENGTH_BYTE_ARRAY"}
    options: dict[str, Any] = {
        "compression": "zstd",
        "compression_level": dict.fromkeys(t.column_names, 1),
        "use_dictionary": list(dictionary),
        "column_encoding": {c: e for c, e in delta.items() if c in t.column_names and c not in dictionary},
        "write_statistics": True,
        "write_page_index": True,
        "store_decimal_as_integer": True,
        "store_schema": False,
        "bloom_filter_options": {"customer_id": {"ndv": group_rows, "fpp": 0.05}},
        "sorting_columns": pq.SortingColumn.from_ordering(t.schema, [("order_date", "ascending"),
                                                                     ("order_id", "ascending")]),
        "max_rows_per_page": PAGE_ROWS,
        "write_batch_size": PAGE_ROWS // 2,
        **extra,
    }
    metadata = {"etl.contract.dataset": "orders", "etl.contract.version": "1"}
    if stitched:
        with ThreadPoolExecutor(2) as pool:
            split = SplitFileWriter(path, t.schema, options, metadata, column_shares(t, 2), pool)
            for start in range(0, t.num_rows, group_rows):
                split.write(t.slice(start, group_rows))
            split.close()
        return path
    with pq.ParquetWriter(path, t.schema, **options) as w:
        w.add_key_value_metadata(metadata)
        w.write_table(t, row_group_size=group_rows)
    return path


def columns(ids: Sequence[int]) -> list[ColumnValues]:
    return [ColumnValues("customer_id", pa.array(list(ids), pa.int64()), tuple(range(len(ids))))]


def expected(src: Path, ids: Sequence[int], row_groups: Sequence[int] | None = None) -> pa.Table:
    pf = pq.ParquetFile(src)
    parts = []
    for r in range(pf.metadata.num_row_groups):
        t = pf.read_row_group(r)
        if row_groups is None or r in row_groups:
            t = t.filter(pc.invert(pc.is_in(t["customer_id"], value_set=pa.array(list(ids), pa.int64()))))
        parts.append(t)
    return pa.concat_tables(parts)


# -- running both paths ---------------------------------------------------------------------------------------


@dataclass
class Both:
    spliced: RewriteResult
    whole: RewriteResult
    out: Path  # the spliced path's file
    reference: Path  # the whole rewrite's
    used: bool  # whether splice.write wrote `out`


def both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, src: Path, ids: Sequence[int], **kwargs: Any) -> Both:
    """`rewrite` with splicing on (spied) and off (MIN_ROWS out of reach), on the same input."""
    calls: list[int] = []
    real = splice.write

    def spy(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    out, reference = tmp_path / "spliced.parquet", tmp_path / "whole.parquet"
    with monkeypatch.context() as m:
        m.setattr(splice, "write", spy)
        a = rewrite(str(src), lambda: str(out), columns(ids), personal=PERSONAL, salt=SALT, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(splice, "MIN_ROWS", 1 << 62)
        m.setattr(splice, "write", lambda *args: pytest.fail("the whole rewrite spliced"))
        b = rewrite(str(src), lambda: str(reference), columns(ids), personal=PERSONAL, salt=SALT, **kwargs)
    return Both(a, b, out, reference, bool(calls))


def same_result(r: RewriteResult) -> dict[str, Any]:
    """What both paths must report alike (how many bytes were copied, or why not, is each path's own)."""
    return {k: v for k, v in asdict(r).items() if k not in ("bytes_copied", "whole_because")}


def assert_same_as_whole(b: Both, src: Path, ids: Sequence[int], row_groups: Sequence[int] | None = None) -> None:
    """Same result, same rows, same chunk statistics and bloom filters as the whole rewrite; bytes consistent."""
    assert same_result(b.spliced) == same_result(b.whole)
    assert b.spliced.rows_removed > 0
    got, ref = pq.read_table(b.out), pq.read_table(b.reference)
    assert got.equals(ref) and got.equals(expected(src, ids, row_groups))
    a, w = pq.ParquetFile(b.out).metadata, pq.ParquetFile(b.reference).metadata
    assert a.num_row_groups == w.num_row_groups == b.spliced.row_groups_out
    assert a.num_rows == w.num_rows == b.spliced.rows_out
    assert a.metadata == w.metadata, "footer key-value metadata (the contract) kept"
    src_md = pq.ParquetFile(src).metadata
    for r in range(a.num_row_groups):
        ra, rw = a.row_group(r), w.row_group(r)
        assert ra.num_rows == rw.num_rows and ra.sorting_columns == rw.sorting_columns == \
            src_md.row_group(0).sorting_columns
        for i in range(a.num_columns):
            ca, cw = ra.column(i), rw.column(i)
            sa, sw = ca.statistics, cw.statistics
            assert (sa.has_min_max, sa.null_count) == (sw.has_min_max, sw.null_count), ca.path_in_schema
            if sa.has_min_max:
                assert (sa.min, sa.max) == (sw.min, sw.max), (r, ca.path_in_schema)
            assert ca.num_values == cw.num_values and set(ca.encodings) == set(cw.encodings)
            assert ca.has_dictionary_page == cw.has_dictionary_page and ca.compression == cw.compression
            if ca.bloom_filter_offset:
                assert read_bloom(LocalBlob(str(b.out)), ca).bitset == read_bloom(LocalBlob(str(b.reference)),
                                                                                 cw).bitset
    sizes_a, sizes_w = size_statistics(b.out), size_statistics(b.reference)
    assert sizes_a == sizes_w, "unencoded bytes and level histograms recounted"
    report = check_file(LocalBlob(str(b.out)), subject_ids=[str(i) for i in ids])
    assert report.problems == [] and report.bloom_filters == a.num_row_groups
    assert_laid_out(b.out)


# -- reading the bytes ----------------------------------------------------------------------------------------


def footer(data: bytes) -> dict[int, Any]:
    n = int.from_bytes(data[-8:-4], "little")
    return read_struct(data[-8 - n : -8])[0]


def size_statistics(path: Path) -> list[list[dict[int, Any] | None]]:
    meta = footer(path.read_bytes())
    return [[cc[3].get(16) for cc in rg[1]] for rg in meta[4]]


def chunk_pages(data: bytes, md: dict[int, Any]) -> list[Any]:
    start = min(md[f] for f in (9, 11) if f in md)
    return list(walk_pages(data[start : start + md[7]], start))


def assert_laid_out(path: Path) -> None:
    """Every offset-index entry lands on a page header of its size, first rows follow the pages' rows, the
    column index has an entry a page and each entry is its page's, and the footer's counts are the pages'."""
    data = path.read_bytes()
    meta = footer(data)
    table = pq.read_table(path)
    schema = pq.ParquetFile(path).schema
    lengths = {schema.column(i).name: schema.column(i).length or 0 for i in range(len(schema))}
    assert sum(rg[3] for rg in meta[4]) == meta[3] == table.num_rows
    first_row_of_group = 0
    for ordinal, rg in enumerate(meta[4]):
        first_chunk = min(rg[1][0][3][f] for f in (9, 11) if f in rg[1][0][3])
        assert (rg.get(7, ordinal), rg.get(5, first_chunk)) == (ordinal, first_chunk), "row group ordinal and offset"
        rows = rg[3]
        group_uncompressed = group_compressed = 0
        for cc in rg[1]:
            md = cc[3]
            name = md[3][0].decode()
            pages = chunk_pages(data, md)
            data_pages = [p for p in pages if p.kind != DICTIONARY_PAGE]
            assert md[9] == data_pages[0].offset and (11 not in md) == (pages[0].kind != DICTIONARY_PAGE)
            if 11 in md:
                assert md[11] == pages[0].offset
            assert md[7] == sum(p.header_bytes + p.compressed_size for p in pages), f"{name}: compressed size"
            assert md[6] == sum(p.header_bytes + p.uncompressed_size for p in pages), f"{name}: uncompressed size"
            assert md[5] == rows == sum(p.num_values for p in data_pages), f"{name}: values"
            v1 = {3: DATA_PAGE}  # pyarrow counts version-2 data pages as DATA_PAGE there
            stated: Counter[tuple[int, int]] = Counter()
            for e in md[13]:
                stated[(v1.get(e[1], e[1]), e[2])] += e[3]
            assert stated == Counter((v1.get(p.kind, p.kind), p.encoding) for p in pages), f"{name}: encoding stats"
            assert len({p.kind for p in data_pages}) == 1, f"{name}: one data page version"
            group_uncompressed += md[6]
            group_compressed += md[7]
            oi = read_struct(data[cc[4] : cc[4] + cc[5]])[0]
            locations = oi[1]
            assert len(locations) == len(data_pages), f"{name}: an offset-index entry a page"
            first = 0
            for loc, page in zip(locations, data_pages, strict=True):
                assert (loc[1], loc[2], loc[3]) == (page.offset, page.header_bytes + page.compressed_size, first)
                header = read_struct(data[loc[1] : loc[1] + loc[2]])[0]
                assert header[1] in (DATA_PAGE, 3) and header[3] + page.header_bytes == loc[2]
                first += page.num_values
            if 2 in oi:
                assert len(oi[2]) == len(data_pages)
            ci = read_struct(data[cc[6] : cc[6] + cc[7]])[0]
            for fid in (1, 2, 3, 5):
                assert len(ci[fid]) == len(data_pages), f"{name}: column-index list {fid}"
            column = table.column(name).slice(first_row_of_group, rows).combine_chunks()
            physical_type = TYPES[md[1]]
            mins, maxs = [], []
            for k, loc in enumerate(locations):
                end = locations[k + 1][3] if k + 1 < len(locations) else rows
                values = column.slice(loc[3], end - loc[3])
                assert ci[5][k] == values.null_count and ci[1][k] == (values.null_count == len(values))
                if 7 in ci:  # definition-level histogram: [nulls, values] a page
                    assert ci[7][2 * k : 2 * k + 2] == [values.null_count, len(values) - values.null_count]
                if ci[1][k]:
                    continue
                held = physical(values, physical_type, lengths[name]).to_pylist()
                lo, hi = plain_value(ci[2][k], physical_type), plain_value(ci[3][k], physical_type)
                assert (lo, hi) == (min(held), max(held)), f"{name} page {k}: column-index min/max"
                mins.append(lo)
                maxs.append(hi)
            if ci.get(4) == 1:  # ASCENDING
                assert mins == sorted(mins) and maxs == sorted(maxs), f"{name}: declared ascending"
        assert rg[2] == group_uncompressed and rg.get(6, group_compressed) == group_compressed
        first_row_of_group += rows


TYPES = {0: "BOOLEAN", 1: "INT32", 2: "INT64", 4: "FLOAT", 5: "DOUBLE", 6: "BYTE_ARRAY", 7: "FIXED_LEN_BYTE_ARRAY"}


def page_bytes(data: bytes, md: dict[int, Any]) -> list[bytes]:
    return [bytes(data[p.offset : p.offset + p.header_bytes + p.compressed_size]) for p in chunk_pages(data, md)]


def decompressed(path: Path) -> bytes:
    """Every page of the file, decompressed, with the footer and the page indexes (to grep)."""
    data = path.read_bytes()
    meta = footer(data)
    codec = {6: "ZSTD", 0: "UNCOMPRESSED"}
    parts = []
    for rg in meta[4]:
        for cc in rg[1]:
            start = min(cc[3][f] for f in (9, 11) if f in cc[3])
            for p in walk_pages(data[start : start + cc[3][7]]):
                parts.append(bytes(decompress(p, codec[cc[3][4]])))
            parts += [data[cc[4] : cc[4] + cc[5]], data[cc[6] : cc[6] + cc[7]]]
    n = int.from_bytes(data[-8:-4], "little")
    return b"\0".join([*parts, data[-8 - n : -8]])


def removed_rows(src: Path, ids: Sequence[int], column: str = "customer_id") -> dict[int, set[int]]:
    """Per row group of `src`, the rows (within it) the subjects hold."""
    pf = pq.ParquetFile(src)
    out = {}
    for r in range(pf.metadata.num_row_groups):
        c = pf.read_row_group(r, columns=[column])[column].to_pylist()
        out[r] = {i for i, v in enumerate(c) if v in ids}
    return out


def assert_untouched_pages_copied(src: Path, out: Path, ids: Sequence[int], column: str = "customer_id") -> int:
    """Each source page holding no removed row is, byte for byte, a page of the output's chunk (and a row group
    that lost no row is its whole chunks, dictionary included); returns how many pages were copied."""
    removed = removed_rows(src, ids, column)
    s, o = src.read_bytes(), out.read_bytes()
    groups_in, groups_out = footer(s)[4], footer(o)[4]
    surviving = [r for r, rg in enumerate(groups_in) if len(removed[r]) < rg[3]]
    assert len(surviving) == len(groups_out)
    copied = 0
    for r, rg_out in zip(surviving, groups_out, strict=True):
        for cc_in, cc_out in zip(groups_in[r][1], rg_out[1], strict=True):
            have = page_bytes(o, cc_out[3])
            pages_in = page_bytes(s, cc_in[3])
            if not removed[r]:
                assert have == pages_in
            oi = read_struct(s[cc_in[4] : cc_in[4] + cc_in[5]])[0][1]
            bounds = [loc[3] for loc in oi] + [groups_in[r][3]]
            data_in = pages_in[len(pages_in) - len(oi) :]
            kept = [p for k, p in enumerate(data_in) if not any(bounds[k] <= x < bounds[k + 1] for x in removed[r])]
            assert [p for p in have if p in kept] == kept, "untouched pages copied, in order"
            new = [p for p in have if p not in pages_in]
            assert len(new) <= len(data_in) - len(kept), "only the touched pages written again"
            copied += len(kept)
    return copied


# -- 1. the same file as the whole rewrite --------------------------------------------------------------------


@pytest.fixture
def lake_file(tmp_path: Path) -> tuple[Path, list[int]]:
    """Three row groups; S1 in the first and the last, S2 in the first (some among nulls of every kind)."""
    cols = orders()
    place(cols, S1, [3, 450, 1010, 5990])
    place(cols, S2, [451, 1750])
    cols["quantity"][450] = None
    cols["comment"][451] = "note 00451 only-removed secret"  # neither the min nor the max
    cols["quantity"][1750] = 4_242_424  # a value no other row holds (the chunk's max)
    return write(tmp_path / "src.parquet", cols), [S1, S2]


def test_spliced_file_is_the_whole_rewrites_row_for_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        lake_file: tuple[Path, list[int]]) -> None:
    src, ids = lake_file
    b = both(tmp_path, monkeypatch, src, ids)
    assert b.used, "a few pages of many touched: spliced"
    assert b.spliced.rows_removed == 6 and b.spliced.by_subject == {0: 4, 1: 2}
    assert b.spliced.lineage == {"obj-0": [4, 451, 452, 1011], "obj-1": [251], "obj-3": [1491]}
    assert (b.spliced.row_groups_in, b.spliced.row_groups_out) == (3, 3)
    t = pq.read_table(src)
    comments = t.filter(pc.is_in(t["customer_id"], value_set=pa.array(ids, pa.int64())))["comment"]
    assert len(b.spliced.fingerprints) == len(comments) - comments.null_count >= 3, "a removed row's comment each"
    assert_same_as_whole(b, src, ids)


def test_untouched_pages_are_copied_byte_for_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  lake_file: tuple[Path, list[int]]) -> None:
    src, ids = lake_file
    b = both(tmp_path, monkeypatch, src, ids)
    copied = assert_untouched_pages_copied(src, b.out, ids)
    assert copied >= 0.8 * sum(len(r[1]) for r in footer(src.read_bytes())[4]) * (GROUP_ROWS // PAGE_ROWS)


def test_nothing_of_a_removed_row_is_left_in_the_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       lake_file: tuple[Path, list[int]]) -> None:
    src, ids = lake_file
    b = both(tmp_path, monkeypatch, src, ids)
    assert b.used
    t = pq.read_table(src)
    gone = t.filter(pc.is_in(t["customer_id"], value_set=pa.array(ids, pa.int64())))
    needles = [c.encode() for c in gone["comment"].to_pylist() if c is not None]
    needles.append(struct.pack("<i", 4_242_424))
    before, after = decompressed(src), decompressed(b.out)
    assert len(needles) == 5 and all(n in before for n in needles), "the search sees them before"
    assert not [n for n in needles if n in after]
    report = check_file(LocalBlob(str(b.out)), subject_ids=[str(i) for i in ids])
    assert not report.problems and report.column_indexes == 30 and report.dictionary_pages == 9


# -- 3. edge cases --------------------------------------------------------------------------------------------


def test_a_removed_integer_min_or_max_is_recomputed_from_the_page_index(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cols = orders()
    place(cols, S1, [17, 900])
    cols["quantity"][17], cols["quantity"][900] = 1, 9_999  # the first group's min and max (others: 10..499)
    src = write(tmp_path / "src.parquet", cols)
    b = both(tmp_path, monkeypatch, src, [S1])
    assert b.used
    stats = pq.ParquetFile(b.out).metadata.row_group(0).column(6).statistics
    assert stats.min >= 10 and stats.max <= 499, "neither removed value stays the chunk's min or max"
    assert_same_as_whole(b, src, [S1])


def test_a_removed_string_min_or_max_is_never_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cols = orders()
    place(cols, S1, [17, 900])
    cols["comment"][17], cols["comment"][900] = "a first of all", "zz last of all"
    src = write(tmp_path / "src.parquet", cols)
    b = both(tmp_path, monkeypatch, src, [S1])
    stats = pq.ParquetFile(b.out).metadata.row_group(0).column(5).statistics
    assert stats.min.startswith("note ") and stats.max.startswith("note ")
    assert_same_as_whole(b, src, [S1])


def test_a_page_whose_every_row_is_removed_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cols = orders()
    place(cols, S1, range(2400, 2600))  # the third page of the second row group
    src = write(tmp_path / "src.parquet", cols)
    b = both(tmp_path, monkeypatch, src, [S1])
    assert b.used
    meta = footer(b.out.read_bytes())
    for cc in meta[4][1][1]:
        oi = read_struct(b.out.read_bytes()[cc[4] : cc[4] + cc[5]])[0][1]
        assert len(oi) == GROUP_ROWS // PAGE_ROWS - 1
    assert_same_as_whole(b, src, [S1])
    assert_untouched_pages_copied(src, b.out, [S1])


def test_a_row_group_whose_every_row_is_removed_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cols = orders()
    place(cols, S1, range(2000, 4000))
    place(cols, S2, [10, 4500])
    src = write(tmp_path / "src.parquet", cols)
    b = both(tmp_path, monkeypatch, src, [S1, S2])
    assert b.used, "a dropped row group counts as nothing written again"
    assert (b.spliced.row_groups_in, b.spliced.row_groups_out) == (3, 2)
    assert_same_as_whole(b, src, [S1, S2])
    assert_untouched_pages_copied(src, b.out, [S1, S2])
    alone = both(tmp_path, monkeypatch, src, [S1])  # the row group dropped, the others copied whole
    md = pq.ParquetFile(alone.out).metadata
    pages = sum(md.row_group(r).column(i).total_compressed_size for r in range(2) for i in range(md.num_columns))
    assert alone.used and alone.spliced.bytes_copied >= pages, "every page copied"
    assert_same_as_whole(alone, src, [S1])


def test_a_file_whose_every_row_is_removed_is_not_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cols = orders(n=4000)
    place(cols, S1, range(4000))
    src = write(tmp_path / "src.parquet", cols)
    plans: list[splice.Plan] = []
    real = splice.plan
    monkeypatch.setattr(splice, "plan", lambda *args: plans.append(real(*args)) or plans[-1])
    for spliced in (True, False):  # spliced: every row group dropped, no other column read, nothing written
        opened: list[int] = []
        with monkeypatch.context() as m:
            if not spliced:
                m.setattr(splice, "MIN_ROWS", 1 << 62)
            result = rewrite(str(src), lambda opened=opened: opened.append(1) or str(tmp_path / "never.parquet"),
                             columns([S1]))
        assert result.rows_out == 0 and result.rows_removed == 4000 and result.row_groups_out == 0 and not opened
        assert result.row_groups_in == 2 and result.lineage == {"obj-0": list(range(1, 1501)),
                                                               "obj-1": list(range(1, 1501)),
                                                               "obj-2": list(range(1, 1001))}
        assert not (tmp_path / "never.parquet").exists()
    assert [(p.rows, len(p.groups)) for p in plans] == [(0, 0)], "planned by splice once, with nothing to write"


def test_a_dictionary_entry_only_removed_rows_used_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """That column is written again whole (a fresh dictionary of the values left); the others still splice."""
    cols = orders()
    place(cols, S1, [17, 900])
    cols["status"][17] = cols["status"][900] = "disputed"  # an entry of the first group's dictionary, theirs only
    src = write(tmp_path / "src.parquet", cols)
    b = both(tmp_path, monkeypatch, src, [S1])
    assert b.used and b.spliced.bytes_copied > 0
    assert_same_as_whole(b, src, [S1])
    assert b"disputed" not in decompressed(b.out)


def test_a_dictionary_entry_no_row_ever_used_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer given an Arrow dictionary keeps its unused entries (an enum's whole domain, say): the
    spliced file's dictionary holds only values of rows left, as the whole rewrite's does."""
    cols = orders()
    place(cols, S1, [17, 900])
    t = pa.table(cols, schema=SCHEMA)
    domain = pa.array(["placed", "paid", "shipped", "refunded", "never-used"])
    status = pa.DictionaryArray.from_arrays(pc.index_in(t["status"].combine_chunks(), value_set=domain), domain)
    t = t.set_column(t.schema.get_field_index("status"), pa.field("status", status.type, nullable=False), status)
    src = write(tmp_path / "src.parquet", t, group_rows=t.num_rows)  # (a row group that lost no row keeps it)
    assert b"never-used" in decompressed(src)
    b = both(tmp_path, monkeypatch, src, [S1])
    assert b.used and b.spliced.bytes_copied > 0
    assert_same_as_whole(b, src, [S1])
    assert b"never-used" not in decompressed(b.out)


def test_a_dictionary_entry_still_used_elsewhere_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cols = orders()
    place(cols, S1, [17, 900])
    cols["status"][17] = cols["status"][1999] = "disputed"  # also held by a row that stays
    src = write(tmp_path / "src.parquet", cols)
    b = both(tmp_path, monkeypatch, src, [S1])
    assert b.used
    assert_same_as_whole(b, src, [S1])


def test_nulls_among_removed_rows_and_all_null_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cols = orders()
    place(cols, S1, [1000, 1001, 1199, 1500])  # three in the all-null comment page
    cols["quantity"][1000] = cols["quantity"][1500] = cols["score"][1500] = None
    cols["comment"][1500] = None
    src = write(tmp_path / "src.parquet", cols)
    b = both(tmp_path, monkeypatch, src, [S1])
    assert b.used
    ci = pq.ParquetFile(b.out).metadata.row_group(0).column(5)
    assert ci.statistics.null_count == pq.ParquetFile(src).metadata.row_group(0).column(5).statistics.null_count - 4
    assert_same_as_whole(b, src, [S1])


def test_only_the_row_groups_that_lost_rows_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cols = orders()
    place(cols, S1, [2100, 3300])  # the second row group only
    src = write(tmp_path / "src.parquet", cols)
    b = both(tmp_path, monkeypatch, src, [S1])
    assert b.used
    s, o = src.read_bytes(), b.out.read_bytes()
    meta_in, meta_out = footer(s), footer(o)
    for r in (0, 2):
        for cc_in, cc_out in zip(meta_in[4][r][1], meta_out[4][r][1], strict=True):
            assert o[cc_out[6] : cc_out[6] + cc_out[7]] == s[cc_in[6] : cc_in[6] + cc_in[7]], "same column index"
            if 14 in cc_in[3]:
                blo = (cc_in[3][14], cc_in[3][15])
                assert o[cc_out[3][14] : cc_out[3][14] + cc_out[3][15]] == s[blo[0] : blo[0] + blo[1]]
    assert_untouched_pages_copied(src, b.out, [S1])
    assert_same_as_whole(b, src, [S1])


def test_row_groups_outside_the_hint_are_copied_untested(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cols = orders()
    place(cols, S1, [5, 2100, 4100])
    src = write(tmp_path / "src.parquet", cols)
    b = both(tmp_path, monkeypatch, src, [S1], row_groups=[1])
    assert b.used and b.spliced.rows_removed == 1
    assert_same_as_whole(b, src, [S1], row_groups=[1])
    left = pq.read_table(b.out)["customer_id"].to_pylist()
    assert left.count(S1) == 2, "rows in groups the hint leaves out stay (FIND said none there)"


def test_duckdb_reads_the_spliced_file_and_its_filters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       lake_file: tuple[Path, list[int]]) -> None:
    src, ids = lake_file
    b = both(tmp_path, monkeypatch, src, ids)
    assert b.used
    con = duckdb.connect()
    out, ref = str(b.out), str(b.reference)

    def q(sql: str, path: str) -> list[tuple[Any, ...]]:
        return con.execute(sql.format(f"'{path}'")).fetchall()

    for sql in ("SELECT count(*), sum(amount), count(comment), count(quantity), min(order_date) FROM {}",
                "SELECT count(*) FROM {} WHERE customer_id = 5001",
                "SELECT order_id, comment FROM {} WHERE order_date BETWEEN DATE '2024-05-03' AND DATE '2024-05-05' "
                "ORDER BY order_id",
                "SELECT count(*) FROM {} WHERE quantity > 400",
                "SELECT status, count(*) FROM {} GROUP BY status ORDER BY status"):
        assert q(sql, out) == q(sql, ref), sql
    assert q("SELECT count(*) FROM {} WHERE customer_id IN (5001, 5002)", out) == [(0,)]
    survivors = pq.read_table(b.out)["customer_id"].to_pylist()
    for v in [*ids, survivors[0], survivors[2500], survivors[-1]]:
        probe = q(f"SELECT row_group_id, bloom_filter_excludes FROM parquet_bloom_probe({{}}, 'customer_id', {v})",
                  out)
        assert probe == q(f"SELECT row_group_id, bloom_filter_excludes FROM parquet_bloom_probe({{}}, "
                          f"'customer_id', {v})", ref)
        group_rows = np.cumsum([0] + [pq.ParquetFile(b.out).metadata.row_group(r).num_rows for r in range(3)])
        for r, excluded in probe:
            held = v in survivors[group_rows[r] : group_rows[r + 1]]
            assert not (held and excluded), "no false negative"


# -- 4. any removal set ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixed_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    cols = orders(n=4000, seed=7)
    return write(tmp_path_factory.mktemp("splice") / "fixed.parquet", cols), cols["customer_id"]


def test_any_removal_set_leaves_exactly_the_other_rows(tmp_path_factory: pytest.TempPathFactory,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       fixed_file: tuple[Path, list[int]]) -> None:
    src, customers = fixed_file
    present = sorted(set(customers))
    spliced: list[int] = []
    real = splice.write
    monkeypatch.setattr(splice, "write", lambda *args: spliced.append(1) or real(*args))

    @settings(max_examples=25, deadline=None)
    @given(ids=st.lists(st.sampled_from(present), min_size=1, max_size=6, unique=True))
    def removing(ids: list[int]) -> None:
        out = tmp_path_factory.mktemp("out") / "out.parquet"
        result = rewrite(str(src), lambda: str(out), columns(ids), personal=PERSONAL, salt=SALT)
        gone = sum(1 for c in customers if c in ids)
        assert result.rows_removed == gone and result.rows_out == len(customers) - gone
        assert pq.read_table(out).equals(expected(src, ids))
        assert check_file(LocalBlob(str(out)), subject_ids=[str(i) for i in ids]).problems == []
        assert_laid_out(out)

    removing()
    assert spliced, "some removal sets were spliced"


# -- sources and sinks ----------------------------------------------------------------------------------------


def test_paths_buffers_and_python_files_are_all_sources_and_sinks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  lake_file: tuple[Path, list[int]]) -> None:
    """A path (str or Path) is memory-mapped and a path sink opened, as ParquetWriter takes both; bytes in memory
    (FIND's held copy) are spliced into a buffer; a Python file object has no read_at: rewritten whole."""
    src, ids = lake_file
    want = expected(src, ids)
    spliced: list[int] = []
    real = splice.write
    monkeypatch.setattr(splice, "write", lambda *args: spliced.append(1) or real(*args))
    out = tmp_path / "from-path.parquet"
    rewrite(src, lambda: out, columns(ids))
    assert spliced == [1] and pq.read_table(out).equals(want)
    sink = pa.BufferOutputStream()
    rewrite(pa.BufferReader(src.read_bytes()), lambda: sink, columns(ids))
    assert spliced == [1, 1] and sink.getvalue().to_pybytes() == out.read_bytes()
    with src.open("rb") as f:
        rewrite(f, lambda: str(tmp_path / "from-file.parquet"), columns(ids))
    assert spliced == [1, 1] and pq.read_table(tmp_path / "from-file.parquet").equals(want)


@pytest.mark.parametrize("precision", [8, 12, 30], ids=["as-int32", "as-int64", "as-fixed-bytes"])
def test_a_dictionary_of_decimals_never_mixes_up_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         precision: int) -> None:
    """Dictionary entries of a decimal stored as INT64 are its unscaled integers: matched against a page's
    decimals they must not be read as whole units (0.07 taken for 7.00 would point 7.00's rows at 0.07's entry).
    A wider decimal (FIXED_LEN_BYTE_ARRAY) is not spliced: the file is rewritten whole."""
    cols = orders()
    place(cols, S1, [17, 900])
    t = pa.table(cols, schema=SCHEMA)
    discount = [None if i % 13 == 5 else Decimal("0.07") if i < PAGE_ROWS else Decimal("7.00")
                for i in range(t.num_rows)]
    decimal = pa.decimal128(precision, 2)
    t = t.append_column(pa.field("discount", decimal), pa.array(discount, decimal))
    src = write(tmp_path / "src.parquet", t, dictionary=[*DICTIONARY, "discount"])
    chunk = pq.ParquetFile(src).metadata.row_group(0).column(10)
    assert chunk.has_dictionary_page and chunk.physical_type == (
        "INT32" if precision <= 9 else "INT64" if precision <= 18 else "FIXED_LEN_BYTE_ARRAY")
    b = both(tmp_path, monkeypatch, src, [S1])
    assert b.used is (precision <= 18)
    assert_same_as_whole(b, src, [S1])


def test_a_column_index_no_longer_in_order_is_declared_unordered(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cols = orders()
    for i in range(GROUP_ROWS):  # page k of the first group: 10k on its first row, 10k + 100 + j on the others
        k, j = divmod(i, PAGE_ROWS)
        cols["quantity"][i] = 10 * k if j == 0 else 10 * k + 100 + j
    place(cols, S1, [0])  # the first page loses its min (0): 101 is then above the next page's min (10)
    cols["comment"][0] = None  # (its comment was the chunk's min)
    src = write(tmp_path / "src.parquet", cols)

    def order(path: Path) -> int:
        data = path.read_bytes()
        cc = footer(data)[4][0][1][6]
        return int(read_struct(data[cc[6] : cc[6] + cc[7]])[0][4])

    assert order(src) == 1, "ASCENDING before"
    b = both(tmp_path, monkeypatch, src, [S1])
    assert b.used and order(b.out) == 0, "UNORDERED after"
    assert_same_as_whole(b, src, [S1])


def test_a_file_compaction_stitched_from_threads_is_spliced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cols = orders()
    place(cols, S1, [3, 450, 2222, 5990])
    src = write(tmp_path / "src.parquet", cols, stitched=True)
    single = write(tmp_path / "single.parquet", cols)
    assert pq.read_table(src).equals(pq.read_table(single))
    b = both(tmp_path, monkeypatch, src, [S1])
    assert b.used
    assert_same_as_whole(b, src, [S1])
    assert_untouched_pages_copied(src, b.out, [S1])


@pytest.mark.parametrize("codec", ["snappy", "gzip", "none", "lz4"])
def test_every_codec_a_contract_may_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: str) -> None:
    """snappy, gzip and none (the contracts' other choices); lz4 (LZ4_RAW) too, whose pages were once read as
    the LZ4 frame format (an OSError out of rewrite, then out of structure.py's checks)."""
    cols = orders()
    place(cols, S1, [3, 450, 2222, 5990])
    src = write(tmp_path / "src.parquet", cols, compression=codec, compression_level=None)
    b = both(tmp_path, monkeypatch, src, [S1])
    assert b.used
    assert_same_as_whole(b, src, [S1])
    assert_untouched_pages_copied(src, b.out, [S1])


def test_version_2_data_pages_are_spliced_as_version_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cols = orders()
    place(cols, S1, [3, 450, 1010, 5990, *range(2400, 2600)])  # a page emptied too
    src = write(tmp_path / "src.parquet", cols, data_page_version="2.0")
    b = both(tmp_path, monkeypatch, src, [S1])
    assert b.used
    data = b.out.read_bytes()
    kinds = {p.kind for rg in footer(data)[4] for cc in rg[1] for p in chunk_pages(data, cc[3])}
    assert kinds == {DICTIONARY_PAGE, 3}
    assert_same_as_whole(b, src, [S1])
    assert_untouched_pages_copied(src, b.out, [S1])


@pytest.mark.parametrize("with_bool", [False, True], ids=["int32-float32-timestamp", "and-a-boolean"])
def test_every_contract_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_bool: bool) -> None:
    """int32, float32, timestamp and boolean columns (with nulls; a removed row holding the chunk's min of each,
    and the only true of the first row group: its max becomes false) are spliced."""
    cols = orders()
    place(cols, S1, [17, 900, 4100])
    rnd = random.Random(3)
    n = len(cols["order_id"])
    extra = {
        "units": pa.array([None if i % 9 == 0 else rnd.randrange(5, 900) for i in range(n)], pa.int32()),
        "weight": pa.array([None if i % 7 == 0 else rnd.uniform(1, 50) for i in range(n)], pa.float32()),
        "shipped_at": pa.array([None if i % 5 == 0 else dt.datetime(2024, 5, 1, 12) + dt.timedelta(seconds=i)
                                for i in range(n)], pa.timestamp("us")),
    }
    extra["units"] = pc.if_else(pc.equal(pa.array(range(n)), 17), 1, extra["units"])
    extra["weight"] = pc.if_else(pc.equal(pa.array(range(n)), 900), pa.scalar(0.5, pa.float32()), extra["weight"])
    extra["shipped_at"] = pc.if_else(pc.equal(pa.array(range(n)), 17), pa.scalar(dt.datetime(2024, 4, 1),
                                                                                  pa.timestamp("us")),
                                     extra["shipped_at"])
    if with_bool:
        extra["gift"] = pa.array([None if i % 11 == 0 else (i == 17 if i < GROUP_ROWS else i % 3 == 0)
                                  for i in range(n)], pa.bool_())
    t = pa.table(cols, schema=SCHEMA)
    for name, values in extra.items():
        t = t.append_column(name, values)
    src = write(tmp_path / "src.parquet", t)
    b = both(tmp_path, monkeypatch, src, [S1])
    assert b.used
    if with_bool:
        stats = [pq.ParquetFile(p).metadata.row_group(0).column(13).statistics for p in (src, b.out)]
        assert [(st.min, st.max) for st in stats] == [(False, True), (False, False)]
    assert_same_as_whole(b, src, [S1])


def test_a_dictionary_that_fell_back_to_plain_pages_is_rewritten_correctly(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cols = orders()
    place(cols, S1, [17, 1900])  # a page still dictionary-encoded, and one past the fallback
    src = write(tmp_path / "src.parquet", cols, dictionary=[*DICTIONARY, "comment"], dictionary_pagesize_limit=4000)
    encodings = {e for e in pq.ParquetFile(src).metadata.row_group(0).column(5).encodings}
    assert {"RLE_DICTIONARY", "PLAIN"} <= encodings, "the comment chunk mixes dictionary and plain pages"
    b = both(tmp_path, monkeypatch, src, [S1])
    assert_same_as_whole(b, src, [S1])


def test_unused_dictionary_entries_in_a_row_group_that_loses_no_row(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A row group copied as it is would keep its dictionary's unused entries (an enum's domain, or values a
    writer shared across row groups): the file is rewritten whole, every row group's dictionaries re-encoded
    from its own rows, and the bytes hold the unused value nowhere."""
    cols = orders()
    place(cols, S1, [17, 900])  # both in the first row group
    t = pa.table(cols, schema=SCHEMA)
    domain = pa.array(["placed", "paid", "shipped", "refunded", "never-used"])
    status = pa.DictionaryArray.from_arrays(pc.index_in(t["status"].combine_chunks(), value_set=domain), domain)
    t = t.set_column(t.schema.get_field_index("status"), pa.field("status", status.type, nullable=False), status)
    src = write(tmp_path / "src.parquet", t)
    assert pq.ParquetFile(src).metadata.num_row_groups > 1 and b"never-used" in decompressed(src)
    b = both(tmp_path, monkeypatch, src, [S1])
    assert not b.used and "a dictionary entry no row uses" in b.spliced.whole_because
    assert_same_as_whole(b, src, [S1])
    assert b"never-used" not in decompressed(b.out)


def test_a_dictionary_encoded_subject_column_is_written_again_whole(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The subject's id is an entry of the chunk's dictionary that no row left uses: that column is written
    again whole, its bloom filter with it; the other columns splice."""
    cols = orders()
    place(cols, S1, [17, 900])
    src = write(tmp_path / "src.parquet", cols, dictionary=[*DICTIONARY, "customer_id"])
    assert pq.ParquetFile(src).metadata.row_group(0).column(1).has_dictionary_page
    b = both(tmp_path, monkeypatch, src, [S1])
    assert b.used and b.spliced.bytes_copied > 0
    assert_same_as_whole(b, src, [S1])


# -- 5. the service path on S3 --------------------------------------------------------------------------------


class _Memo(Checkpoint):
    def __init__(self) -> None:
        self.data: dict[str, Any] | None = None

    def load(self) -> dict[str, Any] | None:
        return self.data

    def save(self, data: dict[str, Any]) -> None:
        self.data = data


@pytest.mark.parametrize("held", [True, False], ids=["held-in-memory", "streamed"])
def test_a_lake_file_is_spliced_through_s3(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           held: bool) -> None:
    """A partition's file written by the transform's writer (with small pages) is erased by the lake task's own
    path: FIND's held bytes into a buffer, or (no file fetched whole) S3 input file into an S3 output stream."""
    if not held:
        monkeypatch.setattr(find, "WHOLE_FILE_BYTES", 0)
    rnd = random.Random(11)
    customers = [rnd.randrange(1, 10**6) for _ in range(6000)]  # no repeats to speak of: no dictionary
    for r in (5, 2500, 5999):
        customers[r] = S1
    customers[3100] = S2
    t = orders_table(customers).sort_by([("order_date", "ascending"), ("order_id", "ascending")])
    options = {**transform_options(t, ORDERS), "max_rows_per_page": PAGE_ROWS, "write_batch_size": PAGE_ROWS // 2}
    assert "customer_id" not in options["use_dictionary"] and options["bloom_filter_options"]
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, t.schema, **options) as writer:
        writer.add_key_value_metadata(contract_metadata(ORDERS))
        writer.write_table(t, row_group_size=GROUP_ROWS)
    data = sink.getvalue().to_pybytes()
    ref = PartitionRef("orders", {"order_year": "2024", "order_month": "05"})
    w = world
    w.committer.append(ref, [w.committer.stage(ref, "seed:big", "big.parquet", data, t.num_rows)], "seed:big")
    [part] = lake.glue_partitions(w.cfg.database, ORDERS)
    before = w.lake_rows("orders")
    spliced: list[int] = []
    real = splice.write
    monkeypatch.setattr(splice, "write", lambda *args: spliced.append(1) or real(*args))
    outcome = lake.erase_partition(w.committer, part, columns([S1, S2]), op_prefix="erasure:splice-test",
                                   checkpoint=_Memo(), deadline=time.time() + 300, personal=[], salt=SALT)
    assert spliced == [1], "the file was spliced"
    assert outcome["rows_removed"] == 4 and outcome["by_subject"] == {"0": 3, "1": 1}
    assert {oid: sorted(lines) for oid, lines in outcome["lineage"].items()} == {"obj": [6, 2501, 3101, 6000]}
    [f] = outcome["files"]
    assert (f["rows_in"], f["rows_out"], f["row_groups_in"], f["row_groups_out"]) == (6000, 5996, 3, 3)
    gone = Counter(row for row in before.elements() if row[1] in (S1, S2))
    assert w.lake_rows("orders") == before - gone and sum(gone.values()) == 4
    s3 = aws.client("s3")
    body = s3.get_object(Bucket=w.cfg.lake_bucket, Key=f["new_key"])["Body"].read()
    assert len(body) == f["bytes_out"]
    report = check_file(S3Blob(w.cfg.lake_bucket, f["new_key"], len(body)), subject_ids=[str(S1), str(S2)])
    assert report.problems == [] and report.bloom_filters == 3
    out = tmp_path / "out.parquet"
    out.write_bytes(body)
    assert_laid_out(out)
    src = tmp_path / "src.parquet"
    src.write_bytes(data)
    assert pq.read_table(out).equals(expected(src, [S1, S2]))
    assert_untouched_pages_copied(src, out, [S1, S2])
