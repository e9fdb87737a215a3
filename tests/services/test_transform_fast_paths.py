"""The transform's fast paths give exactly what the careful paths give (docs/design/transform-performance.md).

Each fast path is checked against the slower path it replaces, on input made to hit its edge: the
row count that stands in for a quote scan, pyarrow reading on several threads, columns cast side by
side, the byte scans that stand in for string kernels.
"""

from __future__ import annotations

import io
import threading
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contracts import records
from services.transform import casts, encoding, parse_csv, validate
from services.transform.parquet import parquet_bytes
from tests.services.transform_helpers import csv_text, good_rows, reasons, run, same, typed_dataset, typed_row


@pytest.mark.parametrize("ending", ["", "\n", "\n\n", "\r\n", "\r\n\r\n", "\r"])
@pytest.mark.parametrize("embedded", [False, True])
def test_a_quote_opened_on_the_last_line_is_never_read_as_a_row(ending: str, embedded: bool) -> None:
    """pyarrow reads `2,"open` as a row and the row count matches: the last line is checked on its own."""
    ds = typed_dataset(embedded=embedded)
    data = csv_text([typed_row(1)]) + ",".join(typed_row(2, note='"open')).encode() + ending.encode()
    result = run(ds, data)
    assert [r["id"] for r in good_rows(result)] == [1]
    assert result.quarantine_reasons == {"unclosed_quote": 1}
    ((line, why),) = reasons(result).items()
    assert line == 3 and why.startswith("a quoted value opened on line") and why.endswith("is never closed")


@pytest.mark.parametrize("text", ['"a""b",1', 'x"y,1', '"",1', '"a,b",1'])
def test_quotes_that_close_on_their_line_are_read_by_pyarrow(text: str) -> None:
    """Lines whose quotes close (doubled, literal, empty, holding a delimiter) leave the fast path alone."""
    ds = typed_dataset()
    note = text.rsplit(",", 1)[0]
    data = csv_text([typed_row(1, note=note), typed_row(2)])
    with mock.patch.object(parse_csv, "_read_python", side_effect=AssertionError("slow path")):
        fast = run(ds, data)
    with mock.patch.object(parse_csv, "_read_fast", return_value=None):
        same(fast, run(ds, data))


def test_a_spanning_record_is_found_by_the_row_count_without_a_scan_first() -> None:
    """embedded_newlines = false: no quote scan before pyarrow; the count falls short and the exact reader runs."""
    ds = typed_dataset()
    data = csv_text([typed_row(1), typed_row(2, note='"two\nlines"'), typed_row(3)])
    with mock.patch.object(records, "spans_lines", side_effect=AssertionError("scanned")):
        result = run(ds, data)
    assert [r["id"] for r in good_rows(result)] == [1, 3]
    assert result.quarantine_reasons == {"spans_lines": 1}


def big_csv(rows: int, bad_every: int) -> bytes:
    """Enough rows for several pyarrow blocks (with a small BLOCK_SIZE) and the threaded casts."""
    body = []
    for n in range(1, rows + 1):
        if n % bad_every == 0:
            body.append(["1", "2"])  # wrong field count: numbered by pyarrow, placed among streamed rows
        elif n % bad_every == 7:
            body.append(typed_row(n, price="1.234", day="2023-02-29"))
        else:
            body.append(typed_row(n))
    return csv_text(body)


