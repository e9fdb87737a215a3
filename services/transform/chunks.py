"""Splitting a large raw object into byte ranges that start and end on line boundaries.

A chunk can then be transformed by its own Lambda invocation (ranged GET), and `first_line` keeps
lineage line numbers identical to processing the object whole. Only line-oriented inputs split:
JSON Lines, and CSV whose contract says no quoted field holds a newline (`can_split`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.datasets import Dataset

GZIP_MAGIC = b"\x1f\x8b"
#: bytes read around each nominal cut to find the next newline (doubles while none is found)
ALIGN_WINDOW = 64 * 1024
#: bytes per read while counting newlines, bounding the planner's memory
COUNT_PIECE = 8 * 1024 * 1024

#: reads bytes [start, end) of the object; any buffer (bytes, pyarrow Buffer, memoryview) will do
ReadRange = Callable[[int, int], Any]


@dataclass(frozen=True)
class ByteRange:
    """Bytes [start, end) of a raw object; `first_line` is the 1-based line number at `start`.

    `index` is the chunk's position in the plan; it names the chunk's output files so that a retry
    of the same chunk overwrites them instead of adding duplicates.
    """

    start: int
    end: int
    index: int = 0
    first_line: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"invalid byte range [{self.start}, {self.end})")
        if self.index < 0 or self.first_line < 1:
            raise ValueError(f"invalid chunk index {self.index} / first line {self.first_line}")

    @property
    def length(self) -> int:
        return self.end - self.start


def can_split(dataset: Dataset) -> bool:
    """Whether the dataset's raw objects may be cut on newlines (a quoted newline would be cut in two)."""
    return dataset.format.type == "jsonl" or not dataset.format.embedded_newlines


def count_line_breaks(data: bytes, after_cr: bool = False) -> tuple[int, bool]:
    """Line breaks in `data` (\\n, \\r\\n or a lone \\r, like universal newlines) and whether it ends in \\r.

    `after_cr` says the previous piece ended with \\r, so a leading \\n completes that break.
    """
    n = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
    if after_cr and data[:1] == b"\n":
        n -= 1
    return n, data[-1:] == b"\r"


def _next_line_start(pos: int, size: int, read_range: Callable[[int, int], bytes]) -> int:
    """Smallest offset >= pos that starts a line (just after a \\n), or size."""
    at, window = pos - 1, ALIGN_WINDOW
    while at < size:
        end = min(size, at + window)
        found = read_range(at, end).find(b"\n")
        if found >= 0:
            return at + found + 1
        at, window = end, window * 2
    return size


def plan_chunks(size: int, chunk_size: int, read_range: ReadRange) -> list[ByteRange]:
    """Cut an object of `size` bytes into ranges of about `chunk_size`, each ending just after a \\n.

    Boundaries come from small windows read after each nominal cut; `first_line` is exact because
    the planner counts line breaks of every chunk but the last, streaming `COUNT_PIECE` bytes at a
    time. That is one sequential read of the object: the price of correct lineage line numbers
    without making chunks depend on each other. A gzip object (magic bytes) cannot be cut and
    comes back as a single range. The caller checks `can_split(dataset)` first.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")

    def read(start: int, end: int) -> bytes:
        return bytes(read_range(start, end))

    if size <= chunk_size or read(0, min(2, size)) == GZIP_MAGIC:
        return [ByteRange(0, size)]
    bounds: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        end = size if pos + chunk_size >= size else _next_line_start(pos + chunk_size, size, read)
        bounds.append((pos, end))
        pos = end
    ranges: list[ByteRange] = []
    line = 1
    for index, (start, end) in enumerate(bounds):
        ranges.append(ByteRange(start, end, index, line))
        if index == len(bounds) - 1:
            break
        after_cr = False
        for at in range(start, end, COUNT_PIECE):
            n, after_cr = count_line_breaks(read(at, min(end, at + COUNT_PIECE)), after_cr)
            line += n
    return ranges


def file_reader(path: str | Path) -> ReadRange:
    """A `read_range` over a local file (tests, benchmarks, the local platform)."""

    def read_range(start: int, end: int) -> bytes:
        with open(path, "rb") as fh:
            fh.seek(start)
            return fh.read(end - start)

    return read_range
