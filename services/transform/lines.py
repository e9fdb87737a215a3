"""Where each line of a text buffer starts and ends, vectorised with numpy.

Lineage needs the 1-based line number of every row; readers (pyarrow CSV/JSON) do not report it,
so rows are matched to the non-empty lines found here. Line breaks follow universal newlines
(\\n, \\r\\n and a lone \\r), like pyarrow's CSV reader and Python's csv module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_LF, _CR = 10, 13


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
    a = np.frombuffer(buf, dtype=np.uint8)[offset:]
    n = len(a)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return LineIndex(empty, empty)
    breaks = np.flatnonzero(a == _LF)
    cr_before = np.zeros(len(breaks), dtype=bool)
    if buf.find(b"\r", offset) >= 0:
        cr = np.flatnonzero(a == _CR)
        lone = cr[(cr + 1 >= n) | (a[np.minimum(cr + 1, n - 1)] != _LF)]
        has_prev = breaks > 0
        cr_before[has_prev] = a[breaks[has_prev] - 1] == _CR
        breaks = np.concatenate([breaks, lone])
        cr_before = np.concatenate([cr_before, np.zeros(len(lone), dtype=bool)])
        order = np.argsort(breaks, kind="stable")
        breaks, cr_before = breaks[order], cr_before[order]
    starts = np.concatenate([[0], breaks + 1]).astype(np.int64)
    ends = np.concatenate([breaks - cr_before, [n]]).astype(np.int64)
    if starts[-1] == n:  # the text ends with a line break: no further line
        starts, ends = starts[:-1], ends[:-1]
    return LineIndex(starts + offset, ends + offset)
