"""structure.check_file on files holding nothing but surviving values: it must report nothing, whatever the
contract type, codec and page layout, and it must never raise on a valid Parquet file.

Verification refuses an erasure whose rewritten file shows a problem, so a false alarm here fails every erasure
on a dataset shaped like it: a float column whose least value was 0.0 did (the spec has writers store such a min
as -0.0), as did any LZ4 file (its pages were decompressed as the LZ4 frame format) and a fixed_size_binary column
(an exception). The properties write every contract type with nulls, both zeros, NaN, infinities, empty and long
strings and repeated values, in every codec, both data page versions, with and without dictionaries, encodings and
bloom filters, in small pages and row groups; first untouched, then without some rows through rewrite.py (the
whole rewrite, and splice.py's page copy where it accepts the file).
"""

from __future__ import annotations

import datetime as dt
import math
import struct
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import thrift
from contracts.arrow import arrow_type
from contracts.datasets import SIMPLE_TYPES
from contracts.parquet_codecs import THRIFT_NAMES
from services.erasure import rewrite as rewrite_module
from services.erasure import splice, structure
from services.erasure.blobs import LocalBlob
from services.erasure.pages import (
    DATA_PAGE,
    Page,
    PageFormatError,
    Stats,
    decompress,
    read_struct,
    thrift_codec,
)
from services.erasure.rewrite import rewrite
from services.erasure.structure import _Values, check_file
from services.erasure.subjects import ColumnValues

NAN, INF = math.nan, math.inf
#: contract type -> column name; the decimals as the platform stores them (INT32, INT64) and one that needs
#: FIXED_LEN_BYTE_ARRAY whatever the writer is told
CONTRACT_TYPES = {**{t: f"c_{t}" for t in sorted(SIMPLE_TYPES)},
                  "decimal(5,1)": "c_dec5", "decimal(12,2)": "c_dec12", "decimal(38,4)": "c_dec38"}
CODEC_NAMES = ["none", "snappy", "zstd", "gzip", "brotli", "lz4"]
#: what each column may be encoded with when it is not dictionary-encoded (as transform chooses them)
SPECIAL_ENCODINGS = {"c_int32": "DELTA_BINARY_PACKED", "c_int64": "DELTA_BINARY_PACKED",
                     "c_date": "DELTA_BINARY_PACKED", "c_timestamp": "DELTA_BINARY_PACKED",
                     "c_string": "DELTA_LENGTH_BYTE_ARRAY", "c_float32": "BYTE_STREAM_SPLIT",
                     "c_float64": "BYTE_STREAM_SPLIT"}
LONG = "x" * 70  # longer than the column index keeps (64 bytes): its max is truncated


def _decimals(precision: int, scale: int) -> st.SearchStrategy[Decimal]:
    """Values of every magnitude a decimal(p,s) holds, made from their unscaled integer by a string (exact:
    Decimal arithmetic rounds to 28 digits, a decimal(38,s) holds 38)."""
    top = 10**precision - 1
    unscaled = st.sampled_from([0, 1, -1, top, -top]) | st.integers(-top, top)
    return unscaled.map(lambda u: Decimal(f"{u}E-{scale}"))


#: per contract type: a few values that repeat (dictionaries, equal min and max) and edge values, or any value
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "string": st.sampled_from(["", "a", "b", "é", LONG, LONG + "y"]) | st.text(max_size=4),
    "int32": st.sampled_from([0, -1, 1, 2**31 - 1, -(2**31)]) | st.integers(-(2**31), 2**31 - 1),
    "int64": st.sampled_from([0, -1, 1, 2**63 - 1, -(2**63)]) | st.integers(-(2**63), 2**63 - 1),
    "float32": st.sampled_from([0.0, -0.0, NAN, INF, -INF, 1.5, -2.5]) | st.floats(width=32),
    "float64": st.sampled_from([0.0, -0.0, NAN, INF, -INF, 1.5, -2.5, 5e-324]) | st.floats(),
    "bool": st.booleans(),
    "date": st.sampled_from([dt.date(1970, 1, 1), dt.date(2024, 2, 29)]) | st.dates(),
    "timestamp": st.sampled_from([dt.datetime(1970, 1, 1), dt.datetime(2024, 5, 1, 12, 0, 0, 1)])
    | st.datetimes(dt.datetime(1677, 9, 22), dt.datetime(2262, 4, 11)),
    "decimal(5,1)": _decimals(5, 1),
    "decimal(12,2)": _decimals(12, 2),
    "decimal(38,4)": _decimals(38, 4),
}


