"""Splitting a large raw object into byte ranges that start and end on record boundaries.

A chunk can then be transformed by its own Lambda invocation (ranged GET), and `first_line` keeps
lineage line numbers identical to processing the object whole. Cuts fall just after a newline that
is outside any quoted value (contracts.records), so a record never straddles two chunks — whether
the contract allows newlines in values (parsed across them) or not (quarantined whole).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import records
from contracts.datasets import Dataset
from contracts.records import count_line_breaks  # noqa: F401  (re-exported: tests, benchmarks)

GZIP_MAGIC = b"\x1f\x8b"

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
    """Whether the dataset's raw objects may be cut into chunks: always, since cuts fall on record
    boundaries (a quoted value holding newlines is never cut); kept so callers state the question."""
    return dataset.format.type in ("csv", "jsonl")


def dialect_of(dataset: Dataset) -> records.Dialect:
    return records.Dialect.of(dataset.format)


def plan_chunks(
    size: int, chunk_size: int, read_range: ReadRange, dialect: records.Dialect = records.LINES
) -> list[ByteRange]:
    """Cut an object of `size` bytes into ranges of about `chunk_size`, each starting a record after a \\n.

    `dialect` says what a record is (`dialect_of(dataset)`): a quoted CSV value may hold newlines, and
    a cut there would turn the value's tail into a row from nowhere, so cuts follow the quote state
    (contracts.records). That takes one sequential read of the object up to its last cut, which also
    makes `first_line` exact: the price of correct records and lineage without chunks depending on
    each other. A gzip object (magic bytes) cannot be cut and comes back as a single range.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    if size <= chunk_size or bytes(read_range(0, min(2, size))) == GZIP_MAGIC:
        return [ByteRange(0, size)]
    cuts = [(0, 1), *records.record_cuts(read_range, size, chunk_size, dialect)]
    ends = [c for c, _ in cuts[1:]] + [size]
    return [ByteRange(start, end, i, line) for i, ((start, line), end) in enumerate(zip(cuts, ends, strict=True))]


def file_reader(path: str | Path) -> ReadRange:
    """A `read_range` over a local file (tests, benchmarks, the local platform)."""

    def read_range(start: int, end: int) -> bytes:
        with open(path, "rb") as fh:
            fh.seek(start)
            return fh.read(end - start)

    return read_range
