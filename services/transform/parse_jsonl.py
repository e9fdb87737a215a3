"""JSON Lines text to columns, with the line number of every row.

Fast path: pyarrow's JSON reader over the lines that look like one object (first byte `{`, last
`}`), with the contract's types where pyarrow converts exactly as the string casts would
(integers, booleans, floats, decimals at the contract's scale) and strings elsewhere. Such a line
cannot merge with the next one (a continuation line never starts with `{`), and a line holding two
objects shows up as one row too many, so `rows == lines` proves the row-to-line match.

When a read fails, the file is read in blocks; pyarrow's complaint then says what to do: a column
that holds numbers as JSON strings ("42") is read as text from then on (the casts accept it, so a
producer that quotes every number costs nothing); a bad row it names, or the lines holding the
value it names, go to Python's `json`; anything else sends the block to Python. Python applies the
same rules as the fast path, so a line ends the same whether it sits in a whole object or a chunk.

Fields not in the contract are ignored, not quarantined: producers add fields over time, the lake
holds what the contract declares, and the raw copy keeps the rest. A key given twice is ambiguous
and quarantines the row. Numbers given as JSON strings are accepted like CSV text.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from contracts.datasets import Dataset
from services.transform.casts import arrow_type
from services.transform.lines import LineIndex, index_lines
from services.transform.rows import DUPLICATE_KEY, INVALID_JSON, NOT_OBJECT, NOT_SCALAR, Parsed, Reject, Segment

#: lines per block once the whole-text read has failed: a failed block costs at most this many
#: lines through Python (~9 µs each), while a pyarrow call costs ~0.2 ms plus ~1.5 µs a line
BLOCK_LINES = 512
#: bad lines taken out of a block on pyarrow's word before the rest of the block goes to Python
MAX_LOCATED = 1
#: pyarrow block size; a longer line fails the fast read and is read by Python
READ_BLOCK = 16 * 1024 * 1024
_EXACT_IN_JSON = {"int32", "int64", "float64", "bool"}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_BRACE_OPEN, _BRACE_CLOSE = ord("{"), ord("}")
_TYPE_CHANGE = re.compile(r"Column\(/(?P<column>[^)]*)\) changed from (?P<was>\w+) to (?P<now>\w+) in row (?P<row>\d+)")
_ROW = re.compile(r" in row (\d+)\.?$")
#: pyarrow conversion errors name the value, not the row
_VALUE_IN_ERROR = (
    re.compile(r"couldn't parse:(.+)$"),
    re.compile(r"JSON to decimal\d*\(\d+, \d+\): (\S+) requires scale"),
    re.compile(r"The string '(.*)' (?:is not a valid|cannot be represented)"),
)
_KINDS = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs, so duplicate keys stay visible."""


def _json_types(dataset: Dataset) -> dict[str, pa.DataType]:
    """Types pyarrow's JSON reader produces exactly like the string casts; text for the rest.

    Decimals are read at the widest precision with the contract's scale: pyarrow checks the scale
    but not the precision (12345678901.5 would land in a decimal(12,2) unchecked), so the
    precision is checked by the cast to the contract type in validate.py.
    """
    types = {}
    for c in dataset.columns:
        target = arrow_type(c.type)
        if pa.types.is_decimal(target):
            types[c.name] = pa.decimal256(76, target.scale)
        else:
            types[c.name] = target if c.type in _EXACT_IN_JSON else pa.string()
    return types