@st.composite
def tables(draw: st.DrawFn, types: list[str]) -> pa.Table:
    """An `id` column (0..n-1: rows to remove are named by it) and one column of each of `types`."""
    n = draw(st.integers(1, 60))
    columns: dict[str, pa.Array] = {"id": pa.array(range(n), pa.int64())}
    for t in types:
        nulls = draw(st.sampled_from([0.0, 0.3, 1.0]))  # none, some, all (an all-null chunk has no min/max)
        values = draw(st.lists(st.none() if nulls == 1.0 else st.one_of(VALUES[t], st.none()) if nulls else VALUES[t],
                               min_size=n, max_size=n))
        columns[CONTRACT_TYPES[t]] = pa.array(values, arrow_type(t))
    return pa.table(columns)


@st.composite
def layouts(draw: st.DrawFn, names: list[str]) -> dict[str, Any]:
    """pq.write_table keyword arguments: the platform's always-on structures, every other choice drawn."""
    dictionary = draw(st.booleans())
    options: dict[str, Any] = {
        "compression": draw(st.sampled_from(CODEC_NAMES)),
        "data_page_version": draw(st.sampled_from(["1.0", "2.0"])),
        "use_dictionary": dictionary,
        "write_statistics": True,
        "write_page_index": True,
        "data_page_size": draw(st.sampled_from([64, 256, 4096])),
        "write_batch_size": draw(st.sampled_from([3, 16, 1024])),  # a page can only close between batches
        "row_group_size": draw(st.sampled_from([7, 25, 1000])),
        "store_decimal_as_integer": draw(st.booleans()),
        "store_schema": draw(st.booleans()),
    }
    if not dictionary and draw(st.booleans()):
        options["column_encoding"] = {n: e for n, e in SPECIAL_ENCODINGS.items() if n in names}
    if draw(st.booleans()):  # bloom filters: every column pyarrow builds one for (not booleans)
        options["bloom_filter_options"] = {n: {"ndv": 16, "fpp": 0.1} for n in names if n != "c_bool"}
    return options


@st.composite
def files(draw: st.DrawFn) -> tuple[pa.Table, dict[str, Any]]:
    types = draw(st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=4, unique=True))
    t = draw(tables(types))
    return t, draw(layouts(t.column_names))


def _write(t: pa.Table, path: Path, options: dict[str, Any]) -> None:
    options = dict(options)
    row_group_size = options.pop("row_group_size")
    with pq.ParquetWriter(path, t.schema, **options) as w:
        w.write_table(t, row_group_size=row_group_size)


def _splice_failed(message: str, *args: Any) -> None:
    """A splice that raised falls back to the whole rewrite (still right): here it fails the test instead."""
    pytest.fail("splice failed: " + message % args)


def _rows(t: pa.Table) -> list[dict[str, Any]]:
    """The table's rows, NaN made comparable (NaN != NaN)."""
    return [{k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
            for row in t.to_pylist()]


def _assert_clean(path: Path, t: pa.Table) -> None:
    report = check_file(LocalBlob(str(path)))
    assert report.problems == []
    md = pq.read_metadata(path)
    assert report.column_chunks == md.num_row_groups * t.num_columns
    assert report.pages >= report.column_chunks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=files())
def test_a_file_whose_every_value_survives_shows_no_problem(drawn: tuple[pa.Table, dict[str, Any]]) -> None:
    t, options = drawn
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f.parquet"
        _write(t, path, options)
        _assert_clean(path, t)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=files(), data=st.data(), spliced=st.booleans())
