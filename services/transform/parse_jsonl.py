"""JSON Lines text to columns, with the line number of every row.

Fast path: pyarrow's JSON reader over the lines that look like one object (first byte `{`, last
`}`), with the contract's types where pyarrow converts exactly as the string casts would
(integers, decimals from their text, booleans, floats) and strings elsewhere. Such a line cannot
merge with the next one (a continuation line never starts with `{`), and a line holding two
objects shows up as one row too many, so `rows == lines` proves the row-to-line match. When a
block fails (bad JSON, a value of another JSON type, an extra object), it is halved until the bad
lines are isolated; those are read by Python's `json`, which decides their fate with the same
rules, so every line ends the same whether it sits in a whole object or a chunk.

Fields not in the contract are ignored, not quarantined: producers add fields over time, the lake
holds what the contract declares, and the raw copy keeps the rest. A key given twice is ambiguous
and quarantines the row. Numbers given as JSON strings ("42") are accepted like CSV text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from contracts.datasets import Dataset
from services.transform.casts import arrow_type
from services.transform.lines import LineIndex, index_lines
from services.transform.rows import DUPLICATE_KEY, INVALID_JSON, NOT_OBJECT, NOT_SCALAR, Parsed, Reject, Segment

#: lines per block once the first, whole-buffer read has failed
BLOCK_LINES = 4096
#: blocks this small are read line by line in Python
LEAF_LINES = 16
#: pyarrow block size; a longer line fails the fast read and is read by Python
READ_BLOCK = 16 * 1024 * 1024
_EXACT_IN_JSON = {"int32", "int64", "float64", "bool"}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_BRACE_OPEN, _BRACE_CLOSE = ord("{"), ord("}")
_KINDS = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs, so duplicate keys stay visible."""


def _json_schema(dataset: Dataset) -> pa.Schema:
    """Types pyarrow's JSON reader produces exactly like the string casts; text for the rest.

    Decimals are read at the widest precision with the contract's scale: pyarrow checks the scale
    but not the precision (12345678901.5 would land in a decimal(12,2) unchecked), so the
    precision is checked by the cast to the contract type in validate.py.
    """
    fields = []
    for c in dataset.columns:
        target = arrow_type(c.type)
        if pa.types.is_decimal(target):
            fields.append(pa.field(c.name, pa.decimal256(76, target.scale)))
        else:
            fields.append(pa.field(c.name, target if c.type in _EXACT_IN_JSON else pa.string()))
    return pa.schema(fields)


class _Reader:
    """Reads the candidate lines of one text, fast where possible, Python where needed."""

    def __init__(self, buf: bytes, index: LineIndex, dataset: Dataset, first_line: int) -> None:
        self.buf, self.index, self.dataset, self.first_line = buf, index, dataset, first_line
        self.names = [c.name for c in dataset.columns]
        self.schema = _json_schema(dataset)
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

    def _try(self, lines: np.ndarray) -> bool:
        try:
            table = pajson.read_json(
                pa.BufferReader(self._bytes_of(lines)),
                read_options=pajson.ReadOptions(use_threads=False, block_size=READ_BLOCK),
                parse_options=pajson.ParseOptions(explicit_schema=self.schema, unexpected_field_behavior="ignore"),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False
        if table.num_rows != len(lines):
            return False
        self.segments.append(Segment(table.select(self.names), self.first_line + lines.astype(np.int64)))
        return True

    def _isolate(self, lines: np.ndarray) -> None:
        """Halve a failed block until bad lines are alone; when both halves fail, errors are dense: go slow."""
        if len(lines) <= LEAF_LINES:
            self.slow.extend(lines.tolist())
            return
        mid = len(lines) // 2
        left, right = lines[:mid], lines[mid:]
        left_ok, right_ok = self._try(left), self._try(right)
        if not left_ok and not right_ok:
            self.slow.extend(lines.tolist())
        elif not left_ok:
            self._isolate(left)
        elif not right_ok:
            self._isolate(right)

    def read(self, candidates: np.ndarray) -> None:
        if len(candidates) == 0 or self._try(candidates):
            return
        for at in range(0, len(candidates), BLOCK_LINES):
            block = candidates[at : at + BLOCK_LINES]
            if not self._try(block):
                self._isolate(block)

    def text(self, line: int) -> str:
        return self.buf[self.index.starts[line] : self.index.ends[line]].decode("utf-8")


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


def _read_line(raw: str, names: list[str]) -> tuple[dict[str, str | None] | None, _Problem | None]:
    """(values, None) for a usable object, else (values or None, (code, reason)).

    Mirrors pyarrow's reader: only a contract key given twice at the top level is ambiguous;
    duplicates elsewhere belong to ignored fields.
    """
    try:
        obj = json.loads(raw, parse_int=str, parse_float=str, parse_constant=_no_constant, object_pairs_hook=_Pairs)
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
    seen: set[str] = set()
    for key, _ in obj:
        if key in seen and key in names:
            return None, (DUPLICATE_KEY, f"key {key!r} appears twice in the JSON object")
        seen.add(key)
    fields = dict(obj)
    values = {n: _as_text(fields.get(n)) for n in names}
    nested = [n for n in names if isinstance(fields.get(n), list)]  # _Pairs is a list too
    if nested:
        what = "; ".join(
            f"{n}: expected a single value, found {'an object' if isinstance(fields[n], _Pairs) else 'an array'}"
            for n in nested
        )
        return values, (NOT_SCALAR, what)
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
    parsed = Parsed(segments=reader.segments)
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
        parsed.segments.append(Segment(table, np.array(good_lines, dtype=np.int64)))
    return parsed
