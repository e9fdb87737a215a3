"""Where each line of a text buffer starts and ends, vectorised with numpy.

Lineage needs the 1-based line number of every row; readers (pyarrow CSV/JSON) do not report it,
so rows are matched to the non-empty lines found here. The rule itself (universal newlines) lives in
`contracts.records`, shared with the chunk planner and erasure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pyarrow as pa

from contracts import records

#: text as read: bytes, or a pyarrow Buffer when it was read into pyarrow's memory pool (decode.py)
Text: TypeAlias = bytes | pa.Buffer


@dataclass(frozen=True)
class LineIndex:
    """Lines of `buf[offset:]`: `starts`/`ends` are absolute offsets, `ends` excludes the terminator."""

    starts: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def nonempty(self) -> np.ndarray:
        """Positions (0-based line indices) of lines holding at least one byte."""
        return np.flatnonzero(self.ends > self.starts)


def index_lines(buf: bytes, offset: int = 0) -> LineIndex:
    """Index the lines of `buf[offset:]`; a final line without terminator counts, a final empty one does not."""
    return LineIndex(*records.line_spans(buf, offset))


#: bytes compared per numpy call in `count_byte` (the comparison's mask is this big, reused)
_COUNT_PIECE = 1 << 22


def count_byte(buf: Text, byte: int, start: int = 0, end: int | None = None) -> int:
    """`buf.count(bytes([byte]), start, end)`, 3-4x faster (TPC-H SF1: 16 vs 57 ms) and without the GIL,
    so a second thread keeps working: numpy compares a piece at a time and counts the matches."""
    end = len(buf) if end is None else end
    view = np.frombuffer(buf, dtype=np.uint8)
    return sum(int(np.count_nonzero(view[i : min(i + _COUNT_PIECE, end)] == byte))
               for i in range(start, end, _COUNT_PIECE))


def find_byte(buf: Text, byte: int, start: int = 0) -> int:
    """`buf.find(bytes([byte]), start)` for bytes and pyarrow Buffers alike (numpy, a piece at a time)."""
    if isinstance(buf, bytes):
        return buf.find(bytes([byte]), start)
    view = np.frombuffer(buf, dtype=np.uint8)
    for i in range(start, len(view), _COUNT_PIECE):
        hits = np.flatnonzero(view[i : i + _COUNT_PIECE] == byte)
        if len(hits):
            return i + int(hits[0])
    return -1


def as_bytes(buf: Text) -> bytes:
    """`buf` as bytes, for the rarer readers that need bytes' own methods (a copy of a Buffer)."""
    return buf if isinstance(buf, bytes) else buf.to_pybytes()