def test_a_file_rewritten_without_some_rows_shows_no_problem(drawn: tuple[pa.Table, dict[str, Any]],
                                                            data: st.DataObject, spliced: bool) -> None:
    """Through rewrite.py as erasure runs it: the whole rewrite, or (`spliced`) splice.py offered every row group
    whatever its size and share of rewritten bytes (it may still decline a file: the whole rewrite then)."""
    t, options = drawn
    removed = data.draw(st.lists(st.integers(0, t.num_rows - 1), min_size=1, max_size=max(1, t.num_rows // 3),
                                 unique=True))
    subjects = [ColumnValues("id", pa.array(removed, pa.int64()), tuple(range(len(removed))))]
    with (tempfile.TemporaryDirectory() as d, mock.patch.object(splice, "MIN_ROWS", 1 if spliced else splice.MIN_ROWS),
          mock.patch.object(splice, "MAX_REWRITTEN_SHARE", 1.0 if spliced else splice.MAX_REWRITTEN_SHARE),
          mock.patch.object(rewrite_module._log, "warning", _splice_failed)):
        src, out = Path(d) / "src.parquet", Path(d) / "out.parquet"
        _write(t, src, options)
        result = rewrite(str(src), lambda: str(out), subjects)
        assert result.rows_removed == len(removed)
        kept = t.filter(pc.invert(pc.is_in(t["id"], value_set=pa.array(removed, pa.int64()))))
        if not kept.num_rows:
            assert not out.exists()
            return
        assert _rows(pq.read_table(out).cast(t.schema)) == _rows(kept)
        _assert_clean(out, t)


# -- floats: the min/max the spec rewrites --------------------------------------------------------------------


def _stats(lo: float, hi: float, fmt: str = "<d") -> Stats:
    return Stats(struct.pack(fmt, lo), struct.pack(fmt, hi))


@pytest.mark.parametrize("arrow", [pa.float32(), pa.float64()], ids=str)
@pytest.mark.parametrize("values", [[0.0, 1.5, 2.5], [-1.0, -0.0], [0.0, -0.0, 3.0], [NAN, 0.0, None]],
                         ids=["min+0", "max-0", "both-zeros", "nan-zero-null"])
def test_a_float_column_with_a_zero_bound_passes(tmp_path: Path, arrow: pa.DataType, values: list) -> None:
    """The spec has a min of zero written -0.0 and a max of zero +0.0, whichever zero the rows hold: comparing
    the bytes as they are refused every float column whose least value was 0.0."""
    path = tmp_path / "f.parquet"
    for dictionary in (True, False):
        pq.write_table(pa.table({"f": pa.array(values, arrow)}), path, use_dictionary=dictionary,
                       write_page_index=True, bloom_filter_options={"f": {"ndv": 8, "fpp": 0.1}})
        report = check_file(LocalBlob(str(path)))
        assert report.problems == []
        assert report.statistics_checked and report.column_indexes == 1 and report.bloom_filters == 1


def test_a_zero_bound_stands_for_a_surviving_zero_only_as_the_spec_writes_it() -> None:
    pos, neg = [1.0, 0.0, 2.0], [-1.0, -0.0]
    cases = [  # (survivors, min, max, values no survivor holds)
        (pos, -0.0, 2.0, 0),  # the spec's min of zero
        (neg, -1.0, 0.0, 0),  # the spec's max of zero
        (pos, 0.0, 2.0, 0),  # the zero itself
        ([1.0, 2.0], -0.0, 2.0, 1),  # no zero survives: -0.0 is an erased row's
        ([1.0, 2.0], 1.0, 0.0, 1),
        ([-1.0, 0.0], -1.0, -0.0, 1),  # a max of -0.0 is no spec's rewrite
        ([-0.0, 1.0], 0.0, 1.0, 1),  # nor a min of +0.0
        ([NAN, 1.0], NAN, 1.0, 0),  # NaN is a value, compared bit for bit
        ([1.0, 2.0], 1.0, NAN, 1),
    ]
    for survivors, lo, hi, unused in cases:
        for physical_type, fmt in (("DOUBLE", "<d"), ("FLOAT", "<f")):
            values = _Values(physical_type)
            values.add_stats("statistics", 0, _stats(lo, hi, fmt))
            found = values.unused(pa.array(survivors, pa.float64()))
            assert len(found) == unused, (survivors, lo, hi, physical_type)
    values = _Values("DOUBLE")
    values.add("dictionary", 0, -0.0)  # a dictionary entry is a row's value: no sign is rewritten
    assert values.unused(pa.array([0.0, 1.0])) == [("dictionary", 0)]


def test_a_half_float_column_is_compared_as_floats_are(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"h": pa.array([0.0, 1.5, None], pa.float16())}), path, write_page_index=True)
    assert pq.read_metadata(path).row_group(0).column(0).statistics.min == struct.pack("<e", -0.0)
    assert check_file(LocalBlob(str(path))).problems == []
    kept = _Values("FIXED_LEN_BYTE_ARRAY", float16=True)
    kept.add_stats("statistics", 0, Stats(struct.pack("<e", -0.0), struct.pack("<e", 1.5)))
    assert kept.unused(pa.array([struct.pack("<e", 1.5)], pa.binary())) == [("statistics", 0)]


