"""CSV text to string columns, with the raw line number of every row.

Fast path: pyarrow's CSV reader (all columns as strings) on the text's pieces as they are read
(pieces.py), rows with a wrong field count diverted by `invalid_row_handler`; what needs the whole
text is checked at the end. pyarrow does not report line numbers of good rows,
so rows are matched to non-empty lines; that is used only when every record is one line
(`contracts.records` finds records: a quoted value may go on over line breaks) and the reader
produced exactly one row per non-empty line, which is checked by counting. Counting is the test:
pyarrow follows the same quote rule as `contracts.records`, so a record over several lines becomes
one row and the count falls short (a record over lines always holds two non-empty ones: the line
that opens the quote and the line that closes it). The one case counting cannot see is a quote
opened on the last line and never closed, checked on that line alone. Contracts that allow newlines
in values scan for such records first, as they are expected there. Otherwise the exact Python `csv`
path reads record by record:

* `embedded_newlines = false`: a record spanning lines is quarantined whole (one reason, every
  physical line in `_raw`), never read as rows;
* `embedded_newlines = true`: records may span lines; a row's line number is its first line.

Either way a record whose quote never closes is quarantined whole. Chunks are cut on record
boundaries too (chunks.py), so whole and chunked processing agree.

Blank lines (zero length) are skipped and are not rows; a whitespace-only line is a row (usually
one with a wrong field count). The header, when the contract has one, must list the contract's
columns in contract order (case and surrounding blanks ignored): chunks after the first carry no
header and are read in contract order, so any other order would silently swap columns.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import threading
from collections.abc import Callable, Iterator
from queue import Empty, Full, Queue
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from contracts import records
from contracts.datasets import Dataset
from services.transform.errors import TransformError
from services.transform.lines import Text, as_bytes, count_byte, find_byte, index_lines
from services.transform.pieces import Pieces
from services.transform.rows import COLUMN_COUNT, SPANS_LINES, UNCLOSED_QUOTE, Parsed, Reject, Reread, Segment

_LINE_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")
#: pyarrow block size: each block's text is cast and freed before the next is read (streaming), so the
#: text of the whole object never exists as strings at once; 8 MiB keeps a block's strings in cache for
#: the casts and costs no more per row than larger blocks (TPC-H SF1, docs/design/transform-performance.md)
BLOCK_SIZE = 8 * 1024 * 1024
#: the first block is smaller: it is parsed before anything else can start (pyarrow opens its reader
#: with it, on the caller's thread), so the casts and the parse of the next block start sooner
FIRST_BLOCK = 1024 * 1024
LF, CR = 10, 13
#: blocks parsed ahead of the casts (each ~1.4x BLOCK_SIZE as strings): memory stays bounded
AHEAD = 2
FIELD_LIMIT = 1 << 30
#: what a column name in a header looks like (contract names are lower snake case)
_NAME_LIKE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def _dialect(dataset: Dataset) -> dict[str, object]:
    fmt = dataset.format
    if fmt.quote:
        return {"delimiter": fmt.delimiter, "quotechar": fmt.quote, "doublequote": True, "strict": False}
    return {"delimiter": fmt.delimiter, "quoting": csv.QUOTE_NONE, "strict": False}


def _split_line(line: str, dataset: Dataset) -> list[str]:
    """Fields of one line on its own (quotes cannot continue on the next line)."""
    return next(csv.reader((line,), **_dialect(dataset)), [])  # type: ignore[arg-type]


def _check_header(fields: list[str], dataset: Dataset, object_id: str, line: int) -> None:
    found = [f.strip().lower() for f in fields]
    expected = [c.name for c in dataset.columns]
    if found == expected:
        return
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    # a header line may be data (a file without header): the reason goes into status records, events and
    # logs, so fields are quoted only when the line is plausibly a header and they look like column names
    plausible = any(f in expected for f in found)
    named = [e for e in extra if plausible and _NAME_LIKE.match(e)]
    unnamed = len(extra) - len(named)
    if not plausible:
        detail = f"none of its {len(found)} fields is a column of the contract (is the header missing?)"
    elif missing or extra:
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unexpected {', '.join(repr(e) for e in named)}" if named else "",
                f"{unnamed} other field(s) that are not column names" if unnamed else "",
            )
            if part
        )
    else:
        detail = f"columns in another order: found {', '.join(found)}"
    raise TransformError(
        object_id,
        f"CSV header on line {line} does not match dataset {dataset.name!r} (expected {', '.join(expected)}): {detail}",
    )


def _skip_header(buf: Text, dataset: Dataset, object_id: str, first_line: int) -> tuple[int, int] | None:
    """Check the first non-empty line against the contract; (offset, line) just after it, or None if no line."""
    pos, line = 0, first_line
    while pos < len(buf):
        brk = _LINE_BREAK_BYTES.search(buf, pos)
        end, nxt = (brk.start(), brk.end()) if brk else (len(buf), len(buf))
        if end > pos:
            _check_header(_split_line(bytes(buf[pos:end]).decode("utf-8"), dataset), dataset, object_id, line)
            return nxt, line + 1
        pos, line = nxt, line + 1
    return None


def _open_arrow(source: pa.NativeFile, dataset: Dataset, invalid: list[tuple[int | None, str, int]]
                ) -> pacsv.CSVStreamingReader:
    """pyarrow's streaming read of `source`, every column a string; rows with a wrong field count go to `invalid`."""
    names = [c.name for c in dataset.columns]

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append((row.number, row.text, row.actual_columns))
        return "skip"

    fmt = dataset.format
    return pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(use_threads=False, block_size=BLOCK_SIZE, column_names=names),
        parse_options=pacsv.ParseOptions(
            delimiter=fmt.delimiter,
            quote_char=fmt.quote or False,
            double_quote=True,
            newlines_in_values=True,  # quote-aware block splitting: deterministic merges
            ignore_empty_lines=True,
            invalid_row_handler=on_invalid,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            check_utf8=False,  # the text's pieces are scanned for UTF-8 (pieces.py); no value leaves before
        ),
    )


