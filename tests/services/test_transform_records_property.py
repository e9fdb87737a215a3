"""Property tests: CSV with quotes, delimiters and newlines in values — records, never fragments of lines.

Sources are written by Python's csv writer (values quoted where needed), with \\n or \\r\\n between
records, optionally with hostile junk lines (a quote that opens and never closes, a stray quote).
Every example checks that every lake row is a record of the source — its values byte for byte and the
line the record starts on — and, for well-formed sources, that lake + quarantine hold every record
exactly once: a record whose value holds a newline is a row where the contract allows it, and is
quarantined whole (all its physical lines in `_raw`, one reason) where the contract forbids it.
Chunked processing, cut at random sizes, equals whole-object processing.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import records
from contracts.datasets import Dataset, parse_dataset
from services.transform import lines, parse_csv
from services.transform.chunks import dialect_of, plan_chunks
from tests.services.transform_helpers import good_rows, run

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NOTES_TOML = """
name = "notes"
sort_key = ["id"]
[format]
type = "csv"
embedded_newlines = {embedded}
[[columns]]
name = "id"
type = "int64"
nullable = false
[[columns]]
name = "a"
type = "string"
[[columns]]
name = "b"
type = "string"
"""
COLUMNS = ("id", "a", "b")


def notes(embedded: bool) -> Dataset:
    return parse_dataset(NOTES_TOML.format(embedded=str(embedded).lower()), "notes.toml")


#: pieces of values: quotes, delimiters, every line break, non-ASCII, blanks
value = st.lists(st.sampled_from(["x", "y", '"', ",", "\n", "\r\n", "\r", "é", " ", '""', "42"]), max_size=6).map(
    "".join
)
#: hostile lines that no writer produces: stray quotes that open nothing past their line
JUNK = ('a"b,c', '7,"x"y",z', '""', '8,"",""""', "5,x,y,z")
#: a quote that opens and never closes: last in the object (earlier, a later quote would close it and
#: the CSV rules — any reader's — make the lines between one record, quarantined; what follows is read on)
UNCLOSED = ('9,"open', '"')
item = st.one_of(st.tuples(value, value), st.sampled_from(JUNK))
items = st.tuples(st.lists(item, max_size=25), st.sampled_from(("", *UNCLOSED))).map(
    lambda t: t[0] + [t[1]] if t[1] else t[0]
)


@dataclass
class Source:
    data: bytes
    #: (first line, (id, a, b)) of every written record; values "" read back as null
    records: dict[int, tuple[int, str, str]]
    #: exact text (without its final line break) of every written record
    texts: dict[int, str]
    #: line -> text of every junk line
    junk_lines: dict[int, str]

    @property
    def junk(self) -> bool:
        return bool(self.junk_lines)


class Writer:
    """RFC 4180 writing: a value holding a quote, delimiter or any line break character is quoted
    (Python's csv.writer leaves a lone \\r unquoted when the terminator is \\n)."""

    def __init__(self, out: io.StringIO, newline: str) -> None:
        self.out, self.newline = out, newline

    def writerow(self, values: list[str] | tuple[str, ...]) -> None:
        quoted = ['"' + v.replace('"', '""') + '"' if any(c in v for c in '",\r\n') else v for v in values]
        self.out.write(",".join(quoted) + self.newline)


def render(items: list, newline: str) -> Source:
    out = io.StringIO()
    writer = Writer(out, newline)
    writer.writerow(COLUMNS)
    recs: dict[int, tuple[int, str, str]] = {}
    texts: dict[int, str] = {}
    junk: dict[int, str] = {}
    for n, it in enumerate(items):
        line = 1 + len(records.line_spans(out.getvalue().encode())[0])
        if isinstance(it, str):
            out.write(it + newline)
            junk[line] = it
            continue
        before = out.getvalue()
        writer.writerow([str(n), *it])
        recs[line] = (n, *it)
        texts[line] = out.getvalue()[len(before) : -len(newline)]
    return Source(out.getvalue().encode(), recs, texts, junk)


def lake_rows(result) -> list[tuple[int, tuple[int, str, str]]]:
    return [(r["_source_line"], (r["id"], r["a"] or "", r["b"] or "")) for r in good_rows(result)]