class _Reader:
    """Reads the candidate lines of one text, fast where possible, Python where needed."""

    def __init__(self, buf: bytes, index: LineIndex, dataset: Dataset, first_line: int) -> None:
        self.buf, self.index, self.first_line = buf, index, first_line
        self.names = [c.name for c in dataset.columns]
        self.exact = _json_types(dataset)
        self.types = dict(self.exact)  # what pyarrow is asked for now (a column may switch to text)
        self.next_start = np.append(index.starts[1:], len(buf))
        offsets = pa.py_buffer(np.append(index.starts, len(buf)).astype(np.int64))
        self.lines = pa.Array.from_buffers(pa.large_string(), len(index), [None, offsets, pa.py_buffer(buf)])
        self.segments: list[Segment] = []
        self.slow: list[int] = []

    def _bytes_of(self, lines: np.ndarray) -> pa.Buffer:
        first, last = int(lines[0]), int(lines[-1])
        if last - first + 1 == len(lines):  # consecutive lines: a zero-copy slice
            start, end = int(self.index.starts[first]), int(self.next_start[last])
            return pa.py_buffer(self.buf)[start:end]
        picked = self.lines.take(pa.array(lines))
        offsets = np.frombuffer(picked.buffers()[1], dtype=np.int64)[picked.offset : picked.offset + len(picked) + 1]
        return picked.buffers()[2][int(offsets[0]) : int(offsets[-1])]

    def _attempt(self, lines: np.ndarray) -> str | None:
        """Read `lines` with pyarrow; None on success (segment kept), else pyarrow's complaint."""
        schema = pa.schema([(n, self.types[n]) for n in self.names])
        try:
            table = pajson.read_json(
                pa.BufferReader(self._bytes_of(lines)),
                read_options=pajson.ReadOptions(use_threads=False, block_size=READ_BLOCK),
                parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            return str(exc)
        if table.num_rows != len(lines):
            return "more rows than lines"
        self.segments.append(Segment(table.select(self.names), self.first_line + lines.astype(np.int64)))
        return None

    def _switch(self, error: str) -> bool:
        """Follow a column that holds the other JSON type: text for quoted numbers, back for numbers."""
        change = _TYPE_CHANGE.search(error)
        if not change or change["column"] not in self.types:
            return False
        column, now = change["column"], change["now"]
        exact_is_text = pa.types.is_string(self.exact[column])
        if now == "string" and not exact_is_text and self.types[column] != pa.string():
            self.types[column] = pa.string()
            return True
        if now in ("number", "boolean") and not exact_is_text and self.types[column] == pa.string():
            self.types[column] = self.exact[column]
            return True
        return False

    def _suspects(self, error: str, lines: np.ndarray) -> np.ndarray:
        """Positions in `lines` that pyarrow's complaint points at: its row, or lines holding its value.

        A wrong guess only sends good lines to the Python reader, which reads them the same way.
        """
        row = _ROW.search(error)
        if row:
            at = int(row.group(1))
            return np.array([at] if at < len(lines) else [], dtype=np.int64)
        for pattern in _VALUE_IN_ERROR:
            found = pattern.search(error)
            if found and found.group(1):
                hits = pc.match_substring_regex(self.lines.take(pa.array(lines)), _json_token(found.group(1)))
                return np.flatnonzero(np.asarray(hits.fill_null(False)))
        return np.zeros(0, dtype=np.int64)

    def _read_block(self, block: np.ndarray) -> None:
        """Read one block, acting on pyarrow's complaints; whatever stays unexplained goes to Python.

        Taking out one bad line costs about two more pyarrow reads of the block, which is cheaper
        than Python for the whole block; a second bad line in the same block is not (measured:
        ~1 ms a read, ~4.6 ms for 512 lines in Python), so the rest then goes to Python at once.
        """
        pending, switches, located = [block], 0, 0
        while pending:
            lines = pending.pop()
            error = self._attempt(lines)
            if error is None:
                continue
            if switches < len(self.names) and self._switch(error):
                switches += 1
                pending.append(lines)
                continue
            suspects = self._suspects(error, lines) if located < MAX_LOCATED else np.zeros(0, dtype=np.int64)
            if not 0 < len(suspects) < len(lines):
                self.slow.extend(lines.tolist())
                continue
            located += 1
            self.slow.extend(lines[suspects].tolist())
            if len(suspects) == 1:  # split around it: pyarrow stops at the first bad row it sees
                at = int(suspects[0])
                pending.extend(part for part in (lines[at + 1 :], lines[:at]) if len(part))
            else:
                pending.append(np.delete(lines, suspects))

    def read(self, candidates: np.ndarray) -> None:
        if len(candidates) == 0 or self._attempt(candidates) is None:
            return
        for at in range(0, len(candidates), BLOCK_LINES):
            self._read_block(candidates[at : at + BLOCK_LINES])

    def merged_segments(self) -> list[Segment]:
        """One segment per column-type combination: checking many small segments costs per segment."""
        groups: dict[tuple[str, ...], list[Segment]] = defaultdict(list)
        for segment in self.segments:
            groups[tuple(str(t) for t in segment.table.schema.types)].append(segment)
        return [
            Segment(pa.concat_tables([g.table for g in group]), np.concatenate([g.lines for g in group]))
            for group in groups.values()
        ]

    def text(self, line: int) -> str:
        return self.buf[self.index.starts[line] : self.index.ends[line]].decode("utf-8")


def _json_token(value: str) -> str:
    """RE2 pattern of `value` as a whole JSON value (number, or string content) after a key."""
    literal = "".join(ch if ch.isalnum() else f"\\x{{{ord(ch):x}}}" for ch in value)
    return rf':\s*"?{literal}"?\s*[,}}]'


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _plain(value: Any) -> Any:
    """Nested pairs back to dicts (last key wins, as JSON readers usually do)."""
    if isinstance(value, _Pairs):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, _Pairs):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value)
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _as_text(value: Any) -> str | None:
    """A scalar's text as the string casts expect it (numbers keep their exact JSON spelling)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False)


_Problem = tuple[str, str]


def _decoder() -> json.JSONDecoder:
    """One decoder for every line (json.loads with options would build a new one per call)."""
    return json.JSONDecoder(parse_int=str, parse_float=str, parse_constant=_no_constant, object_pairs_hook=_Pairs)


_DECODER = _decoder()


def _read_line(raw: str, names: list[str]) -> tuple[dict[str, str | None] | None, _Problem | None]:
    """(values, None) for a usable object, else (values or None, (code, reason)).

    Mirrors pyarrow's reader: only a contract key given twice at the top level is ambiguous;
    duplicates elsewhere belong to ignored fields.
    """
    try:
        obj = _DECODER.decode(raw)
    except json.JSONDecodeError as exc:
        return None, (INVALID_JSON, f"invalid JSON: {exc.msg} (column {exc.colno})")
    except ValueError as exc:
        return None, (INVALID_JSON, f"invalid JSON: {exc}")
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(obj):
        return None, (INVALID_JSON, "invalid JSON: a \\u escape encodes a lone surrogate, not a character")
    if not isinstance(obj, _Pairs):
        number = isinstance(obj, str) and not raw.lstrip(" \t").startswith('"')  # parse_int/float give str
        kind = "a number" if number else _KINDS.get(type(obj), "a number")
        return None, (NOT_OBJECT, f"the line holds {kind}, not a JSON object")
    fields = dict(obj)
    if len(fields) != len(obj):  # some key twice: ambiguous if it is one of ours
        seen: set[str] = set()
        for key, _ in obj:
            if key in seen and key in names:
                return None, (DUPLICATE_KEY, f"key {key!r} appears twice in the JSON object")
            seen.add(key)
    values: dict[str, str | None] = {}
    nested: list[str] = []
    for n in names:
        v = fields.get(n)
        if v is None or v.__class__ is str:
            values[n] = v
            continue
        if isinstance(v, list):  # _Pairs (an object) is a list too
            nested.append(f"{n}: expected a single value, found {'an object' if isinstance(v, _Pairs) else 'an array'}")
        values[n] = _as_text(v)
    if nested:
        return values, (NOT_SCALAR, "; ".join(nested))
    return values, None


def _python_rows(
    reader: _Reader, lines: list[int]
) -> Iterator[tuple[int, str, dict[str, str | None] | None, _Problem | None]]:
    for line in sorted(lines):
        raw = reader.text(line)
        values, problem = _read_line(raw, reader.names)
        yield reader.first_line + line, raw, values, problem


def parse_jsonl(buf: bytes, dataset: Dataset, *, first_line: int) -> Parsed:
    """All rows of a JSON Lines text; lines that are not one JSON object of scalars become rejects."""
    index = index_lines(buf)
    if len(index) == 0:
        return Parsed()
    a = np.frombuffer(buf, dtype=np.uint8)
    nonempty = index.nonempty
    looks_like_object = (a[index.starts[nonempty]] == _BRACE_OPEN) & (a[index.ends[nonempty] - 1] == _BRACE_CLOSE)
    reader = _Reader(buf, index, dataset, first_line)
    candidates = [nonempty[looks_like_object]]
    for line in nonempty[~looks_like_object].tolist():  # rare: padded, blank or broken lines
        stripped = reader.text(line).strip(" \t")
        if not stripped:
            continue  # blank (JSON whitespace only): not a row
        if stripped[0] == "{" and stripped[-1] == "}":
            candidates.append(np.array([line]))
        else:
            reader.slow.append(line)
    reader.read(np.sort(np.concatenate(candidates)))
    segments = reader.merged_segments()
    parsed = Parsed(segments=segments)
    columns: dict[str, list[str | None]] = {n: [] for n in reader.names}
    good_lines: list[int] = []
    for line, raw, values, problem in _python_rows(reader, reader.slow):
        if problem is not None or values is None:
            code, reason = problem or (INVALID_JSON, "unreadable line")
            parsed.rejects.append(Reject(line, code, reason, raw, values))
            continue
        good_lines.append(line)
        for n in reader.names:
            columns[n].append(values[n])
    if good_lines:
        table = pa.table({n: pa.array(v, pa.string()) for n, v in columns.items()})
        segments.append(Segment(table, np.array(good_lines, dtype=np.int64)))
    return parsed
