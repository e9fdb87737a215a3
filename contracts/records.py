"""Lines and records of raw text: the one rule transform parses by, chunks are cut by and erasure blanks by.

A *line* ends at \\n, \\r\\n or a lone \\r (universal newlines, like pyarrow's CSV reader and Python's
`csv`). A *record* is one line, unless a quoted value is still open at the line's end: then the record
goes on over the next lines until the quote closes. JSON Lines records are lines (JSON escapes newlines
in strings), and so are CSV records of a contract without a quote character.

Quotes follow Python's `csv` (strict=False, doublequote) and pyarrow: a quote opens a value only at the
start of a field; inside a quoted value a doubled quote is a literal quote, a single one closes it; any
other quote is a literal character. Scanning is vectorised (numpy) in the usual case and falls back to a
Python loop over the quote characters only when a literal quote appears outside a quoted value.

Why one module: a record cut in two by a line-based rule turns its tail into a row from nowhere (a
fragment of one record read as another, e.g. under a real customer id). Whoever cuts raw text — the
chunk planner, the CSV reader, erasure's raw-copy blanking — must cut it on the same record boundaries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

LF, CR = 10, 13
UTF8_BOM = b"\xef\xbb\xbf"
#: bytes scanned at a time (pieces always end just after a \n, so a \r\n is never split)
PIECE = 8 * 1024 * 1024


@dataclass(frozen=True)
class Dialect:
    """What makes a record longer than a line: the quote byte (None: records are lines) and the delimiter."""

    quote: bytes | None = b'"'
    delimiter: bytes = b","

    def __post_init__(self) -> None:
        if self.quote is not None and len(self.quote) != 1:
            raise ValueError(f"the quote must be one byte, not {self.quote!r}")
        if not self.delimiter:
            raise ValueError("the delimiter must not be empty")

    @classmethod
    def of(cls, fmt: Any) -> Dialect:
        """The dialect of a contract's input format (`contracts.datasets.InputFormat`)."""
        if fmt.type != "csv" or not fmt.quote:
            return LINES
        return cls(fmt.quote.encode(), fmt.delimiter.encode())


#: records are lines (JSON Lines, CSV without quoting)
LINES = Dialect(quote=None)