def test_threads_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks parsed ahead on a second thread, columns cast, encoded and gathered side by side: same rows,
    lines and reasons as one thread."""
    monkeypatch.setattr(parse_csv, "BLOCK_SIZE", 64 * 1024)
    monkeypatch.setattr(validate, "PARALLEL_ROWS", 1000)
    monkeypatch.setattr(encoding, "PARALLEL_ROWS", 1000)  # dictionary encoding and the partition gather too
    data, ds = big_csv(6000, 1500), typed_dataset()
    cpus = pa.cpu_count()
    try:
        pa.set_cpu_count(1)
        one = run(ds, data)
        pa.set_cpu_count(2)
        with mock.patch.object(parse_csv, "_ahead", wraps=parse_csv._ahead) as ahead:
            two = run(ds, data)
        assert ahead.call_count == 2  # parsed ahead on a second thread, read once from bytes, once from a file
        assert not [t for t in threading.enumerate() if t.name == "csv-ahead"]  # and that thread is gone
    finally:
        pa.set_cpu_count(cpus)
    same(one, two)
    assert one.rows_quarantined == 8 and set(one.quarantine_reasons) == {"column_count", "bad_value"}
    for result in (one, two):  # a repeated string the sort reads (the partition's source) is encoded as well
        assert all(pa.types.is_dictionary(p.table.schema.field("region").type) for p in result.partitions)
        assert not any(pa.types.is_dictionary(p.table.schema.field("note").type) for p in result.partitions)
    for a, b in zip(one.partitions, two.partitions, strict=True):
        assert pq.read_table(io.BytesIO(parquet_bytes(a.table, ds))).equals(
            pq.read_table(io.BytesIO(parquet_bytes(b.table, ds))))


def test_the_byte_scan_sees_only_the_values() -> None:
    """Slices, chunks and nulls: the scan finds a byte in any value and never one outside the values."""
    values = pa.array(["12", "0x1F", None, "7", "e"])
    assert casts._holds_byte(values, b"xX")
    assert not casts._holds_byte(values.slice(2, 2), b"xX")  # the bytes of "0x1F" lie before the slice
    assert not casts._holds_byte(values.slice(0, 1), b"xXe")  # ... and "e" after it
    assert casts._holds_byte(pa.chunked_array([values.slice(0, 1), values.slice(4, 1)]), b"E e")
    assert not casts._holds_byte(pa.chunked_array([], pa.string()), b"x")
    assert casts._holds_byte(pa.array(["1", "0X2"], pa.large_string()), b"xX")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("3e6015256", "'3e6015256' has 6015257 digits before the decimal point, decimal(5,2) allows 3"),
        ("1.00000000000000000000000000000001", "'1.00000000000000000000000000000001' has 32 decimal places, "
                                               "decimal(5,2) allows 2"),
        ("1e999999999999999999999", "'1e999999999999999999999' is not a decimal number"),
    ],
)
def test_decimals_beyond_any_context_are_quarantined_with_their_reason(text: str, reason: str) -> None:
    """The reason is worded exactly (no rounding to 28 digits, no Overflow that would fail the object)."""
    result = run(typed_dataset(), csv_text([typed_row(1, price=text), typed_row(2)]))
    assert reasons(result) == {2: f"price: {reason}"}


def test_a_reread_stops_the_thread_that_parses_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blank lines inside: the count shows it only at the end; the reader reads again with a line index,
    and the thread parsing ahead of the first attempt is stopped, not left holding blocks."""
    monkeypatch.setattr(parse_csv, "BLOCK_SIZE", 16 * 1024)
    rows = [",".join(typed_row(n)) for n in range(1, 3001)]
    data = csv_text([]) + ("\n".join(rows[:1500]) + "\n\n" + "\n".join(rows[1500:]) + "\n").encode()
    cpus = pa.cpu_count()
    try:
        pa.set_cpu_count(2)
        result = run(typed_dataset(), data)
    finally:
        pa.set_cpu_count(cpus)
    assert [r["_source_line"] for r in good_rows(result)][1499:1501] == [1501, 1503]
    assert not [t for t in threading.enumerate() if t.name == "csv-ahead"]


@pytest.mark.parametrize("last", [b"", b"x", b"y" * 70_000, b"z" * 300_000])
@pytest.mark.parametrize("brk", [b"\n", b"\r", b"\r\n", b""])
def test_the_last_line_is_found_from_its_end(last: bytes, brk: bytes) -> None:
    """The open-quote check reads the last line alone, found back from the end in growing windows (no
    copy of the whole text), the same start `rfind` gives, from bytes and from a pyarrow Buffer alike."""
    text = b"head\n" + b"a,b\n" * 50_000 + (b"w" * 100_000 + brk if brk else b"") + last
    for buf in (text, pa.py_buffer(text)):
        for body in (0, 5):
            expected = max(text.rfind(b"\n", body), text.rfind(b"\r", body), body - 1) + 1
            assert parse_csv._last_line_start(buf, body, len(text)) == expected
