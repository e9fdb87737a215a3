"""A rewritten file holds nothing of an erased row in its bytes: dictionary pages, statistics, page
index, bloom filters, footer, or anywhere in its uncompressed pages.

Every check reads the bytes, and is first run on the file before erasure, where it must find the
erased values (so a check that cannot see anything cannot pass by accident).
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from contracts.arrow import lake_schema
from contracts.datasets import load_datasets
from services.erasure.blobs import LocalBlob
from services.erasure.bloom import bloom_bitset, plain_bytes, xxh64, xxh64_fixed
from services.erasure.find import read_bloom
from services.erasure.pages import (
    chunk_span,
    column_index_locations,
    decompress,
    footer_bytes,
    plain_value,
    read_chunk,
    read_column_index,
    thrift_codec,
    walk_pages,
)
from services.erasure.rewrite import rewrite
from services.erasure.structure import check_file
from services.erasure.subjects import Subjects
from services.transform.parquet import write_partition

CUSTOMERS = load_datasets()["customers"]
SALT = b"bytes-test-salt-0123456789"
ERASED = [1, 42]  # 1 is the smallest id: the statistics must move
#: values only the erased rows hold; "Zed …" sorts last, so it is the name column's max before erasure
ONLY_ERASED = {"Zed Erasedperson": "name", "Aaron Erasedtoo": "name", "u42@erased.example": "email",
               "+440000000042": "phone"}


def customers(n: int = 3000) -> pa.Table:
    rnd = random.Random(4)
    ids = list(range(1, n + 1))
    names = [f"Common Name {i % 25}" for i in ids]  # repeats: the writer dictionary-encodes `name`
    names[41], names[0] = "Zed Erasedperson", "Aaron Erasedtoo"
    emails = [f"u{i}@example.com" for i in ids]
    emails[41] = "u42@erased.example"
    phones = [f"+4420{i:07d}" for i in ids]
    phones[41] = "+440000000042"
    return pa.table({
        "customer_id": ids, "name": names, "email": emails, "phone": phones,
        "country": [rnd.choice(["GB", "FR", "DE"]) for _ in ids], "signup_date": [dt.date(2023, 1, 15)] * n,
        "_source_object_id": ["obj"] * n, "_source_line": list(range(1, n + 1)),
    }).cast(lake_schema(CUSTOMERS))


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    src, out = tmp_path / "src.parquet", tmp_path / "out.parquet"
    write_partition(customers(), str(src), CUSTOMERS)
    rewrite(str(src), lambda: str(out), Subjects.of([str(i) for i in ERASED], SALT).columns(CUSTOMERS))
    return src, out


def dictionary_values(path: Path) -> set[bytes]:
    """Every value of every dictionary page, decoded from the page bytes."""
    pf = pq.ParquetFile(path)
    data = path.read_bytes()
    out: set[bytes] = set()
    for r in range(pf.metadata.num_row_groups):
        for i in range(pf.metadata.num_columns):
            chunk = pf.metadata.row_group(r).column(i)
            start, length = chunk_span(chunk)
            for d in read_chunk(data[start : start + length], thrift_codec(chunk), chunk.physical_type).dictionaries:
                out |= {v if isinstance(v, bytes) else str(v).encode() for v in d}
    return out


def uncompressed_pages(path: Path) -> bytes:
    """Every page of every column chunk, decompressed, concatenated (to grep)."""
    pf = pq.ParquetFile(path)
    data = path.read_bytes()
    parts = []
    for r in range(pf.metadata.num_row_groups):
        for i in range(pf.metadata.num_columns):
            chunk = pf.metadata.row_group(r).column(i)
            start, length = chunk_span(chunk)
            parts += [decompress(p, thrift_codec(chunk)) for p in walk_pages(data[start : start + length])]
    return b"\0".join(parts)


def test_the_writer_dictionary_encodes_the_repeated_personal_column(files: tuple[Path, Path]) -> None:
    src, out = files
    for path in (src, out):
        chunk = pq.ParquetFile(path).metadata.row_group(0).column(1)
        assert chunk.path_in_schema == "name" and chunk.has_dictionary_page


def test_dictionary_pages_hold_only_values_of_surviving_rows(files: tuple[Path, Path]) -> None:
    src, out = files
    names = [v.encode() for v, c in ONLY_ERASED.items() if c == "name"]
    assert set(names) <= dictionary_values(src), "the page reader sees the names before erasure"
    assert not set(names) & dictionary_values(out)
    # the same through pyarrow's own dictionary reader (no decoding of ours)
    for path, expect in ((src, True), (out, False)):
        t = pq.ParquetFile(path, read_dictionary=["name"]).read_row_group(0, columns=["name"])
        held = set(t["name"].chunk(0).dictionary.to_pylist())
        assert ("Zed Erasedperson" in held) is expect


def test_uncompressed_pages_and_footer_hold_no_erased_value(files: tuple[Path, Path]) -> None:
    src, out = files
    before, after = uncompressed_pages(src), uncompressed_pages(out)
    for value in ONLY_ERASED:
        assert value.encode() in before, f"{value!r} is greppable before erasure"
        assert value.encode() not in after, f"{value!r} survives in a page of the rewritten file"
    footer = footer_bytes(out.read_bytes())
    assert not any(v.encode() in footer for v in ONLY_ERASED)


def test_statistics_and_page_index_come_from_surviving_rows(files: tuple[Path, Path]) -> None:
    src, out = files
    t = pq.read_table(out)
    md = pq.ParquetFile(out).metadata
    stats = {md.row_group(0).column(i).path_in_schema: md.row_group(0).column(i).statistics
             for i in range(md.num_columns)}
    assert stats["customer_id"].min == pc.min(t["customer_id"]).as_py() == 2
    assert pq.ParquetFile(src).metadata.row_group(0).column(1).statistics.max == "Zed Erasedperson"
    assert stats["name"].max == pc.max(t["name"]).as_py() != "Zed Erasedperson"
    assert stats["name"].min != "Aaron Erasedtoo"
    data = out.read_bytes()
    locations = column_index_locations(footer_bytes(data))
    erased = {s.encode() for s in ONLY_ERASED} | set(ERASED)
    seen = 0
    for i in range(md.num_columns):
        chunk = md.row_group(0).column(i)
        loc = locations[0][i]
        assert loc, f"{chunk.path_in_schema} has a page index"
        ci = read_column_index(data[loc[0] : loc[0] + loc[1]])
        values = [plain_value(raw, chunk.physical_type) for raw in ci.mins + ci.maxs]
        if chunk.path_in_schema in CUSTOMERS.personal_columns:
            assert not erased & set(values), chunk.path_in_schema
            seen += len(values)
    assert seen >= 8


def test_bloom_filter_is_the_one_the_surviving_ids_make(files: tuple[Path, Path]) -> None:
    src, out = files
    for path, ids in ((src, range(1, 3001)), (out, [i for i in range(1, 3001) if i not in ERASED])):
        chunk = pq.ParquetFile(path).metadata.row_group(0).column(0)
        found = read_bloom(LocalBlob(str(path)), chunk)
        assert found is not None
        assert bloom_bitset(len(found.bitset), pa.array(list(ids), pa.int64()), "INT64") == found.bitset
    bits = read_bloom(LocalBlob(str(out)), pq.ParquetFile(out).metadata.row_group(0).column(0)).bitset
    assert bloom_bitset(len(bits), pa.array(range(1, 3001), pa.int64()), "INT64") != bits, \
        "a filter still holding the erased ids would differ"


def test_vectorised_xxhash_matches_the_reference() -> None:
    v = np.array([0, 1, -5, 2**40, 42, -(2**63)], dtype=np.int64)
    assert list(xxh64_fixed(v, 8)) == [xxh64(plain_bytes(int(x), "INT64")) for x in v]
    w = np.array([0, 7, -3, 2**31 - 1], dtype=np.int32)
    assert list(xxh64_fixed(w, 4)) == [xxh64(plain_bytes(int(x), "INT32")) for x in w]


def test_structural_check_passes_the_rewrite_and_catches_a_kept_dictionary(tmp_path: Path,
                                                                            files: tuple[Path, Path]) -> None:
    _, out = files
    report = check_file(LocalBlob(str(out)), subject_ids=[str(i) for i in ERASED])
    assert report.problems == []
    assert report.dictionary_pages >= 3 and report.bloom_filters == 1 and report.column_indexes == 8
    # the old behaviour: a filtered dictionary array written back keeps every dictionary entry
    t = pq.ParquetFile(files[0], read_dictionary=["name"]).read()
    kept = t.filter(pc.invert(pc.is_in(t["customer_id"], value_set=pa.array(ERASED, pa.int64()))))
    bad = tmp_path / "bad.parquet"
    pq.write_table(kept, bad, use_dictionary=["name"], write_page_index=True, store_schema=False)
    report = check_file(LocalBlob(str(bad)))
    assert any("name: dictionary page holds 2 value(s)" in p for p in report.problems), report.problems


def test_one_lookup_reports_each_value_no_survivor_holds_by_where_it_was_found() -> None:
    from services.erasure.pages import Stats
    from services.erasure.structure import INDEX_TRUNCATE, _Values

    long = b"x" * (INDEX_TRUNCATE + 10)
    survivors = pa.array([b"alice", b"bob", long], pa.binary())
    values = _Values("BYTE_ARRAY")
    for v in (b"alice", b"carol"):
        values.add("dictionary", 0, v)
    values.add_stats("statistics", 3, Stats(b"alice", b"zed"))
    values.add_stats("index", 0, Stats(b"bob", long[: INDEX_TRUNCATE - 1]), truncated_ok=True)  # a truncated max
    values.add_stats("index", 1, Stats(b"eve", b"bob"), truncated_ok=True)
    values.add_stats("statistics", 4, Stats(long[: INDEX_TRUNCATE - 1], b"bob"))  # truncation is not allowed there
    assert values.unused(survivors) == [("dictionary", 0), ("statistics", 3), ("index", 1), ("statistics", 4)]