def line_spans(text: bytes, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the lines of text[offset:], absolute offsets, `ends` excluding the terminator.

    A final line without terminator counts; a final empty one (text ending in a break) does not.
    """
    a = np.frombuffer(text, dtype=np.uint8)[offset:]
    n = len(a)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    breaks = np.flatnonzero(a == LF)
    cr_before = np.zeros(len(breaks), dtype=bool)
    if text.find(b"\r", offset) >= 0:
        cr = np.flatnonzero(a == CR)
        lone = cr[(cr + 1 >= n) | (a[np.minimum(cr + 1, n - 1)] != LF)]
        has_prev = breaks > 0
        cr_before[has_prev] = a[breaks[has_prev] - 1] == CR
        breaks = np.concatenate([breaks, lone])
        cr_before = np.concatenate([cr_before, np.zeros(len(lone), dtype=bool)])
        order = np.argsort(breaks, kind="stable")
        breaks, cr_before = breaks[order], cr_before[order]
    starts = np.concatenate([[0], breaks + 1]).astype(np.int64)
    ends = np.concatenate([breaks - cr_before, [n]]).astype(np.int64)
    if starts[-1] == n:  # the text ends with a line break: no further line
        starts, ends = starts[:-1], ends[:-1]
    return starts + offset, ends + offset


def _field_starts(a: np.ndarray, at: np.ndarray, delimiter: bytes) -> np.ndarray:
    """Which positions `at` begin a field: first byte of the piece, after a line break or a delimiter."""
    ok = at == 0
    prev = a[np.maximum(at - 1, 0)]
    ok |= (at > 0) & ((prev == LF) | (prev == CR))
    d = np.frombuffer(delimiter, dtype=np.uint8)
    after_delim = at >= len(d)
    for k in range(len(d)):  # the len(d) bytes before each position equal the delimiter
        after_delim &= a[np.maximum(at - len(d) + k, 0)] == d[k]
    return ok | after_delim


def quote_toggles(piece: bytes, dialect: Dialect, in_quotes: bool = False) -> tuple[np.ndarray, bool]:
    """Positions of the quotes that open or close a quoted value in `piece`, and whether one is open at its end.

    `piece` starts at a line start (`in_quotes`: inside a quoted value carried over from before).
    Between an odd and the next even toggle the text is inside a quoted value.
    """
    if dialect.quote is None or dialect.quote not in piece:
        return np.zeros(0, dtype=np.int64), in_quotes
    a = np.frombuffer(piece, dtype=np.uint8)
    quotes = np.flatnonzero(a == dialect.quote[0])
    inside_before = (np.arange(len(quotes)) + int(in_quotes)) % 2 == 1
    starts_field = _field_starts(a, quotes, dialect.delimiter)
    after_quote = (quotes > 0) & (a[np.maximum(quotes - 1, 0)] == dialect.quote[0])
    literal = ~inside_before & ~starts_field & ~after_quote
    if not literal.any():  # every quote toggles: parity is the state
        return quotes, bool((len(quotes) + int(in_quotes)) % 2)
    return _toggles_exact(quotes, starts_field, in_quotes)


def _toggles_exact(quotes: np.ndarray, starts_field: np.ndarray, in_quotes: bool) -> tuple[np.ndarray, bool]:
    """The state machine over quote positions only (literal quotes outside quoted values present)."""
    toggles: list[int] = []
    closed_at = -2
    for q, field_start in zip(quotes.tolist(), starts_field.tolist(), strict=True):
        if in_quotes:
            toggles.append(q)
            in_quotes, closed_at = False, q
        elif field_start or closed_at == q - 1:  # a doubled quote reopens what the previous one closed
            toggles.append(q)
            in_quotes = True
    return np.array(toggles, dtype=np.int64), in_quotes


def _inside_at(positions: np.ndarray, toggles: np.ndarray, in_quotes: bool) -> np.ndarray:
    """For each position: is it inside a quoted value?"""
    if not len(toggles):
        return np.full(len(positions), in_quotes, dtype=bool)
    return (np.searchsorted(toggles, positions) + int(in_quotes)) % 2 == 1


def pieces(read: Callable[[int, int], Any], start: int, end: int, size: int = 0) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of [start, end) in pieces of about `size` (default PIECE) that end just after a \\n."""
    size = size or PIECE
    pos, carry = start, b""
    while pos < end or carry:
        nxt = min(end, pos + size)
        data = carry + (bytes(read(pos, nxt)) if nxt > pos else b"")
        base, pos = pos - len(carry), nxt
        cut = data.rfind(b"\n") + 1 if pos < end else len(data)
        if cut == 0:  # no line break yet: read on
            carry = data
            continue
        yield base, data[:cut]
        carry = data[cut:]


@dataclass(frozen=True)
class RecordIndex:
    """Records of a text: byte span (first line's start, last line's end without terminator) and lines.

    `first_line` is 0-based from the scanned offset; `lines` the count of physical lines of each record.
    `open_end` says the last record's quote is never closed.
    """

    starts: np.ndarray
    ends: np.ndarray
    first_line: np.ndarray
    lines: np.ndarray
    open_end: bool

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def spans_lines(self) -> bool:
        """Does any record go over more than one line?"""
        return bool(len(self.lines) and self.lines.max() > 1)

    @property
    def nonempty(self) -> np.ndarray:
        """Positions of the records holding at least one byte (empty lines are not records of data)."""
        return np.flatnonzero((self.ends > self.starts) | (self.lines > 1))


def index_records(text: bytes, dialect: Dialect, offset: int = 0) -> RecordIndex:
    """Every record of text[offset:] (offset at a line start, outside any quoted value)."""
    if text.startswith(UTF8_BOM, offset):
        offset += len(UTF8_BOM)
    starts, ends = line_spans(text, offset)
    joined = np.zeros(len(starts), dtype=bool)  # line i continues the record of line i-1
    in_quotes = False
    if dialect.quote is not None and text.find(dialect.quote, offset) >= 0:
        view = memoryview(text)
        for base, piece in pieces(lambda a, b: view[a:b], offset, len(text)):
            toggles, after = quote_toggles(piece, dialect, in_quotes)
            lo, hi = np.searchsorted(starts, [base, base + len(piece)])
            # the break before line i ends just before starts[i]: inside quotes there joins line i to i-1
            # (the piece's first line: -1, before every toggle, so the state carried in decides)
            joined[lo:hi] = _inside_at(starts[lo:hi] - 1 - base, toggles, in_quotes)
            in_quotes = after
    first = np.flatnonzero(~joined)
    last = np.concatenate([first[1:] - 1, [len(starts) - 1]]) if len(first) else first
    return RecordIndex(starts[first], ends[last], first, last - first + 1, in_quotes)


def spans_lines(text: bytes, dialect: Dialect, offset: int = 0) -> bool:
    """Does any record of text[offset:] go over a line break, or a quote never close? (cheap when no quote)"""
    if dialect.quote is None or text.find(dialect.quote, offset) < 0:
        return False
    view, in_quotes = memoryview(text), False
    for _, piece in pieces(lambda a, b: view[a:b], offset, len(text)):
        toggles, after = quote_toggles(piece, dialect, in_quotes)
        if len(toggles) or in_quotes:
            a = np.frombuffer(piece, dtype=np.uint8)
            breaks = np.flatnonzero((a == LF) | (a == CR))
            if _inside_at(breaks, toggles, in_quotes).any():
                return True
        in_quotes = after
    return in_quotes


def record_lines(text: bytes, lines: Iterable[int], dialect: Dialect) -> set[int]:
    """Every 1-based physical line of the records holding any of `lines` (erasure blanks whole records)."""
    wanted = np.array(sorted(set(lines)), dtype=np.int64) - 1
    if not len(wanted):
        return set()
    idx = index_records(text, dialect)
    total = int(idx.first_line[-1] + idx.lines[-1]) if len(idx) else 0
    pos = np.searchsorted(idx.first_line, wanted, side="right") - 1
    found: set[int] = set()
    for p in np.unique(pos[(pos >= 0) & (wanted < total)]).tolist():  # a line past the end is no record's
        first = int(idx.first_line[p])
        found.update(range(first + 1, first + int(idx.lines[p]) + 1))
    return found


def count_line_breaks(data: bytes, after_cr: bool = False) -> tuple[int, bool]:
    """Line breaks in `data` (\\n, \\r\\n or a lone \\r) and whether it ends in \\r.

    `after_cr` says the previous piece ended with \\r, so a leading \\n completes that break.
    """
    n = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
    if after_cr and data[:1] == b"\n":
        n -= 1
    return n, data[-1:] == b"\r"


def record_cuts(
    read: Callable[[int, int], Any], size: int, every: int, dialect: Dialect
) -> list[tuple[int, int]]:
    """(offset, 1-based line number) of cuts about every `every` bytes, each at a record start after a \\n.

    One sequential read up to the last cut, a piece at a time: a cut needs the quote state at that
    point, which depends on everything before it.
    """
    cuts: list[tuple[int, int]] = []
    target, lines_before = every, 0
    head = bytes(read(0, min(size, len(UTF8_BOM))))
    start = len(UTF8_BOM) if head == UTF8_BOM else 0
    in_quotes = False
    for base, piece in pieces(read, start, size):
        if target >= size:
            break
        if not in_quotes and (dialect.quote is None or dialect.quote not in piece):
            # no quoted value here: every \n is a record boundary, found and counted at C speed
            pos = max(0, target - base - 1)
            while (at := piece.find(b"\n", pos)) >= 0 and base + at + 1 < size:
                cut = base + at + 1
                cuts.append((cut, lines_before + count_line_breaks(piece[: at + 1])[0] + 1))
                target = cut + every
                pos = max(at + 1, target - base - 1)
            lines_before += count_line_breaks(piece)[0]
            continue
        a = np.frombuffer(piece, dtype=np.uint8)
        lf = np.flatnonzero(a == LF)
        toggles, after = quote_toggles(piece, dialect, in_quotes)
        free = lf[~_inside_at(lf, toggles, in_quotes)]  # newlines outside quoted values
        cr = np.flatnonzero(a == CR)
        lone_cr = cr[(cr + 1 >= len(a)) | (a[np.minimum(cr + 1, len(a) - 1)] != LF)]
        breaks = np.sort(np.concatenate([lf, lone_cr]))
        candidates = free + 1 + base
        i = int(np.searchsorted(candidates, target))
        while i < len(candidates) and candidates[i] < size:
            at = int(candidates[i])
            cuts.append((at, lines_before + int(np.searchsorted(breaks, at - 1 - base, side="right")) + 1))
            target = at + every
            i = int(np.searchsorted(candidates, target))
        lines_before += len(breaks)
        in_quotes = after
    return cuts