def _ends_in_open_quote(buf: Text, body: int, dataset: Dataset) -> bool:
    """Does the last non-empty line open a quote it never closes? (the line read on its own: valid
    when no record spans lines, so that line starts outside any quoted value)"""
    dialect = records.Dialect.of(dataset.format)
    if dialect.quote is None:
        return False
    end = len(buf)
    while end > body and buf[end - 1] in b"\r\n":
        end -= 1
    start = _last_line_start(buf, body, end)
    return records.quote_toggles(bytes(buf[start:end]), dialect)[1]


def _last_line_start(buf: Text, body: int, end: int) -> int:
    """Start of the line that ends at `end` (after the last \\n or \\r before it, at least `body`),
    looked for in windows growing back from `end`: no copy of the whole text."""
    window = 1 << 16
    while True:
        lo = max(body, end - window)
        tail = bytes(buf[lo:end])
        brk = max(tail.rfind(b"\n"), tail.rfind(b"\r"))
        if brk >= 0:
            return lo + brk + 1
        if lo == body:
            return body
        window *= 4


def _ahead(reader: pacsv.CSVStreamingReader) -> Iterator[pa.RecordBatch]:
    """`reader`'s batches, parsed on a thread of their own up to AHEAD blocks ahead of the caller.

    pyarrow's streaming reader parses on the caller's thread; with a second CPU the next block is
    parsed while this one is cast (both release the GIL). The reader itself stays single-threaded,
    so it numbers the rows with a wrong field count.
    """
    done = object()
    queue: Queue[Any] = Queue(maxsize=AHEAD)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in reader:
                while not stop.is_set():
                    try:
                        queue.put(batch, timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(done)
        except BaseException as exc:  # handed to the caller, raised there
            queue.put(exc)

    producer = threading.Thread(target=produce, name="csv-ahead", daemon=True)
    producer.start()
    try:
        while (item := queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # the caller stopped early (Reread) or finished: let the producer go, drop what it made
        stop.set()
        while producer.is_alive():
            with contextlib.suppress(Empty):
                queue.get(timeout=0.1)
        producer.join()


def _read_fast(buf: Text, body: int, first_line: int, dataset: Dataset) -> Parsed | None:
    """pyarrow's rows streamed a block at a time, matched to the non-empty lines found first (`\\r` line
    breaks, blank lines inside); None when pyarrow cannot start. Raises `Reread("exact")` when rows and
    lines turn out not to match."""
    nonempty = index_lines(as_bytes(buf), body).nonempty
    invalid: list[tuple[int | None, str, int]] = []
    try:
        reader = _open_arrow(pa.BufferReader((buf if isinstance(buf, pa.Buffer) else pa.py_buffer(buf))[body:]),
                             dataset, invalid)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None

    def finish(seen: int) -> None:
        if seen != len(nonempty):
            raise Reread("exact")

    batches = _ahead(reader) if pa.cpu_count() > 1 else iter(reader)
    parsed = Parsed()
    parsed.segments = _stream(batches, invalid, parsed.rejects, first_line, nonempty, finish, len(dataset.columns))
    return parsed


def _read_pieces(text: Pieces, dataset: Dataset, object_id: str, first_line: int, with_header: bool) -> Parsed:
    """The first attempt: pyarrow reads the text's pieces as they arrive, row k taken to be on non-empty line k.

    The segments come from a generator: each block of text is checked, and freed, before the next ones
    are read; blocks are parsed ahead on a second thread when pyarrow may use two CPUs. What needs the
    whole text is checked once every row is read: its scans (UTF-8, NUL), a quote opened on its last
    line, `\\r` line breaks and the count of lines (blank lines inside or a record over several lines
    make it fall short). When one fails it raises `Reread` with the way to read the text again, as it
    does before reading when the first piece shows it already (`\\r`, a header or blank lines longer
    than a piece, records over lines where the contract expects them).
    """
    head, whole = text.head, len(text.head) == len(text)
    if find_byte(head, CR) >= 0:
        raise Reread("indexed")
    body, body_line = 0, first_line
    if with_header and dataset.format.header:
        lines = head if whole else head.slice(0, _last_line_start(head, 0, len(head)))  # whole lines only
        after = _skip_header(lines, dataset, object_id, first_line)
        if after is None:
            if whole:
                return Parsed()
            raise Reread("indexed")  # the header, or the blank lines before it, go on past the first piece
        body, body_line = after
    first = text.first_not(LF, body)  # blank lines at the start are not rows
    if first < 0:
        return Parsed()
    if dataset.format.embedded_newlines and records.spans_lines(
            as_bytes(text.whole()), records.Dialect.of(dataset.format), body):
        raise Reread("exact")  # records over lines are expected there: found before reading twice
    invalid: list[tuple[int | None, str, int]] = []
    try:
        reader = _open_arrow(pa.PythonFile(text.stream(body, FIRST_BLOCK), mode="r"), dataset, invalid)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise Reread("exact") from exc

    def finish(seen: int) -> None:
        scan = text.scanned()  # raises TransformError when the text is refused
        if _ends_in_open_quote(text, body, dataset):
            raise Reread("exact")
        if scan.cr >= 0:
            raise Reread("indexed")
        last = text.last_not(LF, first)
        before = count_byte(head, LF, 0, body) + first - body  # line feeds before the first row
        lines = 0 if last < 0 else scan.lf - before - (len(text) - 1 - last) + 1
        if seen != lines:  # rows and lines differ: blank lines inside, or a record over several lines
            raise Reread("indexed")

    batches = _ahead(reader) if pa.cpu_count() > 1 else iter(reader)
    parsed = Parsed()
    parsed.segments = _stream(batches, invalid, parsed.rejects, body_line + first - body, None, finish,
                              len(dataset.columns))
    return parsed


def _stream(batches: Iterator[pa.RecordBatch], invalid: list[tuple[int | None, str, int]], rejects: list[Reject],
            first_line: int, nonempty: np.ndarray | None, finish: Callable[[int], None], width: int
            ) -> Iterator[Segment]:
    """Segments of the reader's `batches` with their line numbers; rows with a wrong field count go to `rejects`.

    Row k (good or not, in file order) is on non-empty line k: `nonempty[k]`, or line k itself when
    `nonempty` is None; `finish(rows)` raises `Reread` when the rows read do not match those lines.
    pyarrow numbers the bad rows 1-based in that order.
    """
    seen, pending = 0, 0  # rows matched so far; bad rows reported but not yet placed
    known = len(nonempty) if nonempty is not None else None  # lines, where known before reading

    def place(upto: int | None) -> np.ndarray:
        """Ordinals of the bad rows among the next `upto` good rows from `seen` (None: the bad rows after
        the last good one), turned into rejects."""
        nonlocal pending
        placed: list[int] = []
        while pending < len(invalid):
            number, text, found = invalid[pending]
            if number is None:
                raise Reread("exact")  # pyarrow could not number it: do not guess
            ordinal = number - 1
            if upto is not None and ordinal >= seen + upto + len(placed):
                break
            if upto is None and ordinal != seen + len(placed):
                raise Reread("exact")  # after the last good row, bad rows follow on one after the other
            if ordinal < (placed[-1] + 1 if placed else seen) or (known is not None and ordinal >= known):
                raise Reread("exact")  # numbering inconsistent: do not guess
            placed.append(ordinal)
            rejects.append(Reject(_line(ordinal), COLUMN_COUNT,
                                  f"wrong column count: expected {width} fields, found {found}", text))
            pending += 1
        return np.array(placed, dtype=np.int64)

    def _line(ordinal: int) -> int:
        return first_line + int(ordinal if nonempty is None else nonempty[ordinal])

    try:
        for batch in batches:
            bad = place(batch.num_rows)
            count = batch.num_rows + len(bad)
            if known is not None and seen + count > known:
                raise Reread("exact")  # more rows than non-empty lines
            ordinals = np.delete(np.arange(seen, seen + count, dtype=np.int64), bad - seen)
            lines = first_line + (ordinals if nonempty is None else nonempty[ordinals].astype(np.int64))
            seen += count
            yield Segment(pa.Table.from_batches([batch]), lines)
        seen += len(place(None))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise Reread("exact") from exc
    finish(seen)


def _fields(raw: str, dataset: Dataset) -> list[str] | None:
    """Fields of one record's text (line breaks inside quoted values kept verbatim); None if the csv
    module sees more than one record there (it never should: the record rule is the same)."""
    rows = list(csv.reader(io.StringIO(raw, newline=""), **_dialect(dataset)))  # type: ignore[arg-type]
    return rows[0] if len(rows) == 1 else None


def _read_python(buf: bytes, body: int, first_line: int, dataset: Dataset, index: records.RecordIndex) -> Parsed:
    """Exact but slower path: one record at a time, records found by `contracts.records`.

    A record spanning lines where the contract forbids newlines in values, or whose quote never
    closes, is quarantined whole — every physical line of it in `_raw`, under one reason — instead of
    being read line by line, which would turn its tail into a row that was never in the file.
    """
    names = [c.name for c in dataset.columns]
    # pyarrow has no field size limit; match it (this only ever raises the process-wide limit)
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    columns: list[list[str]] = [[] for _ in names]
    lines: list[int] = []
    rejects: list[Reject] = []
    last = len(index) - 1
    for r in index.nonempty.tolist():
        raw = buf[int(index.starts[r]) : int(index.ends[r])].decode("utf-8")
        line, count = first_line + int(index.first_line[r]), int(index.lines[r])
        where = f"line {line}" if count == 1 else f"lines {line}-{line + count - 1}"
        if r == last and index.open_end:
            rejects.append(Reject(line, UNCLOSED_QUOTE, f"a quoted value opened on {where} is never closed", raw))
            continue
        if count > 1 and not dataset.format.embedded_newlines:
            rejects.append(Reject(line, SPANS_LINES, f"a quoted value spans {where}, but the contract does not "
                                                     "allow newlines in values (format.embedded_newlines)", raw))
            continue
        fields = _fields(raw, dataset)
        if fields is None or len(fields) != len(names):
            found = "several records" if fields is None else str(len(fields))
            reason = f"wrong column count: expected {len(names)} fields, found {found}"
            rejects.append(Reject(line, COLUMN_COUNT, reason, raw))
            continue
        lines.append(line)
        for column, value in zip(columns, fields, strict=True):
            column.append(value)
    table = pa.table({n: pa.array(c, pa.string()) for n, c in zip(names, columns, strict=True)})
    return Parsed([Segment(table, np.array(lines, dtype=np.int64))], rejects)


def parse_csv(
    text: Pieces, dataset: Dataset, *, object_id: str, first_line: int, with_header: bool, how: str | None = None
) -> Parsed:
    """All rows of a CSV text as strings, plus the rows that do not have the contract's field count.

    `how` is None (the first attempt: `_read_pieces`), or the way a previous attempt's `Reread` asked
    for ("indexed", "exact"), which reads the text whole.
    """
    if how is None:
        return _read_pieces(text, dataset, object_id, first_line, with_header)
    buf = text.whole()
    body, body_line = 0, first_line
    if with_header and dataset.format.header:
        after = _skip_header(buf, dataset, object_id, first_line)
        if after is None:
            return Parsed()
        body, body_line = after
    if body >= len(buf):
        return Parsed()
    dialect = records.Dialect.of(dataset.format)
    expected = dataset.format.embedded_newlines and records.spans_lines(as_bytes(buf), dialect, body)
    if how == "indexed" and not expected and not _ends_in_open_quote(buf, body, dataset):
        fast = _read_fast(buf, body, body_line, dataset)  # Reread("exact") when a record spans lines (counting)
        if fast is not None:
            return fast
    data = as_bytes(buf)  # the exact reader needs bytes' own methods (a copy of a Buffer)
    return _read_python(data, body, body_line, dataset, records.index_records(data, dialect, body))