# -- codecs ---------------------------------------------------------------------------------------------------


def _recodec(path: Path, codec: int) -> Path:
    """A copy of the file whose footer names another codec for every chunk (the pages unchanged)."""
    data = path.read_bytes()
    n = int.from_bytes(data[-8:-4], "little")
    meta, _ = thrift.decode(data[-8 - n : -8])
    for rg in thrift.field(meta, 4):
        for cc in thrift.field(rg, 1):
            column = cc[3][1]
            column[4] = (column[4][0], codec)
    footer = thrift.encode(meta)
    out = path.with_suffix(f".codec{codec}.parquet")
    out.write_bytes(data[: -8 - n] + footer + len(footer).to_bytes(4, "little") + b"PAR1")
    return out


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_lz4_pages_are_read_by_the_codec_the_footer_names(tmp_path: Path, version: str) -> None:
    """pyarrow writes LZ4_RAW for "lz4" and calls it "LZ4" in its metadata, and pa.Codec("lz4") is the LZ4 frame
    format: every LZ4 file made check_file raise (ERROR_frameType_unknown). Codec LZ4 proper (Hadoop-framed, or
    raw blocks as parquet-cpp once wrote under it: pyarrow reads both) is read too."""
    t = pa.table({"s": [f"v{i % 9}" for i in range(3000)], "n": pa.array([i / 3 for i in range(3000)])})
    path = tmp_path / "f.parquet"
    pq.write_table(t, path, compression="lz4", data_page_version=version, data_page_size=2048, write_page_index=True,
                   use_dictionary=["s"])
    chunk = pq.read_metadata(path).row_group(0).column(0)
    assert chunk.compression == "LZ4" and thrift_codec(chunk) == "LZ4_RAW"
    data = path.read_bytes()
    footer = read_struct(data[-8 - int.from_bytes(data[-8:-4], "little") : -8])[0]
    assert THRIFT_NAMES[footer[4][0][1][0][3][4]] == "LZ4_RAW"
    report = check_file(LocalBlob(str(path)))
    assert report.problems == [] and report.pages > 4 and report.dictionary_pages == 1
    hadoop = _recodec(path, 5)  # the same raw blocks, the footer saying LZ4
    assert pq.read_table(hadoop).equals(pq.read_table(path))
    assert check_file(LocalBlob(str(hadoop))).problems == []


