"""Which columns are worth Parquet dictionary pages: decided from a small, evenly spaced sample of the rows.

On a high-cardinality column pyarrow would build a dictionary, give up at 1 MiB and fall back to plain
pages, costing time and bytes; so dictionary pages are asked for only where a sample says values repeat.
The transform's and the compaction's writers (contracts/lake_format.py) and the transform's pre-sort
encoding (services/transform/encoding.py) all decide here. Each keeps the sample it always drew
(`Sampling`): a different sample can flip a column near the threshold, and so change the lake's files.

The sample is taken chunk by chunk: `take` on a chunked column first concatenates every chunk (for a
row group of merge output, a transient copy of the whole row group), just to pick a few thousand rows.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import pyarrow as pa
import pyarrow.compute as pc

#: a column repeats when at most this share of the sampled values is distinct
MAX_DISTINCT_SHARE = 0.5


class Spacing(Enum):
    """Where the sampled rows of `n` lie (both evenly spaced; they differ by at most a row or two each)."""

    ENDS = "ends"  # as numpy.linspace(0, n - 1, rows): the first row and the last
    STRIDE = "stride"  # the first row, then every (n / rows)-th, the step added up in floating point


@dataclass(frozen=True)
class Sampling:
    """How many rows are sampled, where, and whether dictionary-typed columns are taken on trust.

    Trusted dictionary columns count as repeating unsampled: their encoder judged them on a larger sample
    already (the transform's pre-sort encoding). Untrusted ones are judged on their values like the others.
    """

    rows: int
    spacing: Spacing
    trust_dictionaries: bool


def repeating_columns(table: pa.Table, candidates: Sequence[str], sampling: Sampling) -> list[str]:
    """The `candidates` (in their order) whose sampled values repeat enough for a dictionary to pay off."""
    n = table.num_rows
    positions = _positions(n, sampling)
    limit = MAX_DISTINCT_SHARE * max(1, min(n, sampling.rows))
    picks: dict[tuple[int, ...], list[tuple[int, pa.Array]]] = {}  # columns of a table often share chunk lengths
    out = []
    for name in candidates:
        column = table.column(name)
        dictionary = pa.types.is_dictionary(column.type)
        if dictionary and sampling.trust_dictionaries:
            out.append(name)
            continue
        if positions is not None:
            lengths = tuple(len(c) for c in column.chunks)
            if lengths not in picks:
                picks[lengths] = _per_chunk(lengths, positions)
            column = pa.chunked_array([column.chunk(i).take(p) for i, p in picks[lengths]], type=column.type)
        if dictionary:
            column = column.cast(column.type.value_type)
        if pc.count_distinct(column).as_py() <= limit:
            out.append(name)
    return out


def _positions(n: int, sampling: Sampling) -> list[int] | None:
    """The sampled rows of `n`, ascending; None when every row is sampled.

    Plain Python, not numpy: the compact function's layer has no numpy. The same rows as `numpy.linspace`
    (`i * step`, the last exactly n - 1) and as a running `position += step` (tested against numpy).
    """
    rows = sampling.rows
    if n <= rows:
        return None
    if sampling.spacing is Spacing.ENDS:
        step = (n - 1) / (rows - 1)
        return [*(int(i * step) for i in range(rows - 1)), n - 1]
    step, position, out = n / rows, 0.0, []
    while position < n:
        out.append(int(position))
        position += step
    return out


def _per_chunk(lengths: Sequence[int], positions: list[int]) -> list[tuple[int, pa.Array]]:
    """(chunk, in-chunk positions) of each chunk holding a sampled row."""
    out, start, lo = [], 0, 0
    for i, length in enumerate(lengths):
        hi = bisect_left(positions, start + length, lo)  # positions[lo:hi] fall in chunk i
        if hi > lo:
            out.append((i, pa.array([p - start for p in positions[lo:hi]], pa.int64())))
        lo, start = hi, start + length
    return out
