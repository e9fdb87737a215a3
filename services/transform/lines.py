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