def check_rows(source: Source, dataset: Dataset, result) -> None:
    """Every lake row is a record of the source (or a hostile line on its own), values byte for byte."""
    embedded = dataset.format.embedded_newlines
    for line, values in lake_rows(result):  # every lake row is a record of the source, byte for byte
        if line in source.junk_lines:  # a hostile line read as a row: only ever that line on its own
            if not embedded:
                (fields,) = list(csv.reader([source.junk_lines[line]]))
                assert values == (int(fields[0]), fields[1], fields[2])
            continue
        assert source.records.get(line) == values, f"line {line}: {values!r} is not a record of the source"
        assert embedded or not any("\n" in v or "\r" in v for v in values[1:])
    assert result.rows_in == result.rows_good + result.rows_quarantined


def check(source: Source, dataset: Dataset, result) -> None:
    """Membership, then exact accounting: every record once, in the lake or quarantined whole."""
    check_rows(source, dataset, result)
    embedded = dataset.format.embedded_newlines
    assert result.rows_in == len(source.records) + len(source.junk_lines), "every record counted once"
    multi = {ln for ln, (_, a, b) in source.records.items() if any(c in a + b for c in "\r\n")}
    expected_good = set(source.records) if embedded else set(source.records) - multi
    good_lines = {ln for ln, _ in lake_rows(result)}
    assert good_lines - set(source.junk_lines) == expected_good
    quarantined = {q["_source_line"]: q for q in result.quarantine.to_pylist()}
    assert set(quarantined) | good_lines == set(source.records) | set(source.junk_lines)
    for line, q in quarantined.items():
        if line in source.texts:  # refused whole: every physical line, one reason
            assert q["_raw"] == source.texts[line]
            assert "spans lines" in q["_reason"]
        elif source.junk_lines.get(line) in UNCLOSED and line == max(source.junk_lines):
            assert "is never closed" in q["_reason"]


@SETTINGS
@given(items, st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_every_lake_row_is_a_record_and_every_record_is_accounted_for(items: list, newline: str,
                                                                      embedded: bool) -> None:
    source = render(items, newline)
    ds = notes(embedded)
    result = run(ds, source.data)
    check(source, ds, result)
    with mock.patch.object(parse_csv, "_read_fast", return_value=None):  # the exact reader agrees
        exact = run(ds, source.data)
    assert good_rows(exact) == good_rows(result)
    assert exact.quarantine.to_pylist() == result.quarantine.to_pylist()


@SETTINGS
@given(items, st.sampled_from(["\n", "\r\n"]), st.booleans(), st.integers(5, 200))
def test_chunked_equals_whole_with_quoted_newlines(items: list, newline: str, embedded: bool, size: int) -> None:
    source = render(items, newline)
    ds = notes(embedded)
    whole = run(ds, source.data)
    plan = plan_chunks(len(source.data), size, lambda a, b: source.data[a:b], dialect_of(ds))
    parts = [run(ds, source.data, chunk=r) for r in plan]
    assert sum(p.rows_in for p in parts) == whole.rows_in
    merged = sorted((row for p in parts for row in good_rows(p)), key=lambda r: r["_source_line"])
    assert merged == good_rows(whole)
    quarantined = sorted((q for p in parts for q in p.quarantine.to_pylist()), key=lambda q: q["_source_line"])
    assert quarantined == whole.quarantine.to_pylist()
    for p in parts:
        check_rows(source, ds, p)
    check(source, ds, whole)


@SETTINGS
@given(items, st.sampled_from(["\n", "\r\n"]))
def test_record_lines_cover_every_physical_line_of_a_record(items: list, newline: str) -> None:
    """What erasure blanks: asking for a record's first line yields all of its lines, nothing else."""
    source = render(items, newline)
    dialect = records.Dialect()
    starts, _ = records.line_spans(source.data)
    for line, text in source.texts.items():
        n = len(records.line_spans(text.encode())[0]) or 1
        assert records.record_lines(source.data, [line], dialect) == set(range(line, line + n))
    assert records.record_lines(source.data, [], dialect) == set()
    assert len(starts) >= len(source.records)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64).map(lambda b: b.replace(b"\x00", b"\n")), st.integers(0, 70), st.integers(0, 70),
       st.integers(1, 9))
def test_count_byte_is_bytes_count(data: bytes, start: int, end: int, piece: int) -> None:
    """The line count behind row-to-line matching: numpy pieces (cut small here) count what bytes.count does."""
    with mock.patch.object(lines, "_COUNT_PIECE", piece):
        assert lines.count_byte(data, ord("\n"), start, end) == data.count(b"\n", start, end)
        assert lines.count_byte(data, ord("\n")) == data.count(b"\n")
