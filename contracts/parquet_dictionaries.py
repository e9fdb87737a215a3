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

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: a column repeats when at most this share of the sampled values is distinct
MAX_DISTINCT_SHARE = 0.5


class Spacing(Enum):
    """Where the sampled rows of `n` lie (both evenly spaced; they differ by at most a row or two each)."""

    ENDS = "ends"  # numpy.linspace(0, n - 1, rows): the first row and the last
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


def _positions(n: int, sampling: Sampling) -> np.ndarray | None:
    """The sampled rows of `n`, ascending; None when every row is sampled."""
    rows = sampling.rows
    if n <= rows:
        return None
    if sampling.spacing is Spacing.ENDS:
        return np.linspace(0, n - 1, rows).astype(np.int64)
    # np.cumsum adds one step after the other (no pairwise summation), as a running `position += step` does
    running = np.cumsum(np.concatenate(([0.0], np.full(rows + 1, n / rows))))
    return running[running < n].astype(np.int64)


def _per_chunk(lengths: Sequence[int], positions: np.ndarray) -> list[tuple[int, pa.Array]]:
    """(chunk, in-chunk positions) of each chunk holding a sampled row."""
    starts = np.cumsum([0, *lengths])
    bounds = np.searchsorted(positions, starts)  # positions[bounds[i]:bounds[i + 1]] fall in chunk i
    return [(i, pa.array(positions[bounds[i] : bounds[i + 1]] - starts[i]))
            for i in range(len(lengths)) if bounds[i + 1] > bounds[i]]
