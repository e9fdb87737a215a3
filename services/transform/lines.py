"""Where each line of a text buffer starts and ends, vectorised with numpy.

Lineage needs the 1-based line number of every row; readers (pyarrow CSV/JSON) do not report it,
so rows are matched to the non-empty lines found here. The rule itself (universal newlines) lives in
`contracts.records`, shared with the chunk planner and erasure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contracts import records


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


def count_byte(buf: bytes, byte: int, start: int = 0, end: int | None = None) -> int:
    """`buf.count(bytes([byte]), start, end)`, 3-4x faster (TPC-H SF1: 16 vs 57 ms) and without the GIL,
    so a second thread keeps working: numpy compares a piece at a time and counts the matches."""
    end = len(buf) if end is None else end
    view = np.frombuffer(buf, dtype=np.uint8)
    return sum(int(np.count_nonzero(view[i : min(i + _COUNT_PIECE, end)] == byte))
               for i in range(start, end, _COUNT_PIECE))