def test_hadoop_framed_lz4_is_unframed_and_an_unknown_codec_is_a_format_error() -> None:
    raw = b"a surviving value, " * 40
    lz4 = pa.Codec("lz4_raw")
    halves = [raw[:300], raw[300:]]
    framed = b"".join(struct.pack(">II", len(h), len(c := lz4.compress(h, asbytes=True))) + c for h in halves)
    page = Page(DATA_PAGE, 0, 0, len(framed), len(raw), 1, 0, None, framed)
    assert decompress(page, "LZ4") == raw
    with pytest.raises(PageFormatError):
        decompress(page, "LZO")


def test_an_lzo_file_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"s": ["a", "b", "a"]}), path, compression="snappy")
    report = check_file(LocalBlob(str(_recodec(path, 3))))
    assert report.problems == ["file: row group 0 unreadable (OSError)"]


# -- types beyond the contract's: compared, or reported, never raised ----------------------------------------


@pytest.mark.parametrize(("arrow", "values", "options"), [
    (pa.binary(4), [b"abcd", b"zzzz", None, b"abcd"], {}),
    (pa.uint32(), [1, 2**32 - 1, 5], {}),  # stored as INT32: the statistics hold the signed bits
    (pa.uint64(), [1, 2**64 - 1], {}),
    (pa.large_string(), ["x", "", "yy"], {}),
    (pa.date64(), [86_400_000 * 3, 86_400_000 * 9], {"store_schema": True}),  # stored as days (read back so)
    (pa.timestamp("s"), [1, 5], {"store_schema": True}),  # stored as milliseconds (read back so)
    (pa.timestamp("ns"), [1, 5, -(86_400 * 10**9) * 400 - 7, None], {"use_deprecated_int96_timestamps": True}),
    (pa.null(), [None, None], {}),
], ids=["fixed_size_binary", "uint32", "uint64", "large_string", "date64", "timestamp-s", "int96", "null"])
def test_other_arrow_types_are_compared_physically(tmp_path: Path, arrow: pa.DataType, values: list,
                                                   options: dict[str, Any]) -> None:
    """fixed_size_binary, large_binary, uint64, INT96 and null columns raised out of check_file; uint32 >= 2**31
    was refused (stored as the signed bits)."""
    path = tmp_path / "f.parquet"
    bloom = {} if arrow == pa.null() else {"bloom_filter_options": {"c": {"ndv": 8, "fpp": 0.1}}}
    for dictionary in (True, False):
        pq.write_table(pa.table({"c": pa.array(values, arrow)}), path, use_dictionary=dictionary,
                       write_page_index=True, **bloom, **options)
        assert check_file(LocalBlob(str(path))).problems == []


def test_a_fixed_size_binary_statistic_no_row_holds_is_found(tmp_path: Path) -> None:
    """(so the test above compares the values, not nothing)"""
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"c": pa.array([b"aaaa", b"bbbb"], pa.binary(4))}), path)
    data = path.read_bytes()
    n = int.from_bytes(data[-8:-4], "little")
    meta, _ = thrift.decode(data[-8 - n : -8])
    stats = thrift.field(thrift.field(meta, 4)[0], 1)[0][3][1][12][1]
    stats[5] = (stats[5][0], b"zzzz")  # max_value: a value no row holds (the same length: no offset moves)
    footer = thrift.encode(meta)
    path.write_bytes(data[: -8 - n] + footer + len(footer).to_bytes(4, "little") + b"PAR1")
    assert pq.read_metadata(path).row_group(0).column(0).statistics.max == b"zzzz"
    assert check_file(LocalBlob(str(path))).problems == [
        "file: row group 0 column c: 1 statistics value(s) that no surviving row holds"]


def test_a_column_the_check_cannot_compare_is_a_problem_naming_it(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), path)

    def physical(column: Any, physical_type: str, type_length: int = 0) -> pa.Array:
        if physical_type == "BYTE_ARRAY":
            raise ValueError("cannot compare")
        return real(column, physical_type, type_length)

    real = structure.physical
    monkeypatch.setattr(structure, "physical", physical)
    report = check_file(LocalBlob(str(path)))
    assert report.column_chunks == 2
    assert report.problems == ["file: row group 0 column b: its string values cannot be compared with its "
                               "metadata (ValueError)"]
